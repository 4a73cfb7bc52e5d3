"""GSM8K grade-school math (Cobbe et al. 2021), the standard splits: train 7473 / test 1319.

Example: id "gsm8k-<split>-<line index>" (0-based); prompt = one user turn asking for a
step-by-step solution ending with "The answer is N"; gold = the reference solution with its
<<calculator>> annotations removed and the final "#### N" line replaced by "The answer is N."
(N without thousands commas); meta = answer (that number string), question. Judge "math".
"""
from __future__ import annotations

import re

from s3ft.tasks.base import Task
from s3ft.tasks.jsonl import bundled_rows
from s3ft.types import Example

SPLITS = ("train", "test")
SIZES = {"train": 7473, "test": 1319}

PROMPT = (
    "Solve the following math problem step by step. End your response with "
    "\"The answer is N\" where N is the final number.\n\n{question}"
)

_CALC = re.compile(r"<<[^<>]*>>")


def final_answer(solution: str) -> str:
    """The number after the last '####' of a GSM8K reference solution, commas removed."""
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def clean_solution(solution: str) -> str:
    """Reference solution -> gold response: no <<calc>> annotations, 'The answer is N.' last."""
    answer = final_answer(solution)
    lines = _CALC.sub("", solution.rsplit("####", 1)[0]).rstrip().split("\n")
    if re.fullmatch(rf"the answer is {re.escape(answer)}\.?", lines[-1].strip().replace(",", ""), re.I):
        lines.pop()  # train row 1297 already ends with "The answer is 8." - do not say it twice
    body = "\n".join(lines).rstrip()
    return f"{body}\nThe answer is {answer}."


def to_example(row: dict, split: str, index: int) -> Example:
    question = row["question"].strip()
    return Example(
        id=f"gsm8k-{split}-{index}",
        prompt=[{"role": "user", "content": PROMPT.format(question=question)}],
        gold=clean_solution(row["answer"]),
        meta={"answer": final_answer(row["answer"]), "question": question},
    )


def load_split(split: str) -> list[Example]:
    return [to_example(r, split, i) for i, r in enumerate(bundled_rows("gsm8k", f"{split}.jsonl.gz"))]


def task(**options) -> Task:
    if options:
        raise TypeError(f"the gsm8k task takes no options, got: {', '.join(options)}")
    return Task(
        # limits: 1.5x the 90th percentile of the embedded model's replies that ended on their own
        # (worked answers 259, paraphrases 219 tokens; bench/results/answer_lengths.md), up to a multiple of 64
        name="gsm8k", judge="math", max_new_tokens=448, paraphrase_max_new_tokens=384, eval_max_new_tokens=448,
        paraphrase_kind="math",
        splits={s: (lambda s=s: load_split(s)) for s in SPLITS},
    )
