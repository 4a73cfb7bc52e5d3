"""SQuAD v1.1 reading comprehension (with context), on the bundled 1000-question subsample.

Only a fixed 1000-question subsample of the SQuAD v1.1 dev set is available offline (see
`s3ft/data/squad/SOURCE.txt`), so all three splits are cut from it, BY ARTICLE TITLE so that no
context passage appears in two splits: the 48 titles are sorted, shuffled with
`random.Random(0)` (fixed, independent of the run seed), and whole titles go to test until it
holds >= 30% of the questions, then to validation until >= 10%, the rest to train. Within a
split, examples keep the file's order. Resulting sizes:

    train 578 (28 titles) / validation 119 (5 titles) / test 303 (15 titles)

Example: id = the original SQuAD id; prompt = one user turn with the context and the question;
gold = the first gold answer; meta = answers (all gold strings, deduplicated, order kept),
question, title. Judge "squad": the reply must state a gold answer (the span, or a short sentence
asserting it; `s3ft.judges.qa.judge_squad`); "qa" is the lenient judge (span contained anywhere).
"""
from __future__ import annotations

import random
from collections import Counter
from functools import lru_cache

from s3ft.tasks.base import Task
from s3ft.tasks.jsonl import bundled_rows
from s3ft.types import Example

FILE = ("squad", "squad_v1_dev_subsample1000.jsonl.gz")
SPLITS = ("train", "validation", "test")
SIZES = {"train": 578, "validation": 119, "test": 303}
TEST_SHARE, VALIDATION_SHARE = 0.30, 0.10

PROMPT = (
    "Answer the question using the context. Reply with a short answer only.\n\n"
    "Context: {context}\n\nQuestion: {question}"
)


def _dedup(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


@lru_cache(maxsize=None)
def title_splits() -> dict[str, str]:
    """Article title -> split name."""
    rows = bundled_rows(*FILE)
    counts = Counter(r["title"] for r in rows)
    total = sum(counts.values())
    titles = sorted(counts)
    random.Random(0).shuffle(titles)
    assignment: dict[str, str] = {}
    filled = {"test": 0, "validation": 0}
    for title in titles:
        if filled["test"] < TEST_SHARE * total:
            split = "test"
        elif filled["validation"] < VALIDATION_SHARE * total:
            split = "validation"
        else:
            split = "train"
        filled[split] = filled.get(split, 0) + counts[title]
        assignment[title] = split
    return assignment


def to_example(row: dict, prompt: str = PROMPT) -> Example:
    """One bundled row as an Example asked with `prompt` (a template with {context} and {question})."""
    answers = _dedup([a for a in row["answers"] if a.strip()])
    return Example(
        id=str(row["id"]),
        prompt=[{"role": "user", "content": prompt.format(context=row["context"].strip(),
                                                          question=row["question"].strip())}],
        gold=answers[0],
        meta={"answers": answers, "question": row["question"].strip(), "title": row["title"]},
    )


def load_split(split: str) -> list[Example]:
    where = title_splits()
    return [to_example(r) for r in bundled_rows(*FILE) if where[r["title"]] == split]


def task(**options) -> Task:
    if options:
        raise TypeError(f"the squad task takes no options, got: {', '.join(options)}")
    return Task(
        # limits: 1.5x the 90th percentile of the embedded model's replies that ended on their own
        # (answers 71, paraphrases 110 tokens; bench/results/answer_lengths.md), up to a multiple of 64
        name="squad", judge="squad", max_new_tokens=128, paraphrase_max_new_tokens=192, eval_max_new_tokens=128,
        paraphrase_kind="generic",
        splits={s: (lambda s=s: load_split(s)) for s in SPLITS},
    )
