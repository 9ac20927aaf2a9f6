# Patch-cycle DAGs for AWS. `make test` and `make demo` are the two commands a user needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# uv from PATH, else a private copy installed with pip into .tools/uv.
UV := $(shell command -v uv 2>/dev/null || echo .tools/uv/bin/uv)
SCENARIO ?= include/sandbox/scenarios/default.yaml
PORT ?= 5055
MODE ?= scan
# The slow end-to-end files spend most of their time waiting on Airflow and the sandbox: two files run at once.
PYTEST_WORKERS ?= 2

.PHONY: install lock test test-fast lint typecheck pytest docs demo sandbox cycle bench clean

install: $(VENV)/.installed

$(VENV)/.installed: constraints.txt requirements.txt requirements-dev.txt
	@[ -x "$(UV)" ] || (python3 -m venv .tools/uv && .tools/uv/bin/pip install -q uv==0.13.9)
	@[ -x $(PY) ] || $(UV) venv -q -p python3.11 $(VENV)
	$(UV) pip sync -q -p $(PY) constraints.txt
	@touch $@

# Regenerates the lock from the pinned direct requirements.
lock:
	$(UV) pip compile -q -p 3.11 --custom-compile-command "make lock" requirements-dev.txt -o constraints.txt

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile

test: lint typecheck pytest

# The edit-test loop: unit and sandbox tests, no Airflow runs (marker e2e) and nothing slow; no lint or typecheck.
test-fast: install
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not e2e and not slow"

# Regenerates docs/artifacts.md from the run-artifact contract, and the verdict tables of docs/report.md from
# core/verdicts.py (tests fail when they are not current).
docs: install
	PYTHONPATH=plugins $(PY) -m patchcycle.artifact_docs
	PYTHONPATH=plugins $(PY) -m patchcycle.verdict_docs

sandbox: install
	$(PY) -m include.sandbox serve --scenario $(SCENARIO) --port $(PORT)

demo: install
	$(PY) -m include.demo --scenario $(SCENARIO) --sandbox-port $(PORT) $(if $(API_PORT),--api-port $(API_PORT)) \
		$(if $(EXECUTOR),--executor $(EXECUTOR))

cycle: install
	$(PY) -m include.cycle --scenario $(SCENARIO) --mode $(MODE)

bench: install
	$(PY) -m tests.bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
