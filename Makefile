# The two commands of the README:
#   make demo  -> create .venv if missing, install, run `lavida detect` on the shipped sample video
#   make test  -> create .venv if missing, install with test extras, run pytest
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= outputs/demo

.PHONY: demo test install install-test system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: setup.py $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: setup.py $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test system-deps

# Debian packages the browser test needs (Chromium for Playwright); skipped when already present.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian chromium for the browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "warning: could not install chromium; the browser test will be skipped"; }

demo: install
	$(BIN)/lavida demo-run --out $(OUT)

test: install-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) outputs build *.egg-info
