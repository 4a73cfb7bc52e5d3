"""The SQuAD judges against people: hand labels of real answers of the embedded model.

    python bench/squad_judge_labels.py prepare --answers base=RUN/eval/base.jsonl sft=... s3ft=... [--per_model 60]
    python bench/squad_judge_labels.py score

`prepare` draws --per_model seeded answers of each model (test split), shuffles them together and
writes bench/results/squad_judge_labels/items.jsonl: item number, question, context, the gold
answers and the response - no model name and no verdict, so that labelling is blind to both.
A person reads each item and writes labels.jsonl beside it: {"item": N, "correct": true/false,
"note": "..."} - true when the response answers the question (states a right answer; extra
words are fine, a quoted passage that does not say which part answers is not).
`score` runs each judge on the labelled items and writes agreement.md/.json: per judge, accuracy
against the labels, precision and recall of its "correct", and Cohen's kappa, overall and per
model (the model of each item is kept in key.jsonl, read only here).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from s3ft.judges import get_judge
from s3ft.runs import read_jsonl, write_jsonl
from s3ft.tasks import get_task

OUT = Path("bench/results/squad_judge_labels")
JUDGES = ("squad", "qa")


def context_of(prompt: list[dict]) -> str:
    text = prompt[-1]["content"]
    return text.split("Context:", 1)[1].rsplit("Question:", 1)[0].strip()


def prepare(answers: list[str], per_model: int, seed: int) -> None:
    exs = {e.id: e for e in get_task("squad").load("test")}
    rng = random.Random(seed)
    picked = []
    for spec in answers:
        model, path = spec.split("=", 1)
        rows = [r for r in read_jsonl(path) if r["id"] in exs]
        picked += [(model, r) for r in rng.sample(rows, min(per_model, len(rows)))]
    rng.shuffle(picked)
    items, key = [], []
    for n, (model, r) in enumerate(picked, 1):
        e = exs[r["id"]]
        items.append({"item": n, "id": e.id, "question": e.meta["question"], "context": context_of(e.prompt),
                      "gold_answers": e.meta["answers"], "response": r["response"]})
        key.append({"item": n, "model": model, "source": spec_path(answers, model), "stop": r.get("stop")})
    OUT.mkdir(parents=True, exist_ok=True)
    write_jsonl(OUT / "items.jsonl", items)
    write_jsonl(OUT / "key.jsonl", key)
    print(f"{len(items)} items -> {OUT / 'items.jsonl'}")


def spec_path(answers: list[str], model: str) -> str:
    return next(s.split("=", 1)[1] for s in answers if s.split("=", 1)[0] == model)


def agreement(pairs: list[tuple[bool, bool]]) -> dict:
    """pairs of (judge says correct, label says correct)."""
    n = len(pairs)
    tp = sum(j and h for j, h in pairs)
    fp = sum(j and not h for j, h in pairs)
    fn = sum(h and not j for j, h in pairs)
    tn = n - tp - fp - fn
    acc = (tp + tn) / n if n else None
    pj, ph = (tp + fp) / n if n else 0, (tp + fn) / n if n else 0
    pe = pj * ph + (1 - pj) * (1 - ph)
    kappa = (acc - pe) / (1 - pe) if n and pe < 1 else None
    return {"n": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "accuracy": round(100 * acc, 1) if acc is not None else None,
            "precision": round(100 * tp / (tp + fp), 1) if tp + fp else None,
            "recall": round(100 * tp / (tp + fn), 1) if tp + fn else None,
            "kappa": round(kappa, 3) if kappa is not None else None,
            "judge_correct_rate": round(100 * pj, 1), "label_correct_rate": round(100 * ph, 1)}


def score() -> None:
    exs = {e.id: e for e in get_task("squad").load("test")}
    items = {r["item"]: r for r in read_jsonl(OUT / "items.jsonl")}
    labels = {r["item"]: r for r in read_jsonl(OUT / "labels.jsonl")}
    key = {r["item"]: r for r in read_jsonl(OUT / "key.jsonl")}
    done = [i for i in items if i in labels]
    verdicts = {}
    for name in JUDGES:
        v = get_judge(name)([exs[items[i]["id"]] for i in done], [items[i]["response"] for i in done])
        verdicts[name] = {i: x.correct is True for i, x in zip(done, v)}
    models = sorted({key[i]["model"] for i in done})
    result = {"date": time.strftime("%Y-%m-%d"), "command": "python " + " ".join(sys.argv), "labelled": len(done),
              "judges": {}}
    for name in JUDGES:
        per = {"all": agreement([(verdicts[name][i], labels[i]["correct"]) for i in done])}
        for m in models:
            per[m] = agreement([(verdicts[name][i], labels[i]["correct"]) for i in done if key[i]["model"] == m])
        result["judges"][name] = per
    disagreements = [{"item": i, "model": key[i]["model"], "question": items[i]["question"],
                      "gold": items[i]["gold_answers"][:2], "response": items[i]["response"], "label": labels[i]["correct"],
                      **{name: verdicts[name][i] for name in JUDGES}, "note": labels[i].get("note", "")}
                     for i in done if any(verdicts[name][i] != labels[i]["correct"] for name in JUDGES)]
    result["disagreements"] = disagreements
    (OUT / "agreement.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    lines = [f"# SQuAD judges against hand labels ({len(done)} answers of the embedded model)", "",
             f"{result['date']}; `{result['command']}`. How the answers were drawn and labelled: README.md beside this file.", "",
             "| judge | answers | accuracy vs labels % | precision % | recall % | Cohen's kappa | judge says correct % | labels say correct % |",
             "|---|---|---|---|---|---|---|---|"]
    for name in JUDGES:
        for m, a in result["judges"][name].items():
            lines.append(f"| {name} | {m} ({a['n']}) | {a['accuracy']} | {a['precision']} | {a['recall']} | {a['kappa']} | "
                         f"{a['judge_correct_rate']} | {a['label_correct_rate']} |")
    lines += ["", f"Items where a judge and the label disagree: {len(disagreements)} (all in agreement.json); the first 12:", ""]
    for d in disagreements[:12]:
        lines.append(f"- item {d['item']} ({d['model']}): Q {d['question']!r}, gold {d['gold']}, reply {d['response'][:160]!r} - "
                     f"label {d['label']}, squad {d['squad']}, qa {d['qa']}" + (f" ({d['note']})" if d["note"] else ""))
    (OUT / "agreement.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--answers", nargs="+", required=True, help="MODEL=eval.jsonl ...")
    p.add_argument("--per_model", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    sub.add_parser("score")
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.answers, a.per_model, a.seed)
    else:
        score()
    return 0


if __name__ == "__main__":
    sys.exit(main())
