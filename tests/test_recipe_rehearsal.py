"""The paper's recipe rehearsed end to end, as a user with the real Hub checkpoints runs it.

Component checkpoints written with the real classes and the real repositories' quirks (a flat Qwen2-VL config with
mrope, bf16 weights, a padded vocabulary; SAM 2.1 as a ``sam2_video`` repo; a full ``CLIPModel``) stand in for the
three Hub ids; a mix corpus is built from fixtures of all eight source layouts (images and videos together); then
``configs/lavida-7b.yaml``, with only those paths swapped in, the step count shrunk and DeepSpeed off on CPU, is
trained with ``lavida train``; the export is loaded by a process that cannot import the package
(``trust_remote_code``), and ``lavida evaluate`` and ``lavida detect`` run on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lavida.cli import main as lavida_main
from lavida.trainer_lavida import LOSS_TERMS
from tests.fixtures.component_checkpoints import write_component_checkpoints
from tests.fixtures.eight_sources import build_eight_source_mix
from tests.fixtures.without_package import WITHOUT_PACKAGE

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "lavida-7b.yaml"
STEPS = 4

LOAD_AND_RUN = WITHOUT_PACKAGE + textwrap.dedent("""
    import json
    import numpy as np
    import torch
    from transformers import AutoModel, AutoProcessor

    try:
        import lavida  # noqa: F401
        raise SystemExit("the package is importable")
    except ModuleNotFoundError:
        pass
    export, clip_file, out_file = sys.argv[1:4]
    model = AutoModel.from_pretrained(export, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(export, trust_remote_code=True)
    clip = np.load(clip_file)
    batch = processor([clip], ["red square", "blue circle"])
    with torch.no_grad():
        out = model(**batch)
    dtypes = sorted({f"{name.split('.')[0]}:{p.dtype}" for name, p in model.named_parameters()})
    json.dump({"module": type(model).__module__, "frame_logits": out.frame_logits.float().tolist(),
               "mask_sum": float(out.mask_logits.float().sigmoid().sum()), "dtypes": dtypes}, open(out_file, "w"))
""")


def _recipe_copy(tmp: Path, components: dict[str, Path], mix: Path) -> Path:
    """``configs/lavida-7b.yaml`` with the component paths and the mix swapped in, few steps, no DeepSpeed on CPU."""
    config = yaml.safe_load(RECIPE.read_text())
    config["model"].update({key: str(path) for key, path in components.items()})
    config["data"]["train"]["source"] = str(mix)
    training = config["training"]
    training.pop("deepspeed")
    training.update(max_steps=STEPS, logging_steps=1, output_dir=str(tmp / "run"), save_steps=STEPS,
                    dataloader_num_workers=0, use_cpu=True)
    config["export"] = str(tmp / "export")
    path = tmp / "lavida-7b-rehearsal.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.slow
def test_the_paper_recipe_trains_exports_and_serves_without_the_package(tmp_path, monkeypatch):
    started = time.perf_counter()
    components = write_component_checkpoints(tmp_path / "hub", size="tiny")
    mix = build_eight_source_mix(tmp_path / "sources")
    config = _recipe_copy(tmp_path, components, mix)

    # every trainable group must move: record the trainable parameters when training starts
    from lavida import training as training_module

    snapshots: dict[str, torch.Tensor] = {}
    trained: dict[str, torch.Tensor] = {}  # at the end of training, before the export merges LoRA in place
    with_gradient: set[str] = set()  # trainable tensors that got a nonzero gradient at some step
    real_train = training_module.train

    def recording_train(*args, **kwargs):
        from transformers import TrainerCallback

        def trainable(model) -> dict[str, torch.Tensor]:
            return {name: parameter.detach().float().clone() for name, parameter in model.named_parameters()
                    if parameter.requires_grad}

        class Snapshot(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **rest):
                snapshots.update(trainable(model))

            def on_pre_optimizer_step(self, args, state, control, model=None, **rest):
                with_gradient.update(name for name, parameter in model.named_parameters()
                                     if parameter.grad is not None and bool(parameter.grad.abs().sum() > 0))

            def on_train_end(self, args, state, control, model=None, **rest):
                trained.update(trainable(model))

        kwargs["callbacks"] = [Snapshot()]
        trainer = real_train(*args, **kwargs)
        recording_train.trainer = trainer
        return trainer

    monkeypatch.setattr(training_module, "train", recording_train)
    assert lavida_main(["train", "--config", str(config)]) == 0
    trainer = recording_train.trainer
    train_seconds = time.perf_counter() - started

    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == STEPS
    for entry in logs:
        for term in LOSS_TERMS:
            assert term in entry and np.isfinite(entry[term]), (term, entry)
    print("\nloss per term over the rehearsal's steps:")
    for entry in logs:
        print(f"  step {entry['step']}: loss {entry['loss']:.4f} " +
              " ".join(f"{term} {entry[term]:.4f}" for term in LOSS_TERMS))

    groups = {"lora": "lora_", "embed_tokens": "embed_tokens", "lm_head": "lm_head",
              "sam_prompt_encoder": "sam.prompt_encoder", "sam_mask_decoder": "sam.mask_decoder",
              "semantic_projector": "semantic_projector"}
    assert set(trained) == set(snapshots)
    moved, unchanged = {}, []
    for group, marker in groups.items():
        names = [name for name in with_gradient if marker in name]
        assert names, f"no trainable parameter of group {group} got a gradient"
        changed = [not torch.equal(snapshots[name], trained[name]) for name in names]
        moved[group] = sum(changed) / len(names)
        unchanged += [name for name, flag in zip(names, changed) if not flag]
    print("fraction of each group's tensors with a gradient that changed:", moved)
    # (tensors that never get a gradient: SAM2's point and mask-prompt embeddings, which the anomaly prompt does not
    # use, the candidate masks not chosen as best, the last Q-Former block's token update)
    assert not unchanged, unchanged

    # the export loads in a process without the package, and runs
    export = tmp_path / "export"
    assert (export / "config.json").is_file() and any(export.glob("*.safetensors"))
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 255, (8, 64, 80, 3), dtype=np.uint8)
    np.save(tmp_path / "clip.npy", clip)
    script = tmp_path / "load_without_package.py"
    script.write_text(LOAD_AND_RUN)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home"), "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, str(script), str(export), str(tmp_path / "clip.npy"),
                             str(tmp_path / "remote.json")], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    remote = json.loads((tmp_path / "remote.json").read_text())
    assert remote["module"].startswith("transformers_modules."), remote["module"]
    assert np.isfinite(remote["frame_logits"]).all() and np.isfinite(remote["mask_sum"])

    # the same export through the package gives the same scores
    from lavida.model_factory import load_model_and_processor

    model, processor = load_model_and_processor(str(export))
    with torch.no_grad():
        local = model(**processor([clip], ["red square", "blue circle"]))
    np.testing.assert_allclose(local.frame_logits.float().numpy(), np.asarray(remote["frame_logits"]),
                               rtol=1e-5, atol=1e-5)
    local_dtypes = sorted({f"{name.split('.')[0]}:{p.dtype}" for name, p in model.named_parameters()})
    assert remote["dtypes"] == local_dtypes
    print("dtypes per module of the export, loaded without the package:", remote["dtypes"])

    # lavida evaluate on a benchmark fixture and lavida detect on a video, with the exported model
    from tests.benchmarks.layouts import build_ucsd

    layout = build_ucsd(tmp_path / "bench", "ped2")
    assert lavida_main(["evaluate", "--benchmark", "ped2", "--data-root", str(layout.root), "--model", str(export),
                        "--out", str(tmp_path / "eval"), "--no-plots"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_videos"] >= 1 and metrics["frame"] is not None

    from lavida.processing.video_io import write_video

    write_video(tmp_path / "street.mp4", rng.integers(0, 255, (12, 64, 80, 3), dtype=np.uint8), fps=10.0)
    assert lavida_main(["detect", str(tmp_path / "street.mp4"), "--anomalies", "red square", "--model", str(export),
                        "--out", str(tmp_path / "detect")]) == 0
    result_json = json.loads((tmp_path / "detect" / "street" / "result.json").read_text())
    assert len(result_json["scores"]) == 12
    print(f"rehearsal wall time: {time.perf_counter() - started:.1f} s (training part {train_seconds:.1f} s)")
