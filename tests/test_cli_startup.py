"""``import lavida`` and the ``lavida`` command start without torch; the package registers itself on first use."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import types
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY_MODULES = ("torch", "transformers")

# Runs ``lavida.cli.main(argv)`` and reports the exit status, stdout and which heavy modules got imported.
RUN_CLI = textwrap.dedent("""
    import contextlib, io, json, sys

    from lavida.cli import main

    argv = json.loads(sys.argv[1])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exit:
            status = exit.code
    print(json.dumps({"status": status, "stdout": out.getvalue(),
                      "imported": [name for name in json.loads(sys.argv[2]) if name in sys.modules]}))
""")


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, check=True)


def _run_cli(argv: list[str]) -> dict:
    return json.loads(_python(RUN_CLI, json.dumps(argv), json.dumps(HEAVY_MODULES)).stdout)


def test_import_lavida_imports_neither_torch_nor_transformers():
    code = "import sys, lavida; print(sorted(set(sys.argv[1:]) & set(sys.modules)))"
    assert _python(code, *HEAVY_MODULES).stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["detect", "--help"], ["build-dataset", "--help"], ["--version"]],
                         ids=" ".join)
def test_help_and_version_skip_torch(argv):
    result = _run_cli(argv)
    assert result["status"] == 0 and result["stdout"]
    assert result["imported"] == []


def test_a_command_failing_its_checks_skips_torch(tmp_path):
    result = _run_cli(["build-dataset", "mevis", "--out", str(tmp_path / "m")])  # no --data-root
    assert result["status"] == 2 and result["imported"] == []


def test_version_prints_the_installed_distribution_version(capsys):
    from importlib.metadata import version

    from lavida.cli import main

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"lavida {version('lavida-hf')}"


def test_version_falls_back_to_the_source_version(monkeypatch):
    import importlib.metadata

    import lavida

    def not_installed(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert lavida.package_version() == lavida.SOURCE_VERSION


def test_source_version_matches_setup_py():
    import lavida

    setup_py = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert re.search(r'version="([^"]+)"', setup_py).group(1) == lavida.SOURCE_VERSION


@pytest.mark.parametrize("trigger", ["lavida.LavidaConfig", "lavida.register_with_transformers()"])
def test_first_use_registers_with_transformers(trigger):
    code = textwrap.dedent(f"""
        import sys

        import lavida

        assert "torch" not in sys.modules
        {trigger}
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_MAPPING
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
        from transformers.pipelines import PIPELINE_REGISTRY

        from lavida.configuration_lavida import LavidaConfig
        from lavida.modeling_lavida import LavidaForVideoAnomalyDetection
        from lavida.processing.processing_lavida import LavidaProcessor

        assert type(AutoConfig.for_model("lavida")) is LavidaConfig
        assert MODEL_MAPPING[LavidaConfig] is LavidaForVideoAnomalyDetection
        assert PROCESSOR_MAPPING[LavidaConfig] is LavidaProcessor
        assert (LavidaConfig._auto_class, LavidaForVideoAnomalyDetection._auto_class,
                LavidaProcessor._auto_class) == ("AutoConfig", "AutoModel", "AutoProcessor")
        assert "video-anomaly-detection" in PIPELINE_REGISTRY.get_supported_tasks()
        assert lavida.LavidaConfig is LavidaConfig and lavida.LavidaProcessor is LavidaProcessor
        print("registered")
    """)
    assert _python(code).stdout.strip() == "registered"


def test_unknown_attributes_and_submodules():
    import lavida

    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        lavida.nothing_here  # noqa: B018
    from lavida import errors  # a submodule still imports through ``from lavida import``

    assert errors.__name__ == "lavida.errors"
    assert {"LavidaConfig", "LavidaProcessor", "register_with_transformers", "__version__"} <= set(dir(lavida))


def _fake_command(monkeypatch, calls: list[str], check_error: Exception | None = None) -> None:
    """Install a ``fake`` subcommand that records the order of its hooks."""
    from lavida import cli

    module = types.ModuleType("lavida_fake_command", "A fake subcommand.")
    module.add_arguments = lambda parser: parser.add_argument("--flag", action="store_true")

    def check_args(args) -> None:
        calls.append("check_args")
        if check_error is not None:
            raise check_error

    module.check_args = check_args
    module.run = lambda args: calls.append(f"run flag={args.flag}") or 0
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "fake", cli.CommandSpec(module.__name__, uses_checkpoints=True))
    monkeypatch.setattr("lavida.register_with_transformers", lambda: calls.append("register"))


def test_check_args_runs_before_registration_and_run(monkeypatch):
    from lavida.cli import main

    calls: list[str] = []
    _fake_command(monkeypatch, calls)
    assert main(["-v", "fake", "--flag"]) == 0
    assert calls == ["check_args", "register", "run flag=True"]


def test_check_args_errors_are_one_line_before_registration(monkeypatch, capsys):
    from lavida.cli import main

    calls: list[str] = []
    _fake_command(monkeypatch, calls, check_error=FileNotFoundError("Video missing.mp4 does not exist"))
    assert main(["fake"]) == 2
    assert calls == ["check_args"]
    assert capsys.readouterr().err == "lavida fake: error: Video missing.mp4 does not exist\n"


def test_only_the_chosen_command_adds_its_arguments(monkeypatch):
    from lavida import cli

    added: list[str] = []
    real = cli._import_command

    def recording(name: str):
        module = real(name)
        if module is None:
            return None
        spy = types.ModuleType(module.__name__, module.__doc__)
        spy.add_arguments = lambda parser, name=name, module=module: added.append(name) or module.add_arguments(parser)
        spy.run = module.run
        return spy

    monkeypatch.setattr(cli, "_import_command", recording)
    with pytest.raises(SystemExit):
        cli.main(["detect", "--help"])
    assert added == ["detect"]
    added.clear()
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert added == []


def test_a_missing_video_is_refused_before_torch_is_imported(tmp_path):
    video = tmp_path / "present.mp4"
    video.write_bytes(b"checked later, when read")
    missing = tmp_path / "missing.mp4"
    result = _run_cli(["detect", str(video), str(missing), "--anomalies", "fire", "--out", str(tmp_path / "out")])
    assert result["status"] == 2 and result["imported"] == []
    assert not (tmp_path / "out").exists()  # no work, no index


@pytest.mark.parametrize("command", [["detect", "{video}", "--anomalies", "fire"],
                                     ["evaluate", "--benchmark", "ped2", "--data-root", "{root}"]],
                         ids=lambda argv: argv[0])
def test_out_naming_a_file_is_refused_before_torch_is_imported(tmp_path, command):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    taken = tmp_path / "taken.txt"
    taken.write_text("not a folder")
    argv = [word.format(video=video, root=tmp_path) for word in command]
    result = _run_cli([*argv, "--out", str(taken)])
    assert result["status"] == 2 and result["imported"] == []
    assert taken.read_text() == "not a folder"


@pytest.mark.parametrize("command", [["detect", "{video}", "--anomalies", "fire"],
                                     ["evaluate", "--benchmark", "ped2", "--data-root", "{root}"]],
                         ids=lambda argv: argv[0])
def test_out_errors_are_one_line_naming_the_path(tmp_path, capsys, command):
    from lavida.cli import main

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    (tmp_path / "taken.txt").write_text("not a folder")
    argv = [word.format(video=video, root=tmp_path) for word in command]
    for out in (tmp_path / "taken.txt", tmp_path / "taken.txt" / "below"):
        assert main([*argv, "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and str(tmp_path / "taken.txt") in error and "--out" in error, error
