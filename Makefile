# The two commands of the README:
#   make demo  -> create .venv if missing, install, run `lavida detect` on the shipped sample video
#   make test  -> create .venv if missing, install with test extras, run pytest
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= outputs/demo
SAMPLE := modeling_lavida/assets/sample.mp4
SAMPLE_ANOMALIES := modeling_lavida/assets/sample.anomalies.txt

.PHONY: demo test install install-test system-deps clean sync-checkpoint-code

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

# The sample is a synthetic-world video with a held-out "purple hexagon" crossing the scene (frames 37-73);
# regenerate it with: python -c "from lavida.dataset_builders.synthetic_vad import make_sample_video; make_sample_video('modeling_lavida/assets')"
demo: install
	HF_HUB_OFFLINE=1 $(BIN)/lavida detect $(SAMPLE) --anomalies "$$(cat $(SAMPLE_ANOMALIES))" --out $(OUT)

test: install-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) outputs build *.egg-info

# The shipped checkpoint carries copies of the model and processor code (for trust_remote_code loading); refresh them
# from the sources after changing those files (no retraining; tests/modeling/test_checkpoint_code.py checks them).
sync-checkpoint-code:
	for file in modeling_lavida/checkpoints/*/*.py; do \
		name=$$(basename $$file); \
		if [ -f processing/$$name ]; then cp processing/$$name $$file; else cp modeling_lavida/$$name $$file; fi; \
	done
