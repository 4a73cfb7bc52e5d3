"""MBPP, Mostly Basic Python Problems (Austin et al. 2021), the standard splits by task_id:

    test 11-510 (500) / train 601-974 (374) / validation 511-600 (90) / prompt 1-10 (10)

("prompt" is the few-shot split). Example: id = str(task_id); prompt = the paper's "expert
Python programmer" user turn with the task text and its three test asserts, code between
[BEGIN] and [DONE]; gold = "[BEGIN]\\n<reference code>\\n[DONE]" (CRLF normalised to LF); meta =
task_id, text, test_list, test_setup_code, challenge_test_list, question (= text). Judge "code"
(runs the asserts, only with code execution allowed).
"""
from __future__ import annotations

from s3ft.tasks.base import Task
from s3ft.tasks.jsonl import bundled_rows
from s3ft.types import Example

FILE = ("mbpp", "mbpp.jsonl.gz")
ID_RANGES = {"train": (601, 974), "validation": (511, 600), "test": (11, 510), "prompt": (1, 10)}
SPLITS = tuple(ID_RANGES)
SIZES = {s: hi - lo + 1 for s, (lo, hi) in ID_RANGES.items()}

PROMPT = (
    "You are an expert Python programmer, and here is your task: {text} "
    "Your code should pass these tests:\n\n{tests}\n\nWrite the code between [BEGIN] and [DONE]."
)


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def to_example(row: dict) -> Example:
    text = row["text"].strip()
    tests = [_lf(t) for t in row["test_list"]]
    code = _lf(row["code"]).strip("\n")
    return Example(
        id=str(row["task_id"]),
        prompt=[{"role": "user", "content": PROMPT.format(text=text, tests="\n".join(tests))}],
        gold=f"[BEGIN]\n{code}\n[DONE]",
        meta={
            "task_id": row["task_id"],
            "text": text,
            "test_list": tests,
            "test_setup_code": _lf(row["test_setup_code"]),
            "challenge_test_list": [_lf(t) for t in row["challenge_test_list"]],
            "question": text,
        },
    )


def load_split(split: str) -> list[Example]:
    lo, hi = ID_RANGES[split]
    return [to_example(r) for r in bundled_rows(*FILE) if lo <= r["task_id"] <= hi]


def task(**options) -> Task:
    if options:
        raise TypeError(f"the mbpp task takes no options, got: {', '.join(options)}")
    return Task(
        # limits: 1.5x the 90th percentile of the embedded model's replies that ended on their own
        # (programs 272, paraphrased programs 159 tokens; bench/results/answer_lengths.md), up to a multiple of 64
        name="mbpp", judge="code", max_new_tokens=448, paraphrase_max_new_tokens=256, eval_max_new_tokens=448,
        paraphrase_kind="code",
        splits={s: (lambda s=s: load_split(s)) for s in SPLITS},
    )
