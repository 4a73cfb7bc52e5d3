"""Paraphrase: the base model rewrites the gold answer in its own words (S3FT step 3).

y_tilde = M0([x; y]): the model sees the task input and the gold answer as a reference, and
writes its own response. Paraphrases that talk about the reference ("the reference answer",
"your response", "my response", ...) are rejected before judging - the SDFT filter, because
training on them teaches the model to refer to a reference that will not be there. So are
paraphrases that shrink a worked answer to its last line (a 135M model "paraphrases" most GSM8K
solutions as "The answer is N.", which a final-number judge accepts): training on them would
teach the answer without the reasoning."""
from __future__ import annotations

import re

from s3ft.types import Example, Messages

_INTRO = (
    "Below are a question and a reference answer. Using the reference answer as a guide, "
    "write your own response to the question."
)
_TAIL = {
    "generic": "Respond to the question directly, as if you were answering it yourself.",
    "math": 'Begin your response with "Let\'s think step by step." and end it with "The answer is N", where N is the final number.',
    "code": "Write the complete Python code between [BEGIN] and [DONE].",
}

# Phrases that betray a response written about the reference rather than as an answer.
# (SDFT's filter idea, extended with variants seen from small models.)
LEAK_PATTERNS = [
    r"\breference (answer|response|solution|text|code)\b",
    r"\b(original|provided|given) (answer|response|solution)\b",
    r"\b(your|my|the) (own )?response\b",
    r"\byour (answer|solution)\b",
    r"\bas a guide\b",
    r"\bhere(?: is|'s) (?:my|the) (?:rewritten|paraphrased|own)\b",
    r"\b(paraphras|rewrit|reword)(e|ed|ing|es)?\b",
]
_LEAK = re.compile("|".join(LEAK_PATTERNS), re.IGNORECASE)


def question_text(example: Example) -> str:
    """The task input as the model saw it (all user turns)."""
    return "\n\n".join(m["content"] for m in example.prompt if m.get("role") == "user")


def paraphrase_prompt(example: Example, kind: str = "generic") -> Messages:
    if kind not in _TAIL:
        raise ValueError(f"unknown paraphrase kind {kind!r}; one of {', '.join(_TAIL)}")
    system = [m for m in example.prompt if m.get("role") == "system"]
    content = (
        f"{_INTRO} {_TAIL[kind]}\n\n"
        f"### Question:\n{question_text(example)}\n\n"
        f"### Reference answer:\n{example.gold}"
    )
    return system + [{"role": "user", "content": content}]


def leak_reason(text: str) -> str | None:
    """Why a paraphrase must be rejected before judging, or None if it passes the filter."""
    if not text or not text.strip():
        return "empty paraphrase"
    m = _LEAK.search(text)
    if m:
        return f"mentions the reference ({m.group(0)!r})"
    return None


# golds shorter than this (in words) are answers, not worked solutions: no length check
MIN_WORKED_GOLD_WORDS = 20


def filter_reason(text: str, gold: str, min_length_ratio: float = 0.5) -> str | None:
    """Why a paraphrase must be rejected before judging (leak_reason, or a worked gold answer of
    MIN_WORKED_GOLD_WORDS+ words cut to under min_length_ratio of its words), None if it passes."""
    why = leak_reason(text)
    if why is not None or min_length_ratio <= 0:
        return why
    n_gold, n = len(gold.split()), len(text.split())
    if n_gold >= MIN_WORKED_GOLD_WORDS and n < min_length_ratio * n_gold:
        return f"{n} words for a {n_gold}-word reference (under {min_length_ratio:g} of it): the working is gone"
    return None
