"""Report of a method comparison, built from the metrics file alone (no models needed).

`s3ft compare` writes a `compare.json` with, per seed, the training-set mix of every method,
in-domain and cross-task accuracy, general-benchmark scores and (optionally) paired comparisons
and the base model's log-probabilities of the three kinds of training target. This package turns
that file into the paper's tables and figures:

- training-set mix (paper Table 3), in-domain accuracy (Table 2), cross-task accuracy,
  general benchmarks with each method's change from the base model (Table 4) and the average
  change (the paper's headline: SFT forgets more than S3FT), paired comparisons;
- plots in `plots/`: `in_domain_vs_drop.png` (accuracy against forgetting), `general_changes.png`,
  `mix.png`, `logprob.png` (Figure 2 analogue: gold vs paraphrase vs own answers under the base
  model).

`write_report(compare, out_dir)` writes `report.md`, a self-contained `report.html` (plots
embedded as base64 data URIs, inline CSS, no external references) and the PNGs, and returns
their paths. Sections whose data are absent are replaced by one line saying so. Run by hand:
`python -m s3ft.report compare.json OUT_DIR`.

Statistics: values are means over the seeds present; "sd" is the sample standard deviation over
seeds (n-1), shown only with more than one seed. A change from base is computed per seed (method
minus base, same seed) and then averaged. The average change over general benchmarks uses only
the benchmarks present for every method (and base) in every seed, so methods are compared on the
same benchmarks.

Modules: `summary` (the numbers), `context` (the tables as formatted cells), `fmt` (how numbers
are written), `plots` (matplotlib), `render` (Jinja2); the documents' layout and prose are the
templates in `templates/` (`body.j2`, shared by `report.md.j2` and `report.html.j2`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from . import context, frontiers, plots
from .fmt import compute_time as _compute_time  # noqa: F401  (s3ft.report._compute_time, for the tests)
from .fmt import method_name
from .plots import PLOT_NAMES
from .render import render
from .summary import summarize

__all__ = ["PLOT_NAMES", "main", "method_name", "summarize", "write_report"]


def write_report(compare: dict, out_dir: Path) -> dict[str, Path]:
    """Write report.md, report.html and plots/*.png into `out_dir` from a compare.json dict.

    Returns {"markdown": ..., "html": ..., and one entry per plot written, keyed by its name
    (in_domain_vs_drop, general_changes, mix, logprob)}. Plots whose data are absent are skipped,
    and so are all plots when matplotlib is not installed (the report says so)."""
    out_dir = Path(out_dir)
    summary = summarize(compare)
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name in PLOT_NAMES:
        (plots_dir / f"{name}.png").unlink(missing_ok=True)  # never leave a stale plot from an earlier report
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        drawn: dict[str, Path] = {}
        skipped = {name: "matplotlib is not installed (pip install 's3ft[eval]')" for name in PLOT_NAMES}
    else:
        drawn, skipped = plots.draw(summary, plots_dir), {}
    for stale in plots_dir.glob("frontier_*.png"):
        stale.unlink()
    if compare.get("frontier") and not skipped:
        drawn.update(frontiers.draw(compare, plots_dir))

    ctx = context.build(compare, summary, drawn, skipped, out_dir)
    ctx["frontier"] = frontiers.context(compare)
    ctx["frontier_tables"] = frontiers.tables(compare)
    md_path = out_dir / "report.md"
    html_path = out_dir / "report.html"
    md_path.write_text(render("report.md.j2", ctx), encoding="utf-8")
    html_path.write_text(render("report.html.j2", ctx), encoding="utf-8")
    return {"markdown": md_path, "html": html_path, **drawn}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m s3ft.report",
        description="Write report.md, report.html and plots/*.png from a compare.json (no models needed).",
    )
    parser.add_argument("compare", type=Path, help="compare.json written by `s3ft compare`")
    parser.add_argument("out_dir", type=Path, help="folder for report.md, report.html and plots/")
    args = parser.parse_args(argv)
    try:
        compare = json.loads(args.compare.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"error: {args.compare}: no such file", file=sys.stderr)
        return 2
    except json.JSONDecodeError as e:
        print(f"error: {args.compare}: not valid JSON ({e})", file=sys.stderr)
        return 2
    if not isinstance(compare, dict):
        print(f"error: {args.compare}: expected a JSON object", file=sys.stderr)
        return 2
    paths = write_report(compare, args.out_dir)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
