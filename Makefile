# Two commands on a fresh machine: `make run` (set up + the main job) and `make test` (set up + tests).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install postgres run test test-slow clean

install: postgres $(STAMP)

# Debian's PostgreSQL, for shared Optuna studies (hpo.storage) and the tests that start a throw-away cluster.
# Checked on every install (cheap), outside the venv stamp; installed only where we may (root with apt-get).
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update && apt-get install -y --no-install-recommends postgresql; \
		else echo "PostgreSQL not installed (needs root + apt-get); its tests will be skipped"; fi; fi

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

run: install
	$(PY) run.py $(ARGS)

# one test file per worker, a worker per core (-n auto): the tests spend most of their time in run.py subprocesses
test: install
	$(PY) -m pytest -q -n auto --dist loadfile $(ARGS)

test-slow: install
	$(PY) -m pytest -q -m slow $(ARGS)

clean:
	rm -rf outputs multirun .pytest_cache
