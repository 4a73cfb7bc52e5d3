"""Probes of the SQuAD judges with no model: what should pass must pass, what should fail must fail.

    python bench/squad_judge_probe.py [--split test] [--out bench/results/squad_judge]

For every question of the split, replies built from the data alone:
- must pass: the gold answer itself; "The answer is GOLD."; "According to the context, GOLD.";
  a short sentence stating it (the question's words, then GOLD);
- must fail: the quoting probe - the context sentence that shares the most words with the
  question (what a model that quotes instead of answering would say), and the same sentence cut
  to 20 words; the best-overlapping context sentence that contains no gold answer; the gold with
  a word replaced by one from another question's gold (a wrong span of the right shape).
Each judge's acceptance rate per probe is written as JSON and a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

from s3ft.judges import get_judge
from s3ft.judges.qa import contains_score, gold_answers, normalize_answer, sentences
from s3ft.tasks import get_task
from s3ft.types import Example

JUDGES = {"squad (default)": ("squad", {}), "qa (lenient)": ("qa", {})}


def context_of(e: Example) -> str:
    text = e.prompt[-1]["content"]
    return text.split("Context:", 1)[1].rsplit("Question:", 1)[0].strip()


def overlap(sentence: str, question: str) -> int:
    return len(set(normalize_answer(sentence).split()) & set(normalize_answer(question).split()))


def probes(e: Example, other_gold: str) -> dict[str, str | None]:
    q, golds = e.meta["question"], gold_answers(e)
    sents = sentences(context_of(e))
    best = max(sents, key=lambda s: overlap(s, q))
    without = [s for s in sents if not any(contains_score(s, g) for g in golds)]
    gold = golds[0]
    words = gold.split()
    mutated = " ".join(words[:-1] + [other_gold.split()[-1]]) if len(words) > 1 else other_gold
    stem = " ".join(w for w in q.rstrip("?").split() if w.lower() not in {"what", "who", "when", "where", "which", "how", "why"})
    return {
        "gold": gold,
        "The answer is GOLD.": f"The answer is {gold}.",
        "According to the context, GOLD.": f"According to the context, {gold}.",
        "question's words, then GOLD": f"{stem} {gold}.",
        "quoting probe: best-overlap context sentence": best,
        "quoting probe cut to 20 words": " ".join(best.split()[:20]),
        "best-overlap sentence without a gold answer": max(without, key=lambda s: overlap(s, q)) if without else None,
        "gold with its last word replaced": mutated if normalize_answer(mutated) not in map(normalize_answer, golds) else None,
    }


MUST_PASS = ("gold", "The answer is GOLD.", "According to the context, GOLD.", "question's words, then GOLD")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", default="bench/results/squad_judge")
    a = ap.parse_args()
    exs = get_task("squad").load(a.split)
    rng = random.Random(0)
    others = [gold_answers(e)[0] for e in exs]
    rng.shuffle(others)
    rows = [probes(e, o) for e, o in zip(exs, others)]
    kinds = list(rows[0])
    result: dict = {"split": a.split, "questions": len(exs), "judges": {}}
    for label, (name, opts) in JUDGES.items():
        judge = get_judge(name, **opts)
        per = {}
        for k in kinds:
            pairs = [(e, r[k]) for e, r in zip(exs, rows) if r[k]]
            verdicts = judge([e for e, _ in pairs], [t for _, t in pairs])
            per[k] = {"n": len(pairs), "accepted": sum(v.correct is True for v in verdicts),
                      "percent": round(100 * sum(v.correct is True for v in verdicts) / len(pairs), 1)}
        result["judges"][label] = per
    result.update({"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "date": time.strftime("%Y-%m-%d"),
                   "command": "python " + " ".join(sys.argv),
                   "examples": [{"id": e.id, "question": e.meta["question"], **{k: rows[i][k] for k in kinds}}
                                for i, e in enumerate(exs[:5])]})
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    labels = list(JUDGES)
    lines = [f"# SQuAD judges against replies built without a model ({a.split} split, {len(exs)} questions)", "",
             f"{result['date']}, {result['machine']}; `{result['command']}` (no model: pure Python, seconds).", "",
             "Acceptance rate (%) of each reply; the first four must pass, the rest must fail.", "",
             "| reply | n | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for k in kinds:
        want = "pass" if k in MUST_PASS else "fail"
        cells = [f"{result['judges'][lab][k]['percent']}" for lab in labels]
        lines.append(f"| {k} (must {want}) | {result['judges'][labels[0]][k]['n']} | " + " | ".join(cells) + " |")
    ex = result["examples"][0]
    lines += ["", f"Example ({ex['id']}): question {ex['question']!r}; quoting probe {ex['quoting probe: best-overlap context sentence']!r}; "
              f"gold {ex['gold']!r}."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
