"""Copy each benchmarks/results/NAME.md into README.md between <!-- bench:NAME --> and <!-- /bench:NAME -->."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for md in sorted((ROOT / "benchmarks" / "results").glob("*.md")):
        name = md.stem
        block = f"<!-- bench:{name} -->\n{md.read_text().strip()}\n<!-- /bench:{name} -->"
        pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text)
        else:
            text = text.rstrip() + f"\n\n{block}\n"
        print(f"README.md <- benchmarks/results/{name}.md")
    readme.write_text(text)


if __name__ == "__main__":
    main()
