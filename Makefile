# Two commands on a fresh machine:
#   make run    set everything up (venv, packages, database, KL's newsletters) and start the app
#   make test   install everything the tests need and run the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
FLASK  := $(BIN)/flask --app wsgi
HOST   ?= 127.0.0.1
PORT   ?= 5000

.PHONY: run setup test test-fast test-browser test-postgres test-clock lint format translations \
        extract-messages assets browser bytecode clean

run: setup
	@echo "KL's newsletters: http://$(HOST):$(PORT)/   captured mail: http://$(HOST):$(PORT)/dev/mail/"
	NEWSLETTERS_PUBLIC_BASE_URL=$${NEWSLETTERS_PUBLIC_BASE_URL:-http://$(HOST):$(PORT)} \
		$(FLASK) run --host $(HOST) --port $(PORT)

setup: $(VENV)/.installed assets translations bytecode instance/config.py
	$(FLASK) db upgrade
	$(FLASK) seed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# The package's byte code, as a (non-editable) pip install writes it: where
# PYTHONDONTWRITEBYTECODE is set (containers often set it), every process would compile
# the whole package again at its start (0.1 s for the worker and each CLI command).
bytecode: $(VENV)/.installed
	$(BIN)/python -m compileall -q newsletters wsgi.py

# Det Fælles Designsystem (and axe-core for the accessibility tests), from npm.
assets: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: pages fall back to plain styling (install Node.js for dkfds)"; fi

# The compiled .mo files are committed (every install needs them, with no build step);
# after translating, run this and commit them with the .po files.
translations: $(VENV)/.installed
	$(BIN)/pybabel compile --statistics -d newsletters/translations 2>&1 | grep -v "^$$" || true

# After changing a translatable text: update the catalogues, then translate in the .po files.
extract-messages: $(VENV)/.installed
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k N_ --no-location --sort-output \
		--project newsletters -w 100 -o newsletters/translations/messages.pot .
	$(BIN)/pybabel update -i newsletters/translations/messages.pot -d newsletters/translations \
		--no-fuzzy-matching -w 100

# A laptop's own settings: a random SECRET_KEY and the dev mailbox. Never overwritten.
instance/config.py: | $(BIN)/python
	mkdir -p instance
	$(BIN)/python -c "import secrets; print(f'SECRET_KEY = {secrets.token_hex(32)!r}'); print('DEV_MAILBOX = True')" > $@

browser:
	scripts/ensure-chromium
	scripts/ensure-java

test: $(VENV)/.installed assets translations bytecode browser
	$(BIN)/pytest $(PYTEST_ARGS)

# Without the slower end-to-end and browser tests.
test-fast: $(VENV)/.installed assets translations bytecode
	$(BIN)/pytest -m "not e2e and not browser" $(PYTEST_ARGS)

test-browser: $(VENV)/.installed assets translations bytecode browser
	$(BIN)/pytest -m browser $(PYTEST_ARGS)

# The same suite on PostgreSQL (trust auth on localhost, database `test`).
test-postgres: $(VENV)/.installed assets translations bytecode browser
	NEWSLETTERS_TEST_DATABASE_URL=$${NEWSLETTERS_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test} \
		$(BIN)/pytest $(PYTEST_ARGS)

# The fast suite and the schedule, feed and digest tests with every process's clock moved
# (libfaketime) to 03:00, 07:30 and 12:00 on a Monday and noon on a Saturday, Copenhagen:
# no test may depend on the hour or the weekday. Needs `apt-get install faketime`.
test-clock: $(VENV)/.installed assets translations bytecode browser
	scripts/test-at-hours

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) node_modules .pytest_cache
