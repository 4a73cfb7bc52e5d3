"""Probes of the SQuAD judges with no model: what should pass must pass, what should fail must fail.

    python bench/squad_judge_probe.py [--split test] [--out bench/results/squad_judge]
        [--replies REPLIES.jsonl [--readings READINGS.jsonl]] [--labels bench/results/squad_judge_labels]

For every question of the split, replies built from the data alone:
- must pass: the gold answer itself; "The answer is GOLD."; "According to the context, GOLD.";
  a short sentence stating it (the question's words, then GOLD);
- must pass, one-sentence answers (the squad_sentence task's shape): "The answer is GOLD,
  according to the passage."; the question's words, GOLD, then a clause of 7 words taken from
  another question's context; "It was GOLD that" + the question's words + the clause; "In TITLE,"
  (the article's title, words of its own before the answer) + the question's words, GOLD, clause;
- must fail: the quoting probe - the context sentence that shares the most words with the
  question (what a model that quotes instead of answering would say), and the same sentence cut
  to 20 words; the best-overlapping context sentence that contains no gold answer; the gold with
  a word replaced by one from another question's gold (a wrong span of the right shape; where
  another, shorter gold answer is left inside it, the reply still states that one), and in the
  one-sentence shape such a span that holds no gold answer at all; a sentence from another question's context (off topic); an
  empty reply.
Each judge reads its task's examples (squad_sentence's carry the context, for its copy check).
Each judge's acceptance rate per probe is written as JSON and a Markdown table.

--replies judges real replies of a model (`bench/answer_lengths.py --replies`, kind "answer", on
the training split of the task named in each row) with every judge; --readings adds a person's
reading of them ({id, correct, note[, quote]} a line): each judge's agreement with it, and the
replies marked "quote" quoted with every verdict and the note. --labels scores every judge against
the hand labels of bench/squad_judge_labels.py (answers of the squad task's short-answer prompt).
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

# label -> (judge, the task whose examples it reads); squad's examples carry no context, so the
# last column is squad_sentence without its copy check: what the check is for
JUDGES = {"squad (default)": ("squad", "squad"), "qa (lenient)": ("qa", "squad"),
          "squad_sentence": ("squad_sentence", "squad_sentence"),
          "squad_sentence, no copy check": ("squad_sentence", "squad")}


def context_of(e: Example) -> str:
    text = e.prompt[-1]["content"]
    return text.split("Context:", 1)[1].rsplit("Question:", 1)[0].strip()


def overlap(sentence: str, question: str) -> int:
    return len(set(normalize_answer(sentence).split()) & set(normalize_answer(question).split()))


def has_gold(text: str, golds: list[str]) -> bool:
    return any(contains_score(text, g) for g in golds)


def clause_from(other: Example, golds: list[str], words: int = 7) -> str | None:
    """The first `words` words of a sentence of another question's context that holds none of
    `golds` (sentence-ending marks dropped, so that it stays one sentence)."""
    for sent in sentences(context_of(other)):
        clause = " ".join(w.strip(".!?") for w in sent.split()[:words])
        if len(clause.split()) == words and not has_gold(clause, golds):
            return clause
    return None


def probes(e: Example, other_gold: str, other: Example | None = None) -> dict[str, str | None]:
    """The probe replies for `e`: other_gold replaces a word of its gold; `other` (another
    question) gives the one-sentence probes their clause and the off-topic sentence (None: those
    probes are None)."""
    q, golds = e.meta["question"], gold_answers(e)
    sents = sentences(context_of(e))
    best = max(sents, key=lambda s: overlap(s, q))
    without = [s for s in sents if not has_gold(s, golds)]
    gold = golds[0]
    words = gold.split()
    mutated = " ".join(words[:-1] + [other_gold.split()[-1]]) if len(words) > 1 else other_gold
    mutated = mutated if normalize_answer(mutated) not in map(normalize_answer, golds) else None
    stem = " ".join(w for w in q.rstrip("?").split() if w.lower() not in {"what", "who", "when", "where", "which", "how", "why"})
    wrong = mutated if mutated and not has_gold(mutated, golds) else None  # no shorter gold left inside it
    clause = clause_from(other, golds) if other is not None else None
    span = gold.rstrip(".")
    title = e.meta["title"].replace("_", " ")
    off_topic = next((s for s in sentences(context_of(other)) if not has_gold(s, golds)), None) if other else None
    return {
        "gold": gold,
        "The answer is GOLD.": f"The answer is {gold}.",
        "According to the context, GOLD.": f"According to the context, {gold}.",
        "question's words, then GOLD": f"{stem} {gold}.",
        "The answer is GOLD, according to the passage.": f"The answer is {span}, according to the passage.",
        "question's words, GOLD, a clause": f"{stem} {span}, {clause}." if clause else None,
        "It was GOLD that + question's words, a clause": f"It was {span} that {stem}, {clause}." if clause else None,
        "In TITLE, question's words, GOLD, a clause": f"In {title}, {stem} {span}, {clause}." if clause else None,
        "quoting probe: best-overlap context sentence": best,
        "quoting probe cut to 20 words": " ".join(best.split()[:20]),
        "best-overlap sentence without a gold answer": max(without, key=lambda s: overlap(s, q)) if without else None,
        "gold with its last word replaced": mutated,
        "question's words, replaced gold (no gold left in it), a clause": f"{stem} {wrong.rstrip('.')}, {clause}." if wrong and clause else None,
        "off topic: a sentence of another context": off_topic,
        "empty reply": "",
    }


MUST_PASS = ("gold", "The answer is GOLD.", "According to the context, GOLD.", "question's words, then GOLD")
# one-sentence answers: must pass the squad_sentence judge (the squad judge's numbers show what it makes of them)
MUST_PASS_SENTENCE = ("The answer is GOLD, according to the passage.", "question's words, GOLD, a clause",
                      "It was GOLD that + question's words, a clause", "In TITLE, question's words, GOLD, a clause")


def judge_replies(path: str, readings_path: str | None) -> dict:
    """Every judge on real replies (kind "answer"), with a person's reading where given."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("kind", "answer") == "answer"]
    readings = {}
    if readings_path:
        readings = {r["id"]: r for r in map(json.loads, Path(readings_path).read_text().splitlines()) if r}
    out: dict = {"file": path, "readings": readings_path, "n": len(rows), "judges": {}, "rows": []}
    examples = {}
    for label, (name, task) in JUDGES.items():
        if task not in examples:
            examples[task] = {e.id: e for e in get_task(task).load("train")}
        verdicts = get_judge(name)([examples[task][r["id"]] for r in rows], [r["response"] for r in rows])
        read = [(v.correct is True, readings[r["id"]]["correct"]) for r, v in zip(rows, verdicts) if r["id"] in readings]
        out["judges"][label] = {"accepted": sum(v.correct is True for v in verdicts), "read": len(read),
                                "agree": sum(a == b for a, b in read),
                                "accepted_but_read_wrong": sum(a and not b for a, b in read),
                                "rejected_but_read_right": sum(b and not a for a, b in read)}
        for i, (r, v) in enumerate(zip(rows, verdicts)):
            if len(out["rows"]) <= i:
                e = examples[task][r["id"]]
                out["rows"].append({"id": r["id"], "question": e.meta["question"], "answers": e.meta["answers"],
                                    "response": r["response"], "stop": r.get("stop"), "reading": readings.get(r["id"]),
                                    "verdicts": {}})
            out["rows"][i]["verdicts"][label] = {"correct": v.correct, "reason": v.reason}
    return out


def judge_labels(folder: str) -> dict:
    """Every judge against hand labels (items.jsonl + labels.jsonl of bench/squad_judge_labels.py)."""
    read = {name: [json.loads(x) for x in (Path(folder) / name).read_text().splitlines() if x.strip()]
            for name in ("items.jsonl", "labels.jsonl")}
    items = {r["item"]: r for r in read["items.jsonl"]}
    labels = {r["item"]: r["correct"] for r in read["labels.jsonl"]}
    done = [i for i in items if i in labels]
    out: dict = {"folder": folder, "labelled": len(done), "judges": {}}
    for label, (name, task) in JUDGES.items():
        exs = {e.id: e for e in get_task(task).load("test")}
        verdicts = get_judge(name)([exs[items[i]["id"]] for i in done], [items[i]["response"] for i in done])
        pairs = [(v.correct is True, labels[i]) for i, v in zip(done, verdicts)]
        tp, fp = sum(a and b for a, b in pairs), sum(a and not b for a, b in pairs)
        fn = sum(b and not a for a, b in pairs)
        out["judges"][label] = {"agree": sum(a == b for a, b in pairs), "precision": round(100 * tp / max(1, tp + fp), 1),
                                "recall": round(100 * tp / max(1, tp + fn), 1), "accepted_but_labelled_wrong": fp,
                                "rejected_but_labelled_right": fn}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", default="bench/results/squad_judge")
    ap.add_argument("--replies", default=None, help="real replies to judge (bench/answer_lengths.py --replies)")
    ap.add_argument("--readings", default=None, help="a person's reading of those replies: {id, correct, note[, quote]}")
    ap.add_argument("--labels", default=None, help="a folder of hand labels (bench/squad_judge_labels.py) to score against")
    a = ap.parse_args()
    tasks = {t: get_task(t).load(a.split) for t in {task for _, task in JUDGES.values()}}
    exs = tasks["squad"]
    if any([e.id for e in ts] != [e.id for e in exs] for ts in tasks.values()):
        raise SystemExit("the judges' tasks do not hold the same questions")
    perm = list(range(len(exs)))
    random.Random(0).shuffle(perm)
    rows = [probes(e, gold_answers(exs[j])[0], exs[j]) for e, j in zip(exs, perm)]
    kinds = list(rows[0])
    result: dict = {"split": a.split, "questions": len(exs), "judges": {}}
    for label, (name, task) in JUDGES.items():
        judge = get_judge(name)
        per = {}
        for k in kinds:
            pairs = [(e, r[k]) for e, r in zip(tasks[task], rows) if r[k] is not None]
            verdicts = judge([e for e, _ in pairs], [t for _, t in pairs])
            per[k] = {"n": len(pairs), "accepted": sum(v.correct is True for v in verdicts),
                      "percent": round(100 * sum(v.correct is True for v in verdicts) / len(pairs), 1)}
        result["judges"][label] = per
    result.update({"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "date": time.strftime("%Y-%m-%d"),
                   "command": "python " + " ".join(sys.argv),
                   "examples": [{"id": e.id, "question": e.meta["question"], **{k: rows[i][k] for k in kinds}}
                                for i, e in enumerate(exs[:5])]})
    if a.replies:
        result["replies"] = judge_replies(a.replies, a.readings)
    if a.labels:
        result["labels"] = judge_labels(a.labels)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    labels = list(JUDGES)
    lines = [f"# SQuAD judges against replies built without a model ({a.split} split, {len(exs)} questions)", "",
             f"{result['date']}, {result['machine']}; `{result['command']}` (no model: pure Python, seconds).", "",
             "Acceptance rate (%) of each reply. The `squad` and `qa` judges read the `squad` task's examples, "
             "`squad_sentence` its own (the same questions, with the context for its copy check); the last column "
             "is `squad_sentence` on the `squad` task's examples, which carry no context: without its copy check. "
             "must: pass - every judge must accept it; pass (sentence) - a one-sentence answer, which the "
             "`squad_sentence` judge must accept (the other columns show what the others make of it); fail - every "
             "judge must reject it. The probes are described in the script's docstring.", "",
             "| reply | must | n | " + " | ".join(labels) + " |", "|---|---|---|" + "---|" * len(labels)]
    for k in kinds:
        want = "pass" if k in MUST_PASS else "pass (sentence)" if k in MUST_PASS_SENTENCE else "fail"
        cells = [f"{result['judges'][lab][k]['percent']}" for lab in labels]
        lines.append(f"| {k} | {want} | {result['judges'][labels[0]][k]['n']} | " + " | ".join(cells) + " |")
    ex = result["examples"][0]
    lines += ["", f"Example ({ex['id']}): question {ex['question']!r}; gold {ex['gold']!r}; quoting probe "
              f"{ex['quoting probe: best-overlap context sentence']!r}; one-sentence probe "
              f"{ex[MUST_PASS_SENTENCE[1]]!r}."]
    if a.replies:
        rep = result["replies"]
        lines += ["", f"## Real replies ({rep['n']}, `{rep['file']}`)", "",
                  "| judge | accepted | agrees with the reading | accepted, read wrong | rejected, read right |",
                  "|---|---|---|---|---|"]
        for lab in labels:
            j = rep["judges"][lab]
            lines.append(f"| {lab} | {j['accepted']} | {j['agree']} of {j['read']} | {j['accepted_but_read_wrong']} | "
                         f"{j['rejected_but_read_right']} |")
        quoted = [r for r in rep["rows"] if (r["reading"] or {}).get("quote")]
        if quoted:
            lines += ["", "Quoted replies (verdict of `squad_sentence`, then the reading):", ""]
        for r in quoted:
            v = r["verdicts"]["squad_sentence"]
            agree = "agree" if (v["correct"] is True) == r["reading"]["correct"] else "disagree"
            lines += [f"- Q {r['question']!r}, gold {r['answers'][:2]}: {r['response']!r}",
                      f"  - squad_sentence: **{'accepted' if v['correct'] else 'rejected'}** - {v['reason']}",
                      f"  - squad: {'accepted' if r['verdicts']['squad (default)']['correct'] else 'rejected'}; "
                      f"reading: {'right' if r['reading']['correct'] else 'wrong'} ({agree}) - {r['reading']['note']}"]
    if a.labels:
        lab = result["labels"]
        lines += ["", f"## Hand labels ({lab['labelled']} answers to the squad task's short-answer prompt, `{lab['folder']}`)", "",
                  "| judge | agrees with the label | precision % | recall % | accepted, labelled wrong | rejected, labelled right |",
                  "|---|---|---|---|---|---|"]
        for lab_name in labels:
            j = lab["judges"][lab_name]
            lines.append(f"| {lab_name} | {j['agree']} of {lab['labelled']} | {j['precision']} | {j['recall']} | "
                         f"{j['accepted_but_labelled_wrong']} | {j['rejected_but_labelled_right']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
