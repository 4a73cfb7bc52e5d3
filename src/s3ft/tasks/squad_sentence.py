"""SQuAD asked for a one-sentence answer: the `squad` task's data, splits and ids with another prompt.

The same bundled 1000-question subsample, cut into the same title-based splits with the same ids
and gold answers as `s3ft.tasks.squad` (train 578 / validation 119 / test 303); only the prompt
and the answer lengths differ. The prompt asks for the answer in one complete sentence, so that a
model's own sentence stating the answer is as valid a target as the gold span (S3FT's premise:
the model's own phrasing of a right answer is as good as the gold's). meta also holds the
context, for the judge. Judge "squad_sentence" (`s3ft.judges.qa.judge_squad_sentence`): the
`squad` judge, and a sentence in the model's own words (not copied from the context) that states
a gold answer after at most 3 words of its own beside the question's.
"""
from __future__ import annotations

from s3ft.tasks import squad
from s3ft.tasks.base import Task
from s3ft.tasks.jsonl import bundled_rows
from s3ft.types import Example

PROMPT = (
    "Answer the question using the context in one complete sentence.\n\n"
    "Context: {context}\n\nQuestion: {question}"
)


def to_example(row: dict) -> Example:
    example = squad.to_example(row, PROMPT)
    example.meta["context"] = row["context"].strip()
    return example


def load_split(split: str) -> list[Example]:
    where = squad.title_splits()
    return [to_example(r) for r in bundled_rows(*squad.FILE) if where[r["title"]] == split]


def task(**options) -> Task:
    if options:
        raise TypeError(f"the squad_sentence task takes no options, got: {', '.join(options)}")
    return Task(
        # limits: 1.5x the 90th percentile of the embedded model's replies that ended on their own, up to
        # a multiple of 64 (answers 38 tokens, all 40 ended; bench/results/answer_lengths.md); paraphrases:
        # squad's limit (8 measured, the longest 63 tokens)
        name="squad_sentence", judge="squad_sentence", max_new_tokens=64, paraphrase_max_new_tokens=192,
        eval_max_new_tokens=64, paraphrase_kind="generic",
        splits={s: (lambda s=s: load_split(s)) for s in squad.SPLITS},
    )
