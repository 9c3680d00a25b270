# One command each: `make demo` (set up and run the demo), `make test` (set up and test).
# Everything installs into .venv from the package index; nothing else is needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/ctilink: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/ctilink
	$(BIN)/ctilink demo

lint: $(BIN)/ctilink
	$(BIN)/ruff check ctilink tests bench
	$(BIN)/ruff format --check ctilink tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

bench: $(BIN)/ctilink
	$(BIN)/python bench/replay_bench.py
	$(BIN)/python bench/ami_link_bench.py
	$(BIN)/python bench/fastagi_bench.py
	$(BIN)/python bench/csta_bench.py
	$(BIN)/python bench/eventsocket_bench.py
	$(BIN)/python bench/routing_bench.py --customers 100000

clean:
	rm -rf $(VENV) ctilink-demo build *.egg-info
