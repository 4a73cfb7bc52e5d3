"""The frontier comparison of a compare run read with SQuAD's exact match or F1 as the in-domain
score instead of the judge's accuracy.

    python bench/frontier_by_score.py RUN_OR_RESULTS_DIR [--score f1|em] [--measure kl_general]

The same procedure as compare.json's `frontier` (s3ft.frontier): each method's Pareto front on
the test split; at each forgetting level (the validation fronts' own values, at most five, and
the recipe's budget) each method's best point on validation within it, reported on test; the
reference method (S3FT) against each other method's chosen point on the same test questions -
the per-question score difference averaged over the sweep's seeds, with a 95% interval by the
two-level bootstrap (seeds, then questions). Only the score changes: per question, the best
exact match / token F1 over the gold answers (SQuAD v1.1 normalisation), from every point's
judged answer files (the run's own, or the sweep_answers.jsonl.gz that bench/record_run.py
writes). A judge that accepts a sentence stating the answer and a score that counts the span's
words can rank methods differently; this shows whether they do.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from s3ft import frontier
from s3ft.evaluation import diff_over_seeds, mean_over_seeds, scores_by_seed
from s3ft.judges.qa import exact_match_score, f1_score, gold_answers
from s3ft.report.fmt import method_name, signed, with_ci
from s3ft.runs import read_jsonl_gz
from s3ft.tasks import get_task


def answer_files(root: Path):
    """file (relative to the run) -> rows: the run's own files, else those gathered by record_run."""
    gathered: dict[str, list[dict]] = {}
    packed = root / "sweep_answers.jsonl.gz"
    if packed.exists():
        for r in read_jsonl_gz(packed):
            gathered.setdefault(r["file"], []).append(r)

    def rows(name: str) -> list[dict]:
        path = root / name
        if path.exists():
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if name in gathered:
            return gathered[name]
        raise SystemExit(f"{root}: no answers file {name} (run dir, or a results folder with sweep_answers.jsonl.gz)")
    return rows


def rescored(points: list[dict], golds: dict, score, rows) -> list[dict]:
    """The points with in_domain := the mean per-question score over seeds and questions, its
    interval in ci95 (evaluation.mean_over_seeds), and per_question {id: {seed: score}} for the
    paired differences."""
    out = []
    for p in points:
        by_seed = {k: rows(f) for k, f in (p.get("answers_by_seed") or {"": p["answers"]}).items()}
        per_q = scores_by_seed(by_seed, lambda r: max((100.0 * float(score(r.get("response") or "", g))
                                                      for g in golds.get(r["id"]) or ()), default=None))
        m = mean_over_seeds(per_q, list(by_seed), digits=4)
        out.append({**p, "in_domain": m.get("mean"), "ci95": m.get("ci95"), "per_question": per_q,
                    "seeds": list(by_seed)})
    return out


def paired(a: dict, b: dict) -> dict:
    """a's chosen point against b's on the same questions (evaluation.diff_over_seeds)."""
    return diff_over_seeds(a["per_question"], b["per_question"], [k for k in a["seeds"] if k in b["seeds"]], digits=4)


def where(p: dict) -> str:
    return f"{p['learning_rate']:g}, ep {p['epoch']:g}, α {p.get('alpha', 1.0):g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--score", choices=("f1", "em"), default="f1")
    ap.add_argument("--measure", default=None, help="forgetting measure (default: the recipe's budget measure)")
    args = ap.parse_args()
    compare = json.loads((args.run / "compare.json").read_text())
    fr = compare.get("frontier")
    if not fr:
        raise SystemExit(f"{args.run}/compare.json has no frontier (no sweep in the recipe?)")
    measure = args.measure or (fr.get("budget") or {}).get("measure") or next(iter(fr["measures"]))
    task = get_task(compare["task"])
    golds = {e.id: gold_answers(e) for split in (fr["split"], fr["choice_split"]) for e in task.load(split)}
    score = f1_score if args.score == "f1" else exact_match_score
    rows = answer_files(args.run)
    test = rescored(fr["points"], golds, score, rows)
    val = rescored(fr["validation_points"], golds, score, rows)
    trained = [p for p in test if p["method"] != "base"]
    methods = list(dict.fromkeys(p["method"] for p in trained))
    ref = fr.get("reference") or methods[0]
    base = next((p for p in test if p["method"] == "base"), None)
    name = {"f1": "F1", "em": "exact match %"}[args.score]
    print(f"# {compare['task']}: the frontier by {name} (test), against {measure}\n")
    print(f"Base model: {with_ci(base and base['in_domain'], base and base['ci95'])}.\n")
    fs = frontier.fronts(trained, measure)
    print("## Pareto fronts\n\n| method | points (learning rate, epoch, alpha: score [95% CI] at " + measure + ") |\n|---|---|")
    for m, f in fs.items():
        print(f"| {method_name(m)} | " + "; ".join(f"{where(p)}: {with_ci(p['in_domain'], p['ci95'])} at {p[measure]:.3g}"
                                                  for p in f) + " |")
    vfs = frontier.fronts([p for p in val if p["method"] != "base"], measure)
    levels = frontier.spread(frontier.budget_levels(vfs, measure), most=5)
    budget = fr.get("budget") or {}
    if budget.get("measure") == measure:
        levels = sorted(set(levels) | {budget["maximum"]})
    matched = frontier.matched_choices(val, test, measure, levels, [])["forgetting"]
    print(f"\n## At matched forgetting, chosen on {fr['choice_split']}, reported on {fr['split']}\n")
    others = [m for m in methods if m != ref]
    print(f"| {measure} at most | " + " | ".join(method_name(m) for m in methods) + " | "
          + " | ".join(f"{method_name(ref)} − {method_name(m)}" for m in others) + " |")
    print("|---|" + "---|" * (len(methods) + len(others)))
    for r in matched:
        chosen = {m: (c or {}).get("test") for m, c in r["choices"].items()}
        cells = [f"{with_ci(c['in_domain'], c['ci95'])} ({where(c)})" if c else "-" for c in (chosen[m] for m in methods)]
        diffs = []
        for m in others:
            d = paired(chosen[ref], chosen[m]) if chosen.get(ref) and chosen.get(m) else {}
            diffs.append(with_ci(d.get("mean"), d.get("ci95"), signed))
        print(f"| ≤ {r['level']:.3g} | " + " | ".join(cells + diffs) + " |")


if __name__ == "__main__":
    main()
