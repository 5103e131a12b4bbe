"""Copy each benchmarks/results/NAME.md into docs/benchmarks.md between <!-- bench:NAME --> and
<!-- /bench:NAME -->; a table with no markers yet is added at the end. The text around the markers is
kept, so docs/benchmarks.md may say what each table is. README.md holds only the headline table.

    python benchmarks/update_docs.py
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "benchmarks.md"
HEADER = "# Benchmark tables\n"


def main() -> None:
    text = TARGET.read_text() if TARGET.exists() else HEADER
    for md in sorted((ROOT / "benchmarks" / "results").glob("*.md")):
        name = md.stem
        block = f"<!-- bench:{name} -->\n{md.read_text().strip()}\n<!-- /bench:{name} -->"
        pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text)
        else:
            text = text.rstrip() + f"\n\n{block}\n"
        print(f"{TARGET.relative_to(ROOT)} <- benchmarks/results/{name}.md")
    TARGET.parent.mkdir(exist_ok=True)
    TARGET.write_text(text)


if __name__ == "__main__":
    main()
