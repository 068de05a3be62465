# The README's two commands are `make demo` and `make test`; both set up what they need themselves.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_PREFIX := .node
CHP := $(NODE_PREFIX)/node_modules/.bin/configurable-http-proxy
PYTEST_ARGS ?=

.PHONY: host venv proxy roc wheel test unit bench lint fmt demo docs clean

venv: $(STAMP)
$(STAMP): pyproject.toml images/tre_notebook/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' -e images/tre_notebook
	touch $@

# configurable-http-proxy from the npm registry, kept inside the checkout.
proxy: $(CHP)
$(CHP):
	command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	npm install --silent --no-audit --no-fund --prefix $(NODE_PREFIX) configurable-http-proxy@^5

# roc-validator (tests of the release RO-Crates) in its own environment: it pins rich<14.
ROC := .venv-roc/bin/rocrate-validator
roc: $(ROC)
$(ROC):
	$(PY) -m venv .venv-roc
	.venv-roc/bin/pip install -q roc-validator==0.13.0

# The TRE as a wheel for the Ansible playbook (ansible/group_vars/all.yml: tre_wheel).
wheel: venv
	rm -f dist/tre-*.whl
	$(BIN)/pip wheel --no-deps -q -w dist .

# The Docker engine, PostgreSQL, Chromium, debootstrap and Node: installed and started when missing
# (idempotent, seconds when all is there). CI runs exactly this through `make test`.
host:
	bash .ci/setup-host.sh

test: host venv proxy roc
	PATH="$(CURDIR)/$(NODE_PREFIX)/node_modules/.bin:$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

bench: venv
	@set -e; for b in tests/benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b; done

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: venv
	$(BIN)/mkdocs build --strict

# DEMO_ARGS: e.g. --patients 10000, --reset. The host step installs and starts Docker when missing.
demo:
	bash .ci/setup-host.sh --demo
	$(MAKE) --no-print-directory venv proxy
	PATH="$(CURDIR)/$(NODE_PREFIX)/node_modules/.bin:$$PATH" $(BIN)/tre demo run $(DEMO_ARGS)

clean:
	rm -rf $(VENV) $(NODE_PREFIX) build dist *.egg-info
