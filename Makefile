# Refinery: `make run` starts the embedded stack, `make test` runs every suite.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit test-integration test-e2e lint proto bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/refinery run

lint: $(STAMP)
	$(BIN)/ruff check libs services tests bench

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit tests/integration tests/e2e

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

test-integration: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration

test-e2e: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/e2e

bench: $(STAMP)
	$(BIN)/python -m bench
	$(BIN)/python -m bench.datasets

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=libs --grpc_python_out=libs --pyi_out=libs \
	  $(shell find proto -name '*.proto')

clean:
	rm -rf $(VENV) .refinery
