# genq — see README.md. Every target works on a fresh machine after `make install`.
PYTHON ?= python3
UV_VERSION ?= 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install run test test-fast test-browser lint bench clean browser-deps

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(TOOLS) uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	PYTHONPATH=$(TOOLS) $(UV) sync --locked --python $(PYTHON)
	touch $@

install: $(VENV)/.synced browser-deps

# The browser tier (tests/browser/) drives Debian's Chromium; a CJK font lets it draw the zh-CN pages.
# Installed with apt-get when we are root and it is missing; otherwise the tier says how (and CI fails).
BROWSER_PACKAGES := chromium fonts-wqy-zenhei
browser-deps:
	@missing=$$(for p in $(BROWSER_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $$missing (Debian packages, for the browser tests)"; \
		(apt-get install -y -qq --no-install-recommends $$missing >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null)) \
		|| echo "could not install $$missing: the browser tests will not run"; \
	else echo "not installed: $$missing (the browser tests need them: sudo apt-get install $$missing)"; fi

run: install
	$(BIN)/genq run

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# The fast tier alone (marker `fast`): pure rules, API handlers and every actor on a StubBroker, with
# SQLite, fakeredis and moto in-process; no server, no DATABASE_URL / REDIS_URL. Target: under 30 s.
# pytest prints its time and the five slowest steps. (The plugins disabled are unused here, and slow to load.)
FAST_TESTS := tests/unit tests/fast tests/test_house.py client/tests
test-fast: install
	$(BIN)/pytest -m fast $(FAST_TESTS) -p no:schemathesis -p no:hypothesispytest -p no:faker --durations=5 $(PYTEST_ARGS)

# The browser tier alone: Debian's Chromium against `genq run`; screenshots in test-output/browser/.
test-browser: install
	$(BIN)/pytest tests/browser $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Seed 001's Sora batch and the wake-on-release hand-off on the KIE simulator, scaled down (bench/).
# Prints tables, asserts nothing; embedded services unless DATABASE_URL / REDIS_URL / S3_ENDPOINT_URL
# are set (the Redis database given is flushed, like `make test`). About seven minutes; the API and
# pipeline tables start real server and worker processes on loopback.
bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache
