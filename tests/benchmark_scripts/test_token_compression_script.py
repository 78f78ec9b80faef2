"""The token-compression benchmark runs at toy sizes and its table follows the compression ratios."""

from __future__ import annotations

import json

from benchmarks import token_compression


def test_rows_cover_every_setting_and_keep_the_requested_share(tmp_path, capsys):
    out = tmp_path / "tc.json"
    code = token_compression.main(["--lengths", "64", "128", "--layers", "1", "--hidden-size", "64",
                                   "--intermediate-size", "128", "--num-heads", "4", "--num-kv-heads", "2",
                                   "--text-tokens", "8", "--json", str(out)])
    assert code == 0 and "r=0.5 prefill speed-up" in capsys.readouterr().out
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert len(rows) == 2 * 2 * 4  # lengths x static pruning x ratios
    for row in rows:
        unpruned = next(r for r in rows if r["L"] == row["L"] and not r["static_pruning"] and r["ratio"] == 1.0)
        assert unpruned["visual_tokens"] == row["L"]  # no pruning, no merging: every token stays
        base = next(r for r in rows if r["L"] == row["L"] and r["static_pruning"] == row["static_pruning"]
                    and r["ratio"] == 1.0)
        # merging keeps ratio x the tokens that survive static pruning (to within one 2x2 merge unit)
        assert abs(row["visual_tokens"] - row["ratio"] * base["visual_tokens"]) <= 4
        assert row["sequence"] == row["visual_tokens"] + 8
    pruned = [r for r in rows if r["static_pruning"] and r["ratio"] == 1.0]
    assert all(r["visual_tokens"] < r["L"] for r in pruned)  # half the units are static by construction
