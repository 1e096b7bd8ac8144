# One entry point for people and CI. STACK picks the stack file (Pulumi.<STACK>.yaml).
STACK ?= dev
VENV ?= venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: deploy test test-unit test-slow bench clean plan cost

deploy:  ## pulumi up for STACK, after checking the CLI and AWS credentials
	scripts/deploy.sh $(STACK)

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

test: $(VENV)/.dev-installed  ## every test, including the ones that start moto and Prefect
	$(PY) -m pytest -q

test-unit: $(VENV)/.dev-installed  ## the fast mock tests only
	$(PY) -m pytest -q -m "not slow"

test-slow: $(VENV)/.dev-installed  ## only the tests that start real servers
	$(PY) -m pytest -q -m slow

bench: $(VENV)/.dev-installed
	$(PY) bench/stack_eval.py

clean:
	rm -rf $(VENV)

plan: $(VENV)/.dev-installed  ## offline: what STACK declares, its policy results and monthly cost
	$(PY) scripts/plan.py $(STACK)

cost: $(VENV)/.dev-installed  ## offline: each stack's monthly cost as a ratio to the seed setup
	$(PY) bench/cost.py
