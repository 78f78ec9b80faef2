"""`lavida train` checks every input before building a model: one line, exit 2, every problem listed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lavida.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_model_build(monkeypatch):
    """Fail the test if a run gets as far as building its model."""
    import lavida.model_factory

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built although the inputs of the run are incomplete")

    monkeypatch.setattr(lavida.model_factory, "build_model_and_processor", refuse)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _built_corpus(folder: Path, split: str = "train") -> Path:
    """A folder that looks built to the preflight (its shard files exist)."""
    _write(folder / "data" / f"{split}-00000-of-00001.parquet", "")
    return folder


def _run_train(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["train", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lavida train: error: ") and "Traceback" not in err
    return lines[0]


def test_one_message_lists_every_missing_input_and_nothing_is_built(tmp_path, capsys, monkeypatch, no_model_build):
    import lavida.training

    monkeypatch.setattr(lavida.training, "_deepspeed_installed", lambda: False)
    monkeypatch.setattr(lavida.training, "_bf16_supported", lambda: False)
    monkeypatch.setattr(lavida.training, "_hub_offline", lambda: True)
    _built_corpus(tmp_path / "corpora" / "ade20k")
    (tmp_path / "corpora" / "mapillary").mkdir(parents=True)  # started, never finished: no shard
    mix = _write(tmp_path / "mixes" / "mix.yaml", """
        seed: 1
        sources:
          - {path: ../corpora/mevis, probability: 0.5}
          - {path: ../corpora/ade20k, probability: 0.2}
          - {path: ../corpora/mapillary, probability: 0.1}
          - {path: corpora/ref-davis, probability: 0.2}
    """)
    config = _write(tmp_path / "run.yaml", f"""
        model:
          init: components
          mllm: {tmp_path / "checkpoints" / "qwen2-vl"}
          sam2: ./no-such-folder/sam2.1-hiera-small
          text_encoder: lavida-test-org/no-such-encoder
        data:
          train: {{source: {mix}}}
          eval: {{source: {tmp_path / "corpora" / "held-out"}}}
        training:
          output_dir: {tmp_path / "out"}
          bf16: true
          deepspeed: {tmp_path / "ds_zero2.json"}
          learning_rte: 1.0e-5
    """)
    code, out, err = _run_train(capsys, "--config", str(config), "--resume", str(tmp_path / "checkpoint-7"))
    assert code == 2 and out == ""
    message = _assert_one_line_error(err)
    assert "nothing was built" in message
    expected = [
        f"model.mllm {tmp_path / 'checkpoints' / 'qwen2-vl'} does not exist",
        "model.sam2 ./no-such-folder/sam2.1-hiera-small does not exist",
        "model.text_encoder lavida-test-org/no-such-encoder is neither a local folder nor in the Hugging Face cache",
        # the mix's relative paths are relative to the mix file; each missing corpus comes with its build command
        f"`lavida build-dataset mevis --data-root DATA_ROOT --out {tmp_path / 'corpora' / 'mevis'}`",
        f"corpus folder {tmp_path / 'corpora' / 'mapillary'} has no data/train-*.parquet shards",
        f"`lavida build-dataset ref-davis --data-root DATA_ROOT --out {tmp_path / 'mixes' / 'corpora' / 'ref-davis'}`",
        f"data.eval.source {tmp_path / 'corpora' / 'held-out'} does not exist",
        "--split validation",
        "unknown TrainingArguments fields ['learning_rte']",
        'the deepspeed package is not installed (pip install "lavida-hf[train]")',
        f"DeepSpeed config {tmp_path / 'ds_zero2.json'} does not exist",
        "training.bf16 is set but this machine has no GPU with bfloat16 support",
        f"--resume checkpoint {tmp_path / 'checkpoint-7'} does not exist",
    ]
    for part in expected:
        assert part in message, (part, message)
    assert "ade20k" not in message  # the built corpus is fine
    assert f"({len(expected) - 1})" in message and f"({len(expected)})" not in message  # --split is part of (7)


def test_a_deepspeed_json_that_is_not_json_is_reported(tmp_path, capsys, monkeypatch, no_model_build):
    import lavida.training

    monkeypatch.setattr(lavida.training, "_deepspeed_installed", lambda: True)
    broken = _write(tmp_path / "ds.json", '{"zero_optimization": {"stage": 2,}')
    config = _write(tmp_path / "run.yaml", f"""
        model: {{init: tiny}}
        training: {{output_dir: {tmp_path / "out"}, use_cpu: true, deepspeed: {broken}}}
    """)
    code, _, err = _run_train(capsys, "--config", str(config))
    assert code == 2
    assert f"training.deepspeed: {broken} is not a readable JSON file" in _assert_one_line_error(err)


def test_the_paper_config_lists_its_unbuilt_corpora_before_building_the_8b_model(capsys, monkeypatch,
                                                                                  no_model_build):
    monkeypatch.chdir(ROOT)
    if (ROOT / "corpora" / "mevis").exists():
        pytest.skip("the paper's corpora are built in this checkout")
    code, _, err = _run_train(capsys, "--config", "configs/lavida-7b.yaml")
    assert code == 2
    message = _assert_one_line_error(err)
    for source in ("youtube-vos", "ref-youtube-vos", "mevis", "ref-davis", "cityscapes", "refcoco", "refcoco+",
                   "refcocog", "refclef", "ade20k", "mapillary"):
        assert f"`lavida build-dataset {source} --data-root DATA_ROOT --out corpora/{source}`" in message


@pytest.mark.parametrize("text, expected", [
    ("model: {init: tiny\ntraining: {}\n", "is not valid YAML at line"),
    ("- model\n- training\n", "must be a YAML mapping of sections at its top level, got a list"),
    ("model: tiny\n", "model must be a mapping, got 'tiny'"),
    ("training: [1, 2]\n", "training must be a mapping, got [1, 2]"),
    ("data: {train: [synthetic]}\n", "data.train must be a mapping, got ['synthetic']"),
    ("data: {validation: {source: synthetic}}\n", "data has unknown keys ['validation']"),
    ("lora: yes\n", "lora must be a mapping, got True"),
    ("seed: forty-two\n", "seed must be an integer"),
    ("model: {init: tiny, widht: 3}\n", "unexpected keyword argument 'widht'"),
    ("data: {train: {source: 7}}\n", "data.train.source must be a str, got 7"),
    ("freeze: {train_only: head}\n", "freeze.train_only must be a list or null"),
    ("schedule: {}\n", "unknown sections ['schedule']"),
    ("when: 2024-13-45\n", "is not valid YAML"),
    ("training: {1: 2}\n", "training has keys that are not names"),
    ("train_step: head\n", "train_step must be one of ['full', 'grounding_head'], got 'head'"),
])
def test_a_malformed_config_gives_one_line_and_exit_2(tmp_path, capsys, no_model_build, text, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    code, _, err = _run_train(capsys, "--config", str(config))
    assert code == 2
    assert expected in _assert_one_line_error(err)


def test_a_config_that_is_not_text_gives_one_line(tmp_path, capsys, no_model_build):
    config = tmp_path / "bad.yaml"
    config.write_bytes(b"\xff\xfe\x00model: {}\x80")
    code, _, err = _run_train(capsys, "--config", str(config))
    assert code == 2 and "cannot be read" in _assert_one_line_error(err)


def test_complete_inputs_pass_and_check_builds_nothing(tmp_path, capsys, monkeypatch, no_model_build):
    from lavida.training import DataSpec, TrainConfig, check_training_inputs

    corpus = _built_corpus(tmp_path / "corpora" / "synthetic")
    mix = _write(tmp_path / "mix.yaml", "sources:\n  - {path: corpora/synthetic, probability: 1.0}\n")
    config = TrainConfig(train_data=DataSpec(source=str(mix)), eval_data=DataSpec(source=str(
        _built_corpus(tmp_path / "held-out", split="validation"))),
        training={"use_cpu": True, "max_steps": 1, "output_dir": str(tmp_path / "out")})
    assert corpus.is_dir() and check_training_inputs(config) == []
    assert "--resume: no checkpoint-* folder" in check_training_inputs(config, resume=True)[0]

    monkeypatch.chdir(ROOT)
    code, out, err = _run_train(capsys, "--config", "configs/lavida-tiny.yaml", "--check")
    assert code == 0 and err == "" and "every input of the run is in place" in out


@pytest.mark.parametrize("text, expected", [
    ("model: !!python/object/apply:os.system [echo owned]\n", "is not valid YAML at line 1, column 8"),
    ("model:\n  init: !!python/name:os.system\n", "is not valid YAML at line 2, column 9"),
    ("training: {learning_rate: fast, max_steps: 1}\n", "training.learning_rate must be a float, got 'fast'"),
    ("training: {max_steps: 2.5}\n", "training.max_steps must be an int, got 2.5"),
    ("training: {use_cpu: 'no', max_steps: 1}\n", "training.use_cpu must be a bool, got 'no'"),
    ("training: {logging_steps: [1]}\n", "training.logging_steps must be a float, got [1]"),
    ("training: {output_dir: 7}\n", "training.output_dir must be a str or null, got 7"),
    ("training: {learning_rate: 1e-5}\n", "got '1e-5' (YAML reads it as text: write 1.0e-5)"),
])
def test_hostile_tags_and_mistyped_training_values_give_one_line(tmp_path, capsys, no_model_build, text, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    for extra in ([], ["--check"]):
        code, _, err = _run_train(capsys, "--config", str(config), *extra)
        assert code == 2
        assert expected in _assert_one_line_error(err)


def test_a_config_of_shared_aliases_is_reported_without_expanding_them(tmp_path, capsys, no_model_build):
    # 10 ** 9 leaves reached through aliases: a message that printed the value whole would never finish
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    config = tmp_path / "bomb.yaml"
    config.write_text("bombs:\n" + "\n".join(f"  {level}" for level in levels) + "\nseed: *a9\ntraining: *a9\n")
    code, _, err = _run_train(capsys, "--config", str(config))
    assert code == 2
    message = _assert_one_line_error(err)
    assert "seed must be an integer" in message and "training must be a mapping" in message and len(message) < 600


def test_a_folder_given_as_config_is_named_as_a_folder(tmp_path, capsys, no_model_build):
    code, _, err = _run_train(capsys, "--config", str(tmp_path))
    assert code == 2 and "is a folder" in _assert_one_line_error(err)
