# Two commands do everything: `make demo` and `make test`. Each creates/updates the virtual
# environment in .venv (CPU torch pinned by constraints.txt) and then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench checkpoint clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>/dev/null || true
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/repgraph demo --out results/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_modularity.py

# Re-make the shipped digits checkpoint (repgraph/data/resnet20_digits.pt) with the project's own trainer.
checkpoint: $(STAMP)
	$(BIN)/repgraph train --model resnet20 --out repgraph/data/resnet20_digits.pt

clean:
	rm -rf $(VENV) results .pytest_cache
