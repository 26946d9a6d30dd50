# DryCI task runner: the README, .ci/run and developers all call these.
# `make help` lists the targets.

VENV ?= .venv
PY := $(VENV)/bin/python
CARGO_FEATURES_TEST ?= server
export CARGO_TERM_COLOR ?= never

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create .venv with the development tools

.PHONY: develop
develop: venv ## build the extension (debug) into .venv
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop --quiet

.PHONY: lint
lint: venv ## rustfmt, clippy -D warnings, ruff
	cargo fmt --all -- --check
	cargo clippy --all-targets --features server -- -D warnings
	cargo clippy --lib --features python -- -D warnings
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: fmt
fmt: venv ## format Rust and Python sources
	cargo fmt --all
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: test-rust
test-rust: ## Rust unit and integration tests
	cargo test --features $(CARGO_FEATURES_TEST)

.PHONY: stubtest
stubtest: develop ## check python/pytest_dryci/_native.pyi against the built module
	$(PY) -m mypy.stubtest pytest_dryci._native

.PHONY: test-python
test-python: develop ## pytester end-to-end tests of the plugin
	$(PY) -m pytest tests/python -n 2 -q

.PHONY: test
test: lint test-rust stubtest test-python ## every check and every test suite (what CI runs)

.PHONY: demo
demo: ## install DryCI (release wheel) and run example_project twice with the embedded cache
	python3 -m venv .venv-demo
	.venv-demo/bin/python -m pip install --quiet --upgrade pip
	.venv-demo/bin/python -m pip install --quiet .
	rm -rf example_project/.dryci
	@echo "--- first run: every test runs and its pass is published to example_project/.dryci/"
	cd example_project && ../.venv-demo/bin/python -m pytest --dryci -q
	@echo "--- second run: nothing changed, every test is served from the cache"
	cd example_project && ../.venv-demo/bin/python -m pytest --dryci -q -rs
