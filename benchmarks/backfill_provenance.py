"""Give the rows of committed results that predate per-row provenance the provenance git history holds.

Until results rows carried their own command, commit, date, hardware and versions, only the file did, and a
later partial run could copy earlier rows forward under its own header. For each row of
benchmarks/results/*.json without them, this finds the first commit whose version of the file holds a row
with the same figures (the `recorded` mark aside) and takes that version's command, hardware and versions,
that commit and its date. The row is marked `"provenance": "backfilled"`: these say where a figure was first
committed, which is where it was computed unless that version had itself copied it forward. A row git
history cannot place is left as it is, and the script exits with status 1.

    python benchmarks/backfill_provenance.py
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("command", "commit", "date", "hardware", "versions")
MARKS = ("recorded", "provenance", *KEYS)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def figures(row: dict) -> str:
    """The row without marks and provenance, as comparable text."""
    return json.dumps({k: v for k, v in row.items() if k not in MARKS}, sort_keys=True)


def versions_of(path: str) -> list[tuple[str, str, dict]]:
    """(commit, commit date, the file's JSON) for every committed version of `path`, oldest first."""
    found = []
    for line in git("log", "--reverse", "--format=%H %cI", "--", path).splitlines():
        commit, date = line.split()
        try:
            found.append((commit, date, json.loads(git("show", f"{commit}:{path}"))))
        except (subprocess.CalledProcessError, json.JSONDecodeError):
            continue  # deleted or unreadable in that commit
    return found


def source_of(doc: dict) -> dict:
    """The file-level provenance of one committed version."""
    hardware = doc.get("hardware") or doc.get("device") or "not recorded"
    return {"command": doc.get("command", "not recorded"), "hardware": hardware,
            "versions": doc.get("versions", "not recorded")}


def backfill(path: Path) -> int:
    """Fill the rows of one results file; returns how many rows git history could not place."""
    relative = str(path.relative_to(ROOT))
    doc = json.loads(path.read_text())
    history = versions_of(relative)
    unplaced = 0
    for row in doc.get("runs", []):
        if all(k in row for k in KEYS):
            continue
        key = figures(row)
        first = next(((commit, date, version) for commit, date, version in history
                      if any(figures(r) == key for r in version.get("runs", []))), None)
        if first is None:
            unplaced += 1
            continue
        commit, date, version = first
        row.update({**source_of(version), "commit": commit, "date": date, "provenance": "backfilled"})
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return unplaced


def main() -> None:
    unplaced = {p.name: n for p in sorted((ROOT / "benchmarks" / "results").glob("*.json")) if (n := backfill(p))}
    for name, n in unplaced.items():
        print(f"{name}: {n} rows not found in git history", file=sys.stderr)
    sys.exit(1 if unplaced else 0)


if __name__ == "__main__":
    main()
