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

