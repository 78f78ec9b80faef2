# The two commands of the README:
#   make demo  -> create .venv if missing, install, run `lavida detect` on the shipped sample video
#   make test  -> create .venv if missing, install with test extras, run pytest
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= outputs/demo
SAMPLE := modeling_lavida/assets/sample.mp4
SAMPLE_ANOMALIES := modeling_lavida/assets/sample.anomalies.txt

.PHONY: demo test install install-test system-deps clean sync-checkpoint-code mutants

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

# Debian packages the browser test needs (Chromium for Playwright) and a CJK font for anomaly names in Chinese,
# Japanese or Korean on scores.png (fonts-noto-cjk; the plot test checks no glyph is missing); each skipped when
# already present.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian chromium for the browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "warning: could not install chromium; the browser test will be skipped"; }
	@test -n "$$(fc-list ':lang=ja' 2>/dev/null)" || { \
		echo "installing Debian fonts-noto-cjk for CJK anomaly names in scores.png"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk >/dev/null) \
		|| echo "warning: could not install fonts-noto-cjk; CJK anomaly names will show as boxes in scores.png"; }

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

# Mutation testing of the core modules with mutmut (the `dev` extra; not part of `make test`). `make mutants` runs every
# module of MUTANT_MODULES in turn, `make mutants-loss` one; each prints its counts, kill rate, wall time and
# survivors. mutmut names a mutant after its file's path while the tests import the package as `lavida` (setup.py's
# package_dir), so each module gets a copy of the sources laid out by import name (src/lavida/...) and of the tests in
# $(MUTANTS_DIR)/<module>/, with pyproject.toml's [tool.mutmut] plus the module's files and test files; mutmut keeps
# its mutants/ folder and results there (a second run retests only what changed). Each mutant runs only the module's
# tests that reach the mutated function. MUTANTS_JOBS: mutants tested at once. MUTANTS_SAMPLE: a sample, by the last
# digit(s) of the mutant's number within its function, as a glob (0: one in ten; [05]: one in five; empty: all).
# MUTANT_NAMES: mutmut name patterns to (re)run instead (e.g. a module's survivors after adding tests).
# MUTANTS_TESTS_REF: take the tests from this git commit instead of the working tree (a kill rate before new tests).
MUTANTS_DIR ?= build/mutation
MUTANTS_JOBS ?= 1
MUTANTS_SAMPLE ?=
MUTANTS_TESTS_REF ?=
MUTANT_MODULES ?= token_compressor model_forward loss metrics postprocessing video_io sampler

# per module: files mutated (below src/lavida), its tests, mutant name patterns (the model: its forward's steps only,
# without the save/load and other-MLLM tests, which take long and do not test the forward)
token_compressor.files := src/lavida/token_compressor.py
token_compressor.tests := tests/modeling/test_token_compressor.py
token_compressor.names := lavida.token_compressor.*__mutmut_*
model_forward.files := src/lavida/modeling_lavida.py
model_forward.tests := tests/modeling/test_modeling_lavida.py $(foreach test,trust_remote_code_load_without_the_package \
	a_qwen2_5_vl_mllm_plugs_in save_pretrained_then_auto_model_gives_identical_outputs \
	checkpoint_with_missing_or_extra_keys_is_refused from_components_adds_seg_token_and_keeps_tower_weights \
	a_checkpoint_is_fine_tuned_into_name_grounding_only_with_new_modules,--deselect=tests/modeling/test_modeling_lavida.py::test_$(test))
model_forward.names := $(foreach step,forward _encode_prompts _predict_frames _loss_terms _grounding_loss \
	_seg_hidden_state _mm_token_type_ids _check_inputs,lavida.modeling_lavida.x*ǁ$(step)__mutmut_*) \
	lavida.modeling_lavida.x__real_frames__mutmut_* lavida.modeling_lavida.x__per_frame__mutmut_*
loss.files := src/lavida/loss_lavida.py
loss.tests := tests/modeling/test_loss_lavida.py
loss.names := lavida.loss_lavida.*__mutmut_*
metrics.files := src/lavida/metrics/*
metrics.tests := tests/metrics
metrics.names := lavida.metrics.*__mutmut_*
postprocessing.files := src/lavida/processing/postprocessing.py
postprocessing.tests := tests/processing/test_postprocessing.py
postprocessing.names := lavida.processing.postprocessing.*__mutmut_*
video_io.files := src/lavida/processing/video_io.py
video_io.tests := tests/processing/test_video_io.py
video_io.names := lavida.processing.video_io.*__mutmut_*
sampler.files := src/lavida/dataset_builders/sampler.py
sampler.tests := tests/dataset_builders/test_sampler.py
sampler.names := lavida.dataset_builders.sampler.*__mutmut_*

comma := ,
toml_list = [$(subst $(eval) ,$(comma) ,$(foreach item,$(1),"$(item)"))]

mutants: $(addprefix mutants-,$(MUTANT_MODULES))

$(VENV)/.installed-dev: setup.py $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test,dev]"
	touch $@ $(VENV)/.installed-test $(VENV)/.installed

mutants-%: $(VENV)/.installed-dev
	@test -n "$($*.files)" || { echo "unknown module '$*'; one of: $(MUTANT_MODULES)"; exit 2; }
	@set -f; stage=$(MUTANTS_DIR)/$*; rm -rf $$stage/src $$stage/tests; mkdir -p $$stage/src/lavida; \
	tar -C modeling_lavida --exclude=checkpoints --exclude=__pycache__ -cf - . | tar -C $$stage/src/lavida -xf -; \
	for folder in processing dataset_builders space; do mkdir -p $$stage/src/lavida/$$folder; \
		tar -C $$folder --exclude=__pycache__ -cf - . | tar -C $$stage/src/lavida/$$folder -xf -; done; \
	tar --exclude=__pycache__ -cf - pytest.ini $(if $(MUTANTS_TESTS_REF),,tests) | tar -C $$stage -xf -; \
	$(if $(MUTANTS_TESTS_REF),git archive $(MUTANTS_TESTS_REF) tests | tar -C $$stage -xf -;) \
	{ cat pyproject.toml; echo 'only_mutate = $(call toml_list,$($*.files))'; \
	  echo 'pytest_add_cli_args_test_selection = $(call toml_list,$($*.tests))'; } > $$stage/pyproject.toml; \
	cd $$stage && start=$$(date +%s); \
	HF_HUB_OFFLINE=1 $(CURDIR)/$(BIN)/mutmut run --max-children $(MUTANTS_JOBS) \
		$(or $(MUTANT_NAMES),$(addsuffix $(MUTANTS_SAMPLE),$($*.names))) > mutmut-run.log 2>&1 || { tail -n 30 mutmut-run.log; exit 1; }; \
	seconds=$$(( $$(date +%s) - start )); \
	$(CURDIR)/$(BIN)/mutmut results --all true | grep -v ': not checked$$' \
		| grep -E '__mutmut_[0-9]*$(MUTANTS_SAMPLE): ' > mutmut-results.txt; \
	awk -F': ' -v module=$* -v seconds=$$seconds '{ count[$$NF]++; total++ } \
		END { caught = count["killed"] + count["timeout"]; tested = caught + count["survived"]; \
		      printf "%s: %d mutants, %d killed or timed out of %d tested (%.1f %%), %d survived, %d without tests, %d s\n", \
		             module, total, caught, tested, tested ? 100 * caught / tested : 0, count["survived"], \
		             count["no tests"], seconds }' mutmut-results.txt; \
	grep ': survived$$' mutmut-results.txt | sed 's/^ */  survived: /; s/: survived$$//' || true
