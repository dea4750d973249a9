# `make search` and `make test` are the README's two commands: each one
# creates the virtual environment on first use and installs agetune into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN ?= runs/quick

.PHONY: install search test test-fast clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The main job: a search on the built-in synthetic dataset with the
# CPU-sized space, then its report and exported model.
search: $(STAMP)
	$(BIN)/agetune search --space quick --run $(RUN)
	$(BIN)/agetune report $(RUN)
	$(BIN)/agetune export-best $(RUN) --force

# The whole suite, slow and real-data tests included.
test: $(STAMP)
	$(BIN)/python -m pytest

# The unit tests only, for the edit-test loop.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not real_data"

clean:
	rm -rf $(VENV) .pytest_cache
