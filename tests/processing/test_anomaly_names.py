"""Parsing the user's anomaly names."""

from __future__ import annotations

import pytest

from lavida.errors import UserInputError
from lavida.processing.anomaly_names import AnomalyNameLimits, parse_anomaly_names


def test_text_is_split_stripped_and_deduplicated_in_order():
    assert parse_anomaly_names(" Fighting,fire ,, car   crash, fighting, FIRE,") == ["Fighting", "fire", "car crash"]


def test_list_items_are_kept_whole():
    assert parse_anomaly_names(["smoke, then fire", "  person\tfalling ", "", "Smoke, then fire"]) == [
        "smoke, then fire", "person falling"]
    assert parse_anomaly_names(("fighting",)) == ["fighting"]


@pytest.mark.parametrize("names", ["", "   ", " , ,", [], ["", "  "], None])
def test_empty_or_blank_lists_are_rejected(names):
    with pytest.raises(UserInputError, match="(empty or blank|No anomaly names)"):
        parse_anomaly_names(names)


def test_limits():
    assert len(parse_anomaly_names([f"anomaly {i}" for i in range(256)])) == 256
    with pytest.raises(UserInputError, match="Got 257 anomaly names; at most 256"):
        parse_anomaly_names(",".join(f"anomaly {i}" for i in range(257)))
    # Duplicates do not count towards the limit.
    assert len(parse_anomaly_names(["fire"] * 300)) == 1
    assert parse_anomaly_names("x" * 200) == ["x" * 200]
    with pytest.raises(UserInputError, match="is 201 characters long; at most 200"):
        parse_anomaly_names("fire, " + "x" * 201)
    with pytest.raises(UserInputError, match="at most 2 are supported"):
        parse_anomaly_names("a, b, c", AnomalyNameLimits(max_names=2))


def test_non_text_names_are_rejected():
    with pytest.raises(UserInputError, match=r"Anomaly name 3 is not text \(int\)"):
        parse_anomaly_names(["fire", 3])
