# The two commands of the README: `make demo` and `make test`.
# Both create .venv with the system's python3 when it is missing and install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

# The install also compiles the particle kernels into numba's on-disk cache, once: otherwise
# every Ray worker of the first farm compiles them at once (5.6 s each), and a fresh clone's
# first demo showed its first frame at 69 % of the job instead of about 30 %.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -c 'from farm.vocab import LayerKind; from scheduler.executors.session import warm; warm(LayerKind.PARTICLE_RENDER)'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/farm demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -ra

bench: $(STAMP)
	$(BIN)/python bench/render.py
	$(BIN)/python bench/assemble.py
	$(BIN)/python bench/tiling_speedup.py
	$(BIN)/python bench/submit.py
	$(BIN)/python bench/dispatch.py
	$(BIN)/python bench/planner.py
	$(BIN)/python bench/db_tick.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
