# Two commands do everything: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= gridwatch.toml
DEMO   := var/demo.db

.PHONY: run test lint demo bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

# The demo city is regenerated when missing or older than 12 hours, so the lights are current.
demo: $(STAMP)
	@if [ ! -f $(DEMO) ] || [ -n "$$(find $(DEMO) -mmin +720)" ]; then \
		$(BIN)/gridwatch demo --db $(DEMO); fi

run: demo
	$(BIN)/gridwatch run -c $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

# The benchmark (docs/performance.md): 2,000 grids by default, GRIDS=10000 for a city, QUICK=1
# for the tiny CI run. The first run generates the city and installs query-exporter (kept in bench/.work).
GRIDS ?= 2000
bench: $(STAMP)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick,--grids $(GRIDS))
