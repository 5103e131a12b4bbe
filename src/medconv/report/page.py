"""One self-contained HTML page for one or several runs (pictures embedded as data URIs, no script, no network):
what was trained on what, how it did beside the published rows, its curves and pictures; several runs side by
side, a table comparing them first."""
from __future__ import annotations

import base64
import datetime
import html
import io
import json
from pathlib import Path

from PIL import Image

from ..fileio import write_text
from ..published import published_rows
from ..version import __version__
from .curves import curves_png
from .run_view import RunView, headline, read_run

MAX_PICTURE = 1_500_000  # bytes of one embedded PNG; larger pictures are scaled down to fit
SCORE_ROWS = 12  # rows of a per-image score table shown (worst first)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.runs { display: grid; gap: 2em; }
section { min-width: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.pictures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure { margin: 0 0 1em; flex: 1 1 360px; max-width: 560px; }
figure.wide { flex-basis: 100%; max-width: 100%; }
figure img { width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: 0.85em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
"""


def esc(value) -> str:
    return html.escape(str(value))


def number(value) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else esc(value)


def table(header: list[str] | None, rows: list[list]) -> str:
    """An HTML table of `rows` (numbers to 4 significant digits) under `header` (none: no header row)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header or [])
    body = "".join("<tr>" + "".join(f"<td>{number(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def png_uri(data: bytes) -> str:
    """A data URI of PNG bytes, scaled down (in halves) while over MAX_PICTURE."""
    while len(data) > MAX_PICTURE:
        image = Image.open(io.BytesIO(data))
        image = image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure(data: bytes, caption: str) -> str:
    """A captioned picture; a large or wide one (a grid of images) takes the whole width."""
    width, height = Image.open(io.BytesIO(data)).size
    wide = " class='wide'" if width > 1.6 * height or width >= 900 else ""
    return (f'<figure{wide}><img src="{png_uri(data)}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def main_split(view: RunView) -> str | None:
    """The metrics a comparison shows: test (detections first) when scored, else validation."""
    for name in ("detect test", "test", "detect val", "val"):
        if name in view.metrics:
            return name
    return next(iter(view.metrics), None)


def results(view: RunView) -> str:
    names, splits = headline(view), list(view.metrics)
    if not splits:
        return "<p class='note'>no metrics yet (the run has not been evaluated)</p>"
    rows = [[n] + [view.metrics[s].get(n) for s in splits] for n in names]
    every = sorted(set().union(*view.metrics.values()))
    full = table(["metric"] + splits, [[n] + [view.metrics[s].get(n) for s in splits] for n in every])
    return (table(["metric"] + splits, rows)
            + f"<details><summary>every number ({len(every)})</summary>{full}</details>")


def published(view: RunView) -> str:
    protocol, rows = published_rows(view.dataset, view.kind)
    if not rows:
        return ""
    names = list(dict.fromkeys(k for _, numbers in rows for k in numbers))
    split = main_split(view)
    ours = [[f"this run ({split})"] + [view.metrics.get(split, {}).get(n) for n in names]] if split else []
    return ("<h3>Beside the published results</h3>" + table(["method"] + names, ours + [
        [method] + [numbers.get(n) for n in names] for method, numbers in rows])
        + f"<p class='note'>Published rows: {esc(protocol)}. This run: its own {esc(split)} split, so the "
          "figures are context, not a ranking.</p>")


def scores(view: RunView) -> str:
    parts = []
    for split, (columns, rows) in view.scores.items():
        parts.append(f"<h4>{esc(split)}: per image, worst first ({len(rows)})</h4>"
                     + table(columns, [[r.get(c, "") for c in columns] for r in rows[:SCORE_ROWS]]))
    return "<h3>Per-image scores</h3>" + "".join(parts) if parts else ""


def about(view: RunView) -> str:
    c, s = view.checkpoint, view.summary
    facts = [("kind", f"{view.kind}, {view.dims}D"), ("dataset", view.dataset), ("network", view.arch),
             ("classes", ", ".join(map(str, c.get("classes", [])))),
             ("input", " x ".join(map(str, [c.get("in_channels", "?")] + list(c.get("input_size", []))))),
             ("epochs", s.get("epochs", c.get("epoch"))), ("chosen epoch", s.get("best_epoch", c.get("epoch"))),
             ("training time", f"{s['train_seconds']:.0f} s" if "train_seconds" in s else None),
             ("software", ", ".join(f"{k} {v}" for k, v in c.get("versions", {}).items()))]
    return table(None, [[k, v] for k, v in facts if v not in (None, "")])


def run_section(view: RunView) -> str:
    parts = [f"<section><h2>{esc(view.name)}</h2>", about(view), "<h3>Results</h3>", results(view), published(view)]
    if view.history and not (view.path / "plots" / "training_curves.png").is_file():  # a run from before the engine
        parts += ["<h3>Training</h3>", figure(curves_png(view.history, view.checkpoint.get("epoch")),  # drew them
                                              "per-epoch history (history.csv)")]
    if view.pictures:
        parts += ["<h3>Pictures</h3><div class='pictures'>"] + [figure(png.read_bytes(), caption)
                                                                  for caption, png in view.pictures] + ["</div>"]
    parts.append(scores(view))
    if view.data_lines:
        parts += ["<h3>Data</h3><pre>", esc("\n".join(view.data_lines)), "</pre>"]
    parts += [f"<details><summary>configuration (config.yaml)</summary><pre>{esc(view.config_text)}</pre></details>",
              "</section>"]
    return "".join(parts)


def comparison(views: list[RunView]) -> str:
    names = list(dict.fromkeys(n for v in views for n in headline(v)))
    splits = [main_split(v) for v in views]
    header = ["metric"] + [f"{v.name} ({s})" for v, s in zip(views, splits)]
    rows = [[n] + [v.metrics.get(s, {}).get(n) if s else None for v, s in zip(views, splits)] for n in names]
    return "<h2>Side by side</h2>" + table(header, rows)


def ensemble_section(folder: Path) -> str:
    """An ensemble's own figures (the metrics_{split}.json and plots evaluate_ensemble wrote into `folder`)."""
    splits = [s for s in ("val", "test") if (folder / f"metrics_{s}.json").is_file()]
    metrics = {s: json.loads((folder / f"metrics_{s}.json").read_text()) for s in splits}
    names = ["n", "auc", "acc", "balanced_accuracy"]
    pictures = [figure(png.read_bytes(), png.stem.replace("_", " ")) for png in sorted((folder / "plots").glob("*.png"))]
    return ("<h2>Ensemble: the mean of the members' class probabilities</h2>"
            + table(["metric"] + splits, [[n] + [metrics[s].get(n) for s in splits] for n in names])
            + f"<div class='pictures'>{''.join(pictures)}</div>")


def render(views: list[RunView], ensemble: Path | None = None) -> str:
    """The HTML text of the report of `views`; with `ensemble`, the folder of their ensemble's figures, shown
    first."""
    title = "medconv report: " + ", ".join(v.name for v in views)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    runs = "".join(run_section(v) for v in views)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>"
            f"<p class='note'>written {when} by medconv {esc(__version__)} from "
            f"{esc(', '.join(str(v.path) for v in views))}</p>"
            + (ensemble_section(ensemble) if ensemble else "")
            + (comparison(views) if len(views) > 1 else "")
            + f"<div class='runs' style='grid-template-columns: repeat({len(views)}, minmax(0, 1fr))'>{runs}</div>"
            "</body></html>")


def write_report(runs: list[str | Path], out: str | Path | None = None, ensemble: str | Path | None = None) -> Path:
    """Write the report of `runs` to `out` (default: RUN/report.html for one run, report.html for several); with
    `ensemble`, the folder where evaluate_ensemble wrote the runs' ensemble figures, those first (default `out`:
    ENSEMBLE/report.html)."""
    views = [read_run(r) for r in runs]
    if not out:
        out = (Path(ensemble) if ensemble else views[0].path if len(views) == 1 else Path(".")) / "report.html"
    write_text(Path(out), render(views, Path(ensemble) if ensemble else None))
    return Path(out)
