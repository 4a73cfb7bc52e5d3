"""Which training targets and answers say things the passage does not: words of a SQuAD reply
that occur neither in the question nor in the context.

    python bench/target_support.py RUN_DIR [RUN_DIR ...] [--out bench/results/NAME] [--quotes 3]

The squad judges ask that a reply state a gold answer; what the reply says after it is not
theirs to check ("The French colony ... was founded in 1555 by the Huguenots who fled from
Switzerland" is correct for gold 1555, whatever the context says of Switzerland). Own answers,
sampled answers and paraphrases carry such additions into training. This measure counts them:
a reply's content words (SQuAD-normalised tokens, scikit-learn's English stop words and the
judges' lead-in words removed) whose crude stem (s3ft.judges.qa's) occurs in neither the
question nor the context, each word once. A reply with ADDED or more such words (default 2)
"adds words not in the passage". A synonym of the passage's word counts as added too, so the
rate is an upper bound on invented content, and the flagged replies are the ones to read.

For every compare run (its audit/targets.jsonl.gz and audit/answers.jsonl.gz - a run still
going: its train.<method>.jsonl files - and its task's examples) it reports, per method and target source, and per model's test answers: how many
replies, how many are flagged (and how many distinct texts: methods share their paraphrases and
own answers), the share that adds words, the mean number of added words; every flagged non-gold
target once, and a few flagged answers per model. Probes built from the same questions with no
model: the gold answer and the context sentence holding it must add nothing (they test the
tokenisation: the passage's own words); the gold followed by a sentence of another article's
context must add words. They do not measure how often a faithful paraphrase in other words is
flagged: read the flagged list for that. The task is loaded by name without a recipe's task
options (the bundled squad and squad_sentence tasks need none).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from s3ft.judges.qa import FILLER, stem, normalize_answer, sentences
from s3ft.runs import read_jsonl_gz
from s3ft.tasks import get_task

STOP = frozenset(ENGLISH_STOP_WORDS) | FILLER


def content(text: str) -> list[str]:
    return [t for t in normalize_answer(text).split() if t not in STOP]


def added_words(text: str, question: str, context: str) -> list[str]:
    """The reply's distinct content words whose stem occurs in neither the question nor the
    context. The context is read both SQuAD-normalised and split at punctuation, so that a
    citation mark ("in 1873.:33" -> "187333") does not hide the number it follows."""
    source = f"{question} {context}"
    tokens = normalize_answer(source).split() + normalize_answer(re.sub(r"[^\w\s]", " ", source)).split()
    known = {stem(t) for t in tokens}
    return list(dict.fromkeys(t for t in content(text) if stem(t) not in known))


def context_of(example) -> str:
    meta = example.meta or {}
    if meta.get("context"):
        return str(meta["context"])
    text = example.prompt[-1]["content"]
    return text.split("Context:", 1)[-1].split("\n\nQuestion:", 1)[0].strip()


def read_gz(path: Path) -> list[dict]:
    """The rows of a gzipped JSONL file; none where the run has no such file."""
    return read_jsonl_gz(path) if path.exists() else []


def training_targets(run: Path) -> list[dict]:
    """The audit's target rows read from a run's train.<method>.jsonl files (a compare run that
    has not written its audit yet)."""
    out = []
    for path in sorted(run.glob("train.*.jsonl")):
        method = path.name[len("train."):-len(".jsonl")]
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out.append({"method": method, "id": r["id"], "source": r.get("source"),
                            "text": r["completion"][-1]["content"]})
    return out


def summarise(rows: list[tuple[str, list[str]]], threshold: int, quotes: int, rng: random.Random) -> dict:
    flagged = [(t, a) for t, a in rows if len(a) >= threshold]
    return {"n": len(rows), "flagged": len(flagged), "distinct_flagged": len({t for t, _ in flagged}),
            "adds_words_pct": round(100 * len(flagged) / len(rows), 1) if rows else None,
            "mean_added": round(sum(len(a) for _, a in rows) / len(rows), 2) if rows else None,
            "quotes": [{"text": t[:300], "added": a} for t, a in rng.sample(flagged, min(quotes, len(flagged)))]}


def examples_by_id(task_name: str) -> dict[str, object]:
    task = get_task(task_name)
    return {e.id: e for split in ("train", "validation", "test") for e in task.load(split)}


def probes(examples: list, threshold: int, rng: random.Random) -> dict:
    """Replies built from the data alone: the gold, the context sentence holding it (must add
    nothing), the gold followed by another article's context sentence (must add words)."""
    rows: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    by_title = defaultdict(list)
    for e in examples:
        by_title[(e.meta or {}).get("title")].append(e)
    titles = sorted(t for t in by_title if t is not None)
    for e in examples:
        q, c = (e.meta or {}).get("question", ""), context_of(e)
        rows["gold (must add nothing)"].append((e.gold, added_words(e.gold, q, c)))
        holding = [s for s in sentences(c) if normalize_answer(e.gold) in normalize_answer(s)]
        if holding:
            rows["context sentence holding the gold (must add nothing)"].append(
                (holding[0], added_words(holding[0], q, c)))
        other = [t for t in titles if t != (e.meta or {}).get("title")]
        if other:
            far = rng.choice(by_title[rng.choice(other)])
            extra = max(sentences(context_of(far)), key=len)
            reply = f"{e.gold}. {extra}"
            rows["gold + another article's sentence (must add words)"].append((reply, added_words(reply, q, c)))
    return {k: summarise(v, threshold, 0, rng) for k, v in rows.items()}


def study(run: Path, threshold: int, quotes: int, seed: int) -> dict:
    found = run / "compare.json" if (run / "compare.json").exists() else run / "manifest.json"  # (a run still going)
    compare = json.loads(found.read_text())
    task_name = (compare.get("config") or {}).get("task") or compare.get("task")
    examples = examples_by_id(task_name)
    rng = random.Random(seed)

    def added(row_id: str, text: str) -> list[str]:
        e = examples[row_id]
        return added_words(text or "", (e.meta or {}).get("question", ""), context_of(e))

    targets: dict[str, list] = defaultdict(list)
    distinct: dict[tuple[str, str], dict] = {}  # every flagged non-gold target once, with the methods training on it
    for r in read_gz(run / "audit" / "targets.jsonl.gz") or training_targets(run):
        if r["id"] in examples:
            a = added(r["id"], r["text"])
            targets[f"{r['method']} / {r['source']}"].append((r["text"], a))
            if r["source"] != "gold" and len(a) >= threshold:
                e = examples[r["id"]]
                d = distinct.setdefault((r["id"], r["text"]), {
                    "id": r["id"], "question": (e.meta or {}).get("question"), "gold": e.gold, "source": r["source"],
                    "text": r["text"], "added": a, "methods": []})
                d["methods"].append(r["method"])
    answers: dict[str, list] = defaultdict(list)
    rows = [r for r in read_gz(run / "audit" / "answers.jsonl.gz") if r.get("task", task_name) == task_name]
    for r in rows:
        if r["id"] in examples:
            key = f"{r['model']}" + ("" if r.get("seed") is None else f" (seed {r['seed']})")
            answers[key].append((r["response"], added(r["id"], r["response"])))
    test = [examples[i] for i in sorted({r["id"] for r in rows}) if i in examples]
    return {"run": str(run), "task": task_name, "threshold": threshold,
            "probes": probes(test or list(examples.values())[:200], threshold, rng),
            "targets": {k: summarise(v, threshold, quotes, rng) for k, v in sorted(targets.items())},
            "answers": {k: summarise(v, threshold, quotes, rng) for k, v in sorted(answers.items())},
            "flagged_targets": list(distinct.values())}


def markdown(results: list[dict], argv: list[str]) -> str:
    lines = ["# Words not in the passage: training targets and test answers", "",
             f"`python bench/target_support.py {' '.join(argv)}` ({time.strftime('%Y-%m-%d')}; no model, "
             "reads the runs' audit files)", "",
             *(p.replace("\n", " ") for p in __doc__.split("\n\n")[2:4]), ""]
    for res in results:
        lines += [f"## {res['run']} (task {res['task']}; flagged: {res['threshold']} or more added words)", ""]
        for title, key in (("Probes (no model)", "probes"), ("Training targets (method / source)", "targets"),
                           ("Test answers (model)", "answers")):
            lines += [f"### {title}", "", "| replies | n | flagged (distinct texts) | adds words % | mean added words |",
                      "|---|---|---|---|---|"]
            lines += [f"| {k} | {v['n']} | {v['flagged']} ({v['distinct_flagged']}) | {v['adds_words_pct']} | "
                      f"{v['mean_added']} |" for k, v in res[key].items()]
            lines.append("")
        lines += ["### Every flagged training target other than gold (each text once)", ""]
        for d in res["flagged_targets"]:
            lines.append(f"- {d['source']} ({', '.join(d['methods'])}), \"{d['question']}\" (gold *{d['gold']}*): "
                         f"*{d['text'][:300]!r}* - added: {', '.join(d['added'])}")
        lines += ["", "### Flagged test answers (a sample per model)", ""]
        for k, v in res["answers"].items():
            for q in v["quotes"]:
                lines.append(f"- {k}: *{q['text']!r}* - added: {', '.join(q['added'])}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="compare run directories (compare.json, audit/)")
    ap.add_argument("--out", default="bench/results/target_support", help="results stem (.json and .md)")
    ap.add_argument("--added", type=int, default=2, help="added words that flag a reply")
    ap.add_argument("--quotes", type=int, default=2, help="flagged replies quoted per method / source / model")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    results = [study(r, args.added, args.quotes, args.seed) for r in args.runs]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(results, argv) + "\n")
    print(markdown(results, argv))


if __name__ == "__main__":
    main()
