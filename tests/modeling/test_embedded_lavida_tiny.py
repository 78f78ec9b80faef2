"""The embedded lavida-tiny loads, runs and reads the anomaly names, in its masks and in its frame scores.

Earlier checkpoints ignored the names, first entirely (the same masks whatever was asked for), then in the frame score
(frame swap drop 0.00); these tests catch a retrained checkpoint that falls back to either. Measured on the shipped one
(``python -m benchmarks.name_grounding``): mask swap drop 0.50 (24 clips), frame swap drop 0.66, pair effect 0.51, with
its masks from ``mask_source="gated"`` (with the decoder's masks: 0.13 and 0.25). The shipped sample's frames check
that the mask singles out the named anomaly and stays empty without it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks import attribute_reading, mask_sources, name_grounding
from lavida.model_factory import load_model_and_processor


@pytest.fixture(scope="module")
def embedded():
    model, processor = load_model_and_processor(None, device="cpu")
    return model.eval(), processor


@pytest.fixture(scope="module")
def anomalous_clips():
    return name_grounding.anomalous_clips(24)


def test_embedded_model_gives_one_score_and_mask_per_frame(embedded, anomalous_clips):
    model, processor = embedded
    row = anomalous_clips[0]
    with torch.no_grad():
        out = model(**processor([row["frames"]], [row["names"]]))
    assert out.frame_logits.shape == (1, 8) and torch.isfinite(out.frame_logits).all()
    assert out.mask_logits.shape[:2] == (1, 8) and torch.isfinite(out.mask_logits).all()


def test_masks_and_frame_scores_drop_when_the_target_name_is_swapped_for_an_absent_one(embedded, anomalous_clips):
    model, processor = embedded
    assert all(set(name_grounding.swap_absent(row)).isdisjoint(
        n for n, label in zip(row["names"], row["name_labels"]) if label) for row in anomalous_clips)
    mask_drops, frame_drops = name_grounding.swap_drops(model, processor, anomalous_clips)
    assert len(mask_drops) == len(frame_drops) == 24 and np.mean(mask_drops) > 0.05
    assert np.mean(frame_drops) > 0.2 and np.mean(np.asarray(frame_drops) > 0) > 0.75


def test_swapping_one_word_of_a_held_out_name_lowers_the_score_on_its_object(embedded):
    """ "purple hexagon" -> "purple circle" (and -> "red hexagon") on a purple hexagon, a composition never trained on:
    both swaps must lower the frame score, so a checkpoint that reads the names one attribute at a time (or not at all)
    fails. Measured on the shipped one over these 8 clips: shape-word swap drop 0.93, colour-word swap drop 0.94 (the
    previous, pooled-name head: 0.35 and 0.69)."""
    model, processor = embedded
    shape_drops, colour_drops = name_grounding.one_word_swaps(model, processor, 8)
    assert len(shape_drops) == len(colour_drops) == 8
    assert np.mean(shape_drops) > 0.15 and np.mean(colour_drops) > 0.15


def test_the_same_frames_give_each_named_object_its_own_mask(embedded):
    """One clip, prompted once with each of two visible objects' names: each mask favours its own object."""
    model, processor = embedded
    effects = name_grounding.pair_effects(model, processor, 12)
    assert len(effects) == 24 and np.mean(effects) > 0.1


def test_name_grounding_script_prints_and_writes_the_measured_figures(embedded, tmp_path, capsys):
    model, processor = embedded
    out = tmp_path / "grounding.json"
    assert name_grounding.main(["--clips", "3", "--pairs", "2", "--swaps", "2", "--device", "cpu",
                                "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    expected = name_grounding.measure(model, processor, clips=3, pairs=2, swaps=2)
    for key, value in expected.items():
        assert report[key] == pytest.approx(value, abs=1e-6), key
    printed = capsys.readouterr().out
    assert f"{report['frame_swap_drop']:+.4f}" in printed and f"{report['pair_effect']:+.4f}" in printed


def test_attribute_reading_script_prints_and_writes_what_the_model_reads(embedded, tmp_path, capsys):
    """One-object held-out clips through H.264 prompted with the 16 single words: the embedded model reads colour and
    shape (chance is 1/8; measured 1.000 and 1.000 on 96 clips, the previous pooled-name head 0.95 and 0.28) and the
    report holds what ``read_attributes`` returns."""
    model, processor = embedded
    out = tmp_path / "attributes.json"
    assert attribute_reading.main(["--clips", "6", "--device", "cpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    expected = attribute_reading.read_attributes(model, processor, clips=6)
    assert {key: report[key] for key in expected} == expected
    assert np.asarray(report["shape_confusion"]).sum() == 6 and report["colour_accuracy"] >= 4 / 6
    assert report["shape_accuracy"] >= 4 / 6
    printed = capsys.readouterr().out
    assert f"colour read right {report['colour_accuracy']:.3f}" in printed and "hexagon" in printed


def test_mask_sources_script_compares_the_sources_on_validation_clips(embedded, tmp_path, capsys):
    """Each mask source on pseudo-anomaly validation clips (training compositions, each clip's own names): the
    decoder's own mask marks every object in view, so the name-gated maps meet the pixel criterion far better
    (measured on 96 clips: decoder 0.26, gated 0.96, gated_or_names 0.98); the model's configured source is left as
    it was, and the script writes what ``compare_mask_sources`` returns."""
    model, processor = embedded
    configured = model.config.mask_source
    figures = mask_sources.compare_mask_sources(model, processor, clips=4)
    assert model.config.mask_source == configured
    assert set(figures["sources"]) == {"decoder", "name_grounding", "gated", "gated_or_names"}
    assert 0 < figures["anomalous_frames"] < figures["frames"] == 32
    criterion = {source: values["criterion_auc"] for source, values in figures["sources"].items()}
    assert criterion["gated_or_names"] > criterion["decoder"] + 0.2 and criterion["gated"] > criterion["decoder"]
    out = tmp_path / "masks.json"
    assert mask_sources.main(["--clips", "4", "--device", "cpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    for source, values in figures["sources"].items():
        assert report["sources"][source] == pytest.approx(values, abs=1e-6), source
    assert report["frame_auc"] == pytest.approx(figures["frame_auc"], abs=1e-6)
    assert f"{criterion['gated_or_names']:.4f}" in capsys.readouterr().out


def test_shipped_and_newly_built_configs_hold_no_machine_paths():
    from lavida.model_factory import ModelSpec, build_tiny_model_and_processor, default_model_path

    def paths(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "_name_or_path" and value:
                    yield value
                yield from paths(value)

    shipped = json.loads((default_model_path() / "config.json").read_text())
    model, _ = build_tiny_model_and_processor(ModelSpec(text_encoder="bundled-minilm"))
    for found in (list(paths(shipped)), list(paths(model.config.to_dict()))):
        assert found == ["bundled-minilm"]


def test_the_shipped_sample_gives_its_strongest_event_where_its_anomaly_is(embedded):
    """What ``make demo`` shows: with the sample's prompt (the 16 held-out names), the strongest event lies in the
    frames where the labelled anomaly (a held-out composition) is in view and covers most of them, few normal frames
    pass the threshold, and the scores rank the anomalous frames first. Measured on the shipped checkpoint: AUC 0.999,
    one event, 39-69 (all inside 37-73, peak 1.00), no normal frame above 0.02 (the previous, pooled-name head: AUC
    0.91, five single-frame false alarms just over 0.5)."""
    from pathlib import Path

    from sklearn.metrics import roc_auc_score

    from lavida.processing.pipeline_lavida import VideoAnomalyDetectionPipeline

    model, processor = embedded
    assets = Path(__file__).resolve().parents[2] / "modeling_lavida" / "assets"
    labels = np.asarray(json.loads((assets / "sample.labels.json").read_text())["frame_labels"])
    names = (assets / "sample.anomalies.txt").read_text().strip()
    detector = VideoAnomalyDetectionPipeline(model=model, processor=processor, task="video-anomaly-detection")
    result = detector(str(assets / "sample.mp4"), anomalies=names)
    scores = np.asarray(result.scores)
    assert len(scores) == len(labels)
    assert roc_auc_score(labels, scores) > 0.85
    strongest = max(result.events, key=lambda event: event.peak_score)
    covered = labels[strongest.start_frame: strongest.end_frame + 1]
    assert covered.mean() > 0.9 and covered.sum() > 0.6 * labels.sum(), strongest
    assert np.mean(scores[labels == 0] >= result.threshold) < 0.15


def _sample_clip(first: int, length: int = 8) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Frames ``first .. first + length - 1`` of the shipped sample (``uint8 [T, H, W, 3]``), their labelled anomaly
    masks (``bool [T, H, W]``: the purple hexagon) and the sample's prompt (the 16 held-out names)."""
    from pathlib import Path

    from lavida.dataset_builders.synthetic_vad import load_vad_masks
    from lavida.processing.video_io import iter_frames

    assets = Path(__file__).resolve().parents[2] / "modeling_lavida" / "assets"
    frames = np.stack([image for index, image in iter_frames(str(assets / "sample.mp4"))
                       if first <= index < first + length])
    masks = load_vad_masks(assets / "sample.masks.npz")[first: first + length]
    names = [name.strip() for name in (assets / "sample.anomalies.txt").read_text().split(",")]
    return frames, masks, names


def _yellow(frames: np.ndarray) -> np.ndarray:
    """``bool [T, H, W]``: the sample's normal object, a yellow circle (235, 215, 40) on a low-saturation background."""
    red, green, blue = (frames[..., channel].astype(int) for channel in range(3))
    return (red > 180) & (green > 160) & (blue < 110)


def _mask_probabilities(model, processor, frames: np.ndarray, names: list[str]) -> np.ndarray:
    with torch.no_grad():
        out = model(**processor([frames], [names]))
    return processor.post_process_masks(out.mask_logits, tuple(frames.shape[1:3]))[0].numpy()  # (T, H, W)


def test_the_mask_singles_out_the_named_anomaly_not_a_normal_object_sharing_its_words(embedded):
    """Sample frame 55: the held-out "purple hexagon" crosses while a normal "yellow circle" (a listed "yellow square"
    and "purple circle" each share a word with it) is in view. The mask must mark the hexagon, not the circle.
    Measured on the shipped config (``mask_source="gated"``): hexagon mean 0.66 (max 0.87), circle at most 0.001 (the
    previous, pooled-name head: 0.62 / 0.76 and 0.34 / 0.41); with the decoder's mask (``mask_source="decoder"``) the
    circle peaked higher (0.66) than the hexagon (0.52), means 0.32 and 0.34."""
    model, processor = embedded
    frames, anomaly, names = _sample_clip(51)
    probabilities = _mask_probabilities(model, processor, frames, names)[4]  # frame 55
    hexagon, circle = anomaly[4], _yellow(frames)[4] & ~anomaly[4]
    assert hexagon.sum() > 200 and circle.sum() > 200
    assert probabilities[hexagon].mean() > probabilities[circle].mean() + 0.15
    assert probabilities[circle].max() < 0.5 <= probabilities[hexagon].max()


def test_frames_without_the_anomaly_get_an_empty_mask(embedded):
    """Sample frames 74-81: only the yellow circle is in view and every frame scores below 0.5. The decoder's mask
    marked the circle in each of them (max 0.58-0.68); the shipped one stays below the detection threshold (max
    0.00-0.02, each frame's peak at most its frame score; the previous, pooled-name head: 0.15-0.45)."""
    model, processor = embedded
    frames, anomaly, names = _sample_clip(74)
    assert not anomaly.any() and _yellow(frames).reshape(len(frames), -1).sum(axis=1).min() > 200
    probabilities = _mask_probabilities(model, processor, frames, names)
    assert probabilities.reshape(len(frames), -1).max(axis=1).max() < 0.5
