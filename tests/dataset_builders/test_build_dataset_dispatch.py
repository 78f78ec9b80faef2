"""``lavida build-dataset`` dispatches SOURCE through one table that matches the parser's choices."""

from __future__ import annotations

import argparse

import pytest

from lavida.commands import build_dataset
from lavida.dataset_builders.sources import SOURCE_NAMES
from lavida.errors import UserInputError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    build_dataset.add_arguments(parser)
    return parser


def _source_choices() -> list[str]:
    action = next(action for action in _parser()._actions if action.dest == "source")
    return list(action.choices)


def test_every_cli_choice_has_a_builder_and_every_builder_is_a_choice():
    assert sorted(_source_choices()) == sorted(build_dataset.source_builders())


def test_the_table_covers_generated_mix_synthesized_and_every_real_source():
    expected = {*build_dataset.GENERATED_SOURCES, "mix", "synthesized", *SOURCE_NAMES}
    assert set(build_dataset.source_builders()) == expected
    real = {name for name, builder in build_dataset.source_builders().items()
            if build_dataset.DATA_ROOT_REQUIRED in builder.required}
    assert real == set(SOURCE_NAMES)


@pytest.mark.parametrize(("text", "name"), [("REF_DAVIS", "ref-davis"), (" mevis ", "mevis"),
                                             ("synthetic_vad", "synthetic-vad"), ("refcoco+", "refcoco+")])
def test_source_spellings(text, name):
    assert _parser().parse_args([text, "--out", "o"]).source == name


def test_unknown_source_is_rejected_with_the_choices(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["coco", "--out", "o"])
    assert "invalid choice: 'coco'" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["mix"], "SOURCE 'mix' needs --mix FILE.yaml listing built corpora and probabilities."),
    (["ref-davis"], "Source 'ref-davis' reads its release folder: pass --data-root DIR."),
])
def test_a_missing_required_option_is_named(tmp_path, argv, message):
    args = _parser().parse_args([*argv, "--out", str(tmp_path / "out")])
    with pytest.raises(UserInputError, match=message.replace("+", r"\+").replace(".", r"\.")):
        build_dataset.run(args)
    assert not (tmp_path / "out").exists()


def test_run_rejects_a_source_outside_the_table(tmp_path):
    args = _parser().parse_args(["mevis", "--out", str(tmp_path / "out")])
    args.source = "coco"
    with pytest.raises(UserInputError, match="unknown source 'coco'; valid sources are: synthetic, "):
        build_dataset.run(args)
