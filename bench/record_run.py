"""Copy a finished `s3ft compare` run's readable results into bench/results/, so that a reader
has the numbers and the text behind them without the models.

    python bench/record_run.py RUN_DIR bench/results/NAME

Copies compare.json, the report (report.md, report.html, plots/), sweep/points.jsonl as
points.jsonl and audit/ (every method's training targets and the per-seed comparison's judged
answers); gathers the judged answer files of every sweep point (sweep/**/eval/*.jsonl: each
point's test and validation answers; eval/*.jsonl: the base model's; and any other file a point
names, such as seed-<k>/eval/<method>.jsonl for the point that is the per-seed comparison's own
model) into sweep_answers.jsonl.gz and every IFEval answer file
(ifeval/, seed-*/ifeval/) into ifeval_answers.jsonl.gz, one row per answer with the file it came
from. Files already in NAME are replaced; the README there is left alone.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from s3ft.runs import gzip_text, read_jsonl


def gather(root: Path, files: list[Path], out: Path) -> int:
    rows = 0
    with gzip_text(out) as f:
        for path in sorted(files):
            for line in path.read_text().splitlines():
                if line.strip():
                    f.write(json.dumps({"file": str(path.relative_to(root)), **json.loads(line)}) + "\n")
                    rows += 1
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="the compare run's output_dir")
    ap.add_argument("out", type=Path, help="the results folder, e.g. bench/results/NAME")
    args = ap.parse_args()
    run, out = args.run, args.out
    missing = [str(run / p) for p in ("compare.json", "report/report.md", "report/report.html", "report/plots", "audit")
               if not (run / p).exists()]
    if missing:
        raise SystemExit(f"not found: {', '.join(missing)} - is the compare run finished? Nothing copied.")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(run / "compare.json", out / "compare.json")
    for name in ("report.md", "report.html"):
        shutil.copy2(run / "report" / name, out / name)
    shutil.rmtree(out / "plots", ignore_errors=True)
    shutil.copytree(run / "report" / "plots", out / "plots")
    if (run / "sweep" / "points.jsonl").exists():
        shutil.copy2(run / "sweep" / "points.jsonl", out / "points.jsonl")
    shutil.rmtree(out / "audit", ignore_errors=True)
    shutil.copytree(run / "audit", out / "audit")
    named = {run / p["answers"] for p in read_jsonl(run / "sweep" / "points.jsonl") if p.get("answers")}
    sweep = gather(run, sorted(set(run.glob("eval/*.jsonl")) | set((run / "sweep").glob("**/eval/*.jsonl")) | named),
                   out / "sweep_answers.jsonl.gz")
    ifeval = gather(run, list(run.glob("ifeval/*.jsonl")) + list(run.glob("seed-*/ifeval/*.jsonl")),
                    out / "ifeval_answers.jsonl.gz")
    print(f"{out}: compare.json, report, plots, points, audit; {sweep} sweep answers, {ifeval} IFEval answers")


if __name__ == "__main__":
    main()
