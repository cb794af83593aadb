# genq — see README.md. Every target works on a fresh machine after `make install`.
PYTHON ?= python3
UV_VERSION ?= 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install run test lint bench clean

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(TOOLS) uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	PYTHONPATH=$(TOOLS) $(UV) sync --locked --python $(PYTHON)
	touch $@

install: $(VENV)/.synced

run: install
	$(BIN)/genq run

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Seed 001's Sora batch and the wake-on-release hand-off on the KIE simulator, scaled down (bench/).
# Prints tables, asserts nothing; embedded services unless DATABASE_URL / REDIS_URL / S3_ENDPOINT_URL
# are set (the Redis database given is flushed, like `make test`). Five to six minutes; the API and
# pipeline tables start real server and worker processes on loopback.
bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache
