"""Every point of a compare run's sweep as one Markdown table, for a results README.

    python bench/frontier_table.py RUN_OR_RESULTS_DIR [--measure kl_general]

Reads compare.json's `frontier` (the run's output_dir, or a folder bench/record_run.py filled)
and prints one row per point: method, learning rate, LoRA or full, epoch, interpolation α (1: not
interpolated), test accuracy with its 95% interval, SQuAD exact match and F1 with theirs
(span-answer tasks), validation accuracy, and every forgetting measure taken (the first with its
interval); points on the method's Pareto front for --measure are marked *. The base model comes
first.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from s3ft.frontier import MEASURES, key
from s3ft.report.fmt import method_name


def cell(value, interval=None, digits: int = 1) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    text = f"{value:.{digits}f}" if digits else f"{value:.3g}"
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        lo, hi = interval
        text += f" [{lo:.{digits}f}, {hi:.{digits}f}]" if digits else f" [{lo:.3g}, {hi:.3g}]"
    return text


def rows(fr: dict, measure: str) -> tuple[list[str], list[list[str]]]:
    test = fr["points"]
    val = {key(p): p for p in fr.get("validation_points", [])}
    fronts = {key(p) for f in ((fr["measures"].get(measure) or {}).get("fronts") or {}).values() for p in f}
    taken = [m for m in MEASURES if any(p.get(m) is not None for p in test)]
    spans = any(p.get("f1") is not None for p in test)
    header = ["method", "learning rate", "tuning", "epoch", "α (interpolation)", "test %", *(["EM %", "F1"] if spans else []),
              "validation %", *taken]
    order = sorted(test, key=lambda p: (p["method"] != "base", p["method"], p.get("learning_rate") or 0,
                                        not p.get("peft"), p.get("epoch") or 0, -(p.get("alpha") or 0)))
    out = []
    for p in order:
        base = p["method"] == "base"
        v = val.get(key(p)) or {}
        out.append([
            method_name(p["method"]) + (" *" if key(p) in fronts else ""),
            "-" if base else f"{p['learning_rate']:g}", "-" if base else ("LoRA" if p.get("peft") else "full"),
            "-" if base else f"{p['epoch']:g}", "-" if base else f"{p.get('alpha', 1.0):g}",
            cell(p.get("in_domain"), p.get("ci95")),
            *([cell(p.get("em"), p.get("em_ci95")), cell(p.get("f1"), p.get("f1_ci95"))] if spans else []),
            cell(v.get("in_domain")),
            *[cell(p.get(m), (p.get("forgetting_ci95") or {}).get(m) if i == 0 else None, digits=0)
              for i, m in enumerate(taken)]])
    return header, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--measure", default=None, help="forgetting measure whose fronts are marked (default: the budget's)")
    args = ap.parse_args()
    fr = json.loads((args.run / "compare.json").read_text()).get("frontier")
    if not fr:
        raise SystemExit(f"{args.run}/compare.json has no frontier (no sweep in the recipe?)")
    measure = args.measure or (fr.get("budget") or {}).get("measure") or next(iter(fr["measures"]))
    header, table = rows(fr, measure)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in table:
        print("| " + " | ".join(r) + " |")
    print(f"\n\\* on the method's Pareto front (test accuracy against {measure}).")


if __name__ == "__main__":
    main()
