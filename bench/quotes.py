"""What each method taught the model, in its own words: a few real training targets and test
answers of every method on the same questions, as markdown for a results README.

    python bench/quotes.py RUN_OR_RESULTS_DIR [--n 4] [--seed 0] [--seed_of_answers K]
    python bench/quotes.py RUN_OR_RESULTS_DIR --point lr0.001-lora/e2   # a sweep point's answers

Reads audit/targets.jsonl.gz and audit/answers.jsonl.gz (a results folder written by
bench/record_run.py, or a finished compare run's audit/). Training targets: N questions drawn at
random (seeded) among those where the methods' targets are not all the gold, each method's
target with its source (own answer, paraphrase, gold, sampled answer; RFT and S3FT-k may have
several rows per question: the first is shown, with the count). Test answers: N questions drawn
at random, the gold, then every model's answer (the per-seed comparison's, of training seed K -
default the first) with the judge's verdict; with --point DIR/SUFFIX, the base model's and every
method's answers at that sweep point instead (sweep/DIR/eval/<method>-SUFFIX.jsonl, read from
sweep_answers.jsonl.gz in a results folder). The draw does not look at the texts or verdicts.
Questions and golds come from the task, loaded by name.
"""
from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

from s3ft.report.fmt import method_name
from s3ft.runs import read_jsonl_gz
from s3ft.tasks import get_task


def clip(text: str, n: int = 300) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= n else text[: n - 1] + "…"


def question(e, q: str) -> str:
    """The question asked (a QA task's meta), else the last user turn of the prompt, else the id."""
    if e is None:
        return q
    if (e.meta or {}).get("question"):
        return e.meta["question"]
    return e.prompt if isinstance(e.prompt, str) else e.prompt[-1]["content"]


def show(e, q: str, header: str, rows: list[str]) -> None:
    """One drawn question, its gold, and a markdown table of `rows` under `header` (`a | b | c`)."""
    print(f"**{clip(question(e, q), 200)}** (gold: {clip(e.gold if e else '?', 80)})\n")
    print(f"| {header} |\n|---|---|---|")
    for row in rows:
        print(f"| {row} |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=4, help="questions of each kind (default 4)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random draw of questions")
    ap.add_argument("--seed_of_answers", type=int, help="training seed whose answers are shown (default: the first)")
    ap.add_argument("--point", help="show a sweep point's test answers instead, as DIR/SUFFIX: lr0.001-lora/e2, lr0.001-lora/e1-a0.5")
    args = ap.parse_args()
    audit = args.run / "audit"
    compare = json.loads((args.run / "compare.json").read_text())
    task = get_task(compare["task"])
    examples = {e.id: e for split in ("train", compare.get("eval_split", "test")) for e in task.load(split)}
    rng = random.Random(args.seed)

    targets = read_jsonl_gz(audit / "targets.jsonl.gz")
    by_q: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for t in targets:
        by_q[t["id"]][t["method"]].append(t)
    methods = list(dict.fromkeys(t["method"] for t in targets))
    varied = sorted(q for q, per in by_q.items() if any(r["source"] != "gold" for rows in per.values() for r in rows))
    print(f"## Training targets ({len(varied)} of {len(by_q)} questions have a target other than the gold; "
          f"{min(args.n, len(varied))} drawn at random, seed {args.seed})\n")
    for q in rng.sample(varied, min(args.n, len(varied))):
        firsts = [(m, rows[0], len(rows) - 1) for m in methods if (rows := by_q[q].get(m))]
        show(examples.get(q), q, "method | source | target",
             [f"{method_name(m)} | {t['source']}{f' (+{more} more)' if more else ''} | {clip(t['text'])}"
              for m, t, more in firsts])

    if args.point:
        show_point(args.run, args.point, examples, args.n, rng, args.seed)
        return
    answers = read_jsonl_gz(audit / "answers.jsonl.gz")
    seeds = sorted({a["seed"] for a in answers if a["seed"] is not None})
    k = args.seed_of_answers if args.seed_of_answers is not None else (seeds[0] if seeds else None)
    per: dict[str, dict[str, dict]] = defaultdict(dict)
    for a in answers:
        if a["seed"] in (None, k) and a.get("task") == compare["task"]:
            per[a["id"]][a["model"]] = a
    models = list(dict.fromkeys(a["model"] for a in answers if a["seed"] in (None, k)))
    show_answers(f"Test answers (training seed {k}", per, models, examples, args.n, rng, args.seed)


def show_answers(title: str, per: dict[str, dict[str, dict]], models: list[str], examples: dict, n: int,
                 rng: random.Random, seed: int) -> None:
    """N questions of `per` ({question id: {model: judged answer}}) drawn at random, each with every
    model's answer and verdict."""
    qs = sorted(per)
    print(f"## {title}; {min(n, len(qs))} of {len(qs)} questions drawn at random, seed {seed})\n")
    for q in rng.sample(qs, min(n, len(qs))):
        show(examples.get(q), q, "model | judge | answer",
             [f"{method_name(m)} | {'correct' if a['correct'] else 'wrong'} | {clip(a['response'])}"
              for m in models if (a := per[q].get(m))])


def point_answers(run: Path, point: str) -> dict[str, list[dict]]:
    """Test answers of the base model and of every method at sweep point DIR/SUFFIX, by model."""
    folder, _, suffix = point.rpartition("/")
    if not folder or not suffix:
        raise SystemExit(f"--point {point!r}: expected DIR/SUFFIX, e.g. lr0.001-lora/e2")
    if (run / "sweep_answers.jsonl.gz").exists():
        rows: dict[str, list[dict]] = defaultdict(list)
        for r in read_jsonl_gz(run / "sweep_answers.jsonl.gz"):
            rows[r["file"]].append(r)
    else:
        rows = {str(f.relative_to(run)): [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
                for f in [run / "eval" / "base.jsonl", *sorted((run / "sweep" / folder / "eval").glob(f"*-{suffix}.jsonl"))]
                if f.exists()}
    prefix, end = f"sweep/{folder}/eval/", f"-{suffix}.jsonl"
    out = {"base": rows.get("eval/base.jsonl", [])}
    for file, answers in rows.items():
        name = file[len(prefix):-len(end)] if file.startswith(prefix) and file.endswith(end) else ""
        if name and "." not in name and "-" not in name:  # not validation.<method>-..., not another point's
            out[name] = answers
    if len(out) == 1:
        raise SystemExit(f"--point {point!r}: no answers at sweep/{folder}/eval/*{end} in {run}")
    return out


def show_point(run: Path, point: str, examples: dict, n: int, rng: random.Random, seed: int) -> None:
    by_model = point_answers(run, point)
    per: dict[str, dict[str, dict]] = defaultdict(dict)
    for model, answers in by_model.items():
        for a in answers:
            per[a["id"]][model] = a
    show_answers(f"Test answers (sweep point {point}", per, list(by_model), examples, n, rng, seed)


if __name__ == "__main__":
    main()
