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
CHROMIUM ?= chromium

.PHONY: install lock test test-fast lint typecheck pytest docs demo sandbox cycle bench clean browser screenshots

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

# The demo test drives headless Chromium (Debian's package) with Playwright: `make browser` installs it first.
# --durations: the slowest tests' times, to keep the whole run under its 20-minute budget.
# --no-loadscope-reorder: files in the order tests/conftest.py gives (the slowest first), not by test count.
pytest: install browser
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

# Headless Chromium for the browser walkthrough: Debian's `chromium`, installed with apt-get when it is not on
# PATH (machines and CI run as root; Playwright's own browser download is not used). CHROMIUM names another binary.
browser:
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium (headless browser for the UI walkthrough) ..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { echo "chromium is still not on PATH" >&2; exit 1; }

# The README's screenshots: the demo's install cycle walked through in the browser, PNGs written to docs/images/.
screenshots: install browser
	SCREENSHOTS=docs/images $(VENV)/bin/pytest tests/test_demo.py -q

test: lint typecheck pytest

# The edit-test loop: unit and sandbox tests, no Airflow runs (marker e2e) and nothing slow; no lint or typecheck.
test-fast: install
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not e2e and not slow"

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
