# One entry point for people and CI. STACK picks the stack file (Pulumi.<STACK>.yaml).
STACK ?= dev
VENV ?= venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: deploy test test-unit test-slow bench clean

deploy:  ## pulumi up for STACK, after checking the CLI and AWS credentials
	scripts/deploy.sh $(STACK)

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# uv resolves and installs the pinned set in seconds; plain pip is the fallback.
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9 \
	  && $(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements-dev.txt \
	  || $(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
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

.PHONY: verify bench-pickup
# verify needs boto3 only: it uses the project venv when there is one.
VERIFY_PY := $(if $(wildcard $(PY)),$(PY),$(PYTHON))

verify:  ## check the live deployment of STACK; OUTPUTS=file.json instead of the pulumi CLI
	$(VERIFY_PY) scripts/verify.py $(if $(OUTPUTS),--outputs $(OUTPUTS),--stack $(STACK))

bench-pickup: $(VENV)/.dev-installed  ## flow-run pickup latency vs the worker's poll interval
	$(PY) bench/pickup_latency.py
