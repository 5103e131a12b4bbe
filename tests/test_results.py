"""The committed benchmark results: every row says where it came from. Fast; imports no torch."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
PROVENANCE = ("command", "commit", "date", "hardware", "versions")


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.stem)
def test_every_result_row_carries_its_command_commit_date_hardware_and_versions(path):
    rows = json.loads(path.read_text()).get("runs", [])
    assert rows, f"{path.name}: no rows"
    for row in rows:
        missing = [k for k in PROVENANCE if not row.get(k)]
        assert not missing, f"{path.name}: a row lacks {missing}: {row}"
        assert row["command"].startswith(("./run bench", "GPU_PARTS", "benchmarks/gpu.sh", "python benchmarks/"))
        assert len(row["commit"].split("+")[0]) == 40 or row["commit"] == "unknown"



def test_each_benchmark_that_selects_among_candidates_has_a_committed_plan():
    plans = ROOT / "benchmarks" / "plans"
    for name in ("crc_detection", "isbi2012", "medmnist_2d"):
        text = (plans / f"{name}.md").read_text()
        assert "Candidates" in text and "rule" in text.lower(), name
