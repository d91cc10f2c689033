# The two commands of the README:  `make demo`  and  `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3.11

.PHONY: setup demo test test-unit stack-up stack-down bench bench-dedup bench-gallery bench-trafficking bench-review bench-privacy bench-watchlist lint docs

$(VENV)/.installed: pyproject.toml requirements.lock
	./infra/setup-system.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

setup: $(VENV)/.installed
	./infra/setup-system.sh

demo: setup
	$(VENV)/bin/lintas demo

# Two processes (this machine kind has two cores): each takes a whole test module at a time, so a module's
# stack and the order of its tests stay its own; every module waits on conditions, not on the other's pace.
test: setup
	$(PY) -m pytest -n 2 --dist loadfile --durations=15

test-unit: setup
	$(PY) -m pytest tests/unit

stack-up: setup
	$(VENV)/bin/lintas stack up

stack-down:
	$(VENV)/bin/lintas stack down

bench: setup
	$(PY) -m bench.producer
	$(PY) -m bench.pipeline

bench-dedup: setup
	$(PY) -m bench.dedup_index --sizes 100000 1000000 --queries 500

bench-gallery: setup
	$(PY) -m bench.gallery_scale --sizes 100000 1000000 --queries 1000

bench-trafficking: setup
	$(PY) -m bench.trafficking --crossings 100000 --days 7

bench-review: setup
	$(PY) -m bench.review

bench-privacy: setup
	$(PY) -m bench.privacy --crossings 20000

bench-watchlist: setup
	$(PY) -m bench.watchlist --entries 1000000 --crossings 50000

lint: setup
	$(VENV)/bin/ruff check streams agents infra tests bench
	$(VENV)/bin/mypy

# docs/ as a site, under the state directory (never committed); --strict fails on a broken link or anchor.
docs: setup
	$(PY) -m mkdocs build --strict --site-dir .lintas/site
