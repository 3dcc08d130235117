# Two commands do everything: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TESTED := $(VENV)/.installed-test
CONFIG ?= gridwatch.toml
DEMO   := var/demo.db

.PHONY: run test lint packages demo bench clean

# `make run` installs what the daemon needs; `make test` adds the test tools.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(TESTED): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

# The demo city is regenerated when missing or older than 12 hours, so the lights are current.
demo: $(STAMP)
	@if [ ! -f $(DEMO) ] || [ -n "$$(find $(DEMO) -mmin +720)" ]; then \
		$(BIN)/gridwatch demo --db $(DEMO); fi

run: demo
	$(BIN)/gridwatch run -c $(CONFIG)

lint: $(TESTED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The Debian packages the component tests drive (PostgreSQL, MariaDB, Prometheus, Alertmanager, Chromium…):
# installed with root or sudo; otherwise named, and under CI=true their absence fails the run.
packages:
	@scripts/install-test-packages || { [ -z "$(CI)" ] && echo "==> going on: those tests will be skipped" >&2; }

test: packages lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

# The benchmark (docs/performance.md), on SQLite and PostgreSQL side by side: 2,000 grids by
# default, GRIDS=10000 for a city, QUICK=1 for the tiny CI run, DB=sqlite or DB=postgres for one
# database. The first run generates the city, loads it into a private PostgreSQL cluster and
# installs query-exporter (all kept in bench/.work).
GRIDS ?= 2000
bench: $(TESTED)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick,--grids $(GRIDS)) $(if $(DB),--db $(DB))
