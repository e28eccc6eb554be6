# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3
# torch comes first and pinned: on this CPU-only machine 2.13.0 is the local CPU build; an unpinned torch
# would pull several GB of CUDA packages. On a GPU machine: make TORCH="torch==2.13.0 --index-url ..." test
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine_overhead.py
	$(BIN)/python benchmarks/bench_audit.py

clean:
	rm -rf $(VENV) out build dist *.egg-info
