"""An example of your own judge, for the trivia rows in this folder:

    s3ft run recipes/custom_jsonl.yaml --judge examples/trivia_judge.py:judge_first_line

A judge is a plain function (example, response) -> True / False / None (cannot judge), or a
tuple (correct, reason[, extracted]). `example.gold` is the row's gold response, `example.meta`
every other field of the row (here `answers`, the acceptable answers)."""
from __future__ import annotations

import re


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def judge_first_line(example, response):
    """Correct when the response's first line names one of the acceptable answers, as whole
    words: a short answer is the point of a trivia question, so an alias mentioned later in a
    long reply does not count."""
    answers = example.meta.get("answers") or [example.gold]
    lines = response.strip().splitlines()
    if not lines:
        return False, "empty response"
    first = f" {_norm(lines[0])} "
    for answer in answers:
        if _norm(answer) and f" {_norm(answer)} " in first:
            return True, f"first line names {answer!r}", lines[0]
    return False, "no acceptable answer on the first line", lines[0]
