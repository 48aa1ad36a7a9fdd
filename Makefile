PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,local,bench
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF
STAMP := $(VENV)/.installed-$(EXTRAS)

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install mqgate with its test tools

lint: install ## ruff
	$(BIN)/ruff check .

typecheck: install ## mypy (strict)
	$(BIN)/mypy

test: install ## the whole test suite (needs RabbitMQ and Redis)
	$(BIN)/pytest

test-faults: install ## only the fault-injection suite
	$(BIN)/pytest tests/faults

serve: install ## run the whole stack with the bundled models on :8000
	$(BIN)/mqgate serve

FASTCHAT_VENV := bench/.venv-fastchat

$(FASTCHAT_VENV)/bin/python:
	$(PYTHON) -m venv $(FASTCHAT_VENV)
	$(FASTCHAT_VENV)/bin/python -m pip install -q "fschat==0.2.36" "pydantic<2" "fastapi<0.113" "uvicorn[standard]"

bench: install $(FASTCHAT_VENV)/bin/python ## mqgate against FastChat's server and the bare worker (needs RabbitMQ and Redis)
	$(BIN)/python -m bench.run

.PHONY: help install lint typecheck test test-faults serve bench
