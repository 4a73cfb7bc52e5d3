"""Build the training set: the heart of the paper, as pure functions (no I/O).

For every training example the target is chosen from three candidates:
  self       - the base model's own answer, if the judge said correct
  paraphrase - the base model's paraphrase of the gold, if it passed the filter and the judge
  gold       - the dataset's response
Methods differ in which candidates they may use and in which order of preference
(`s3ft.methods.METHODS`: sft gold; ssr self, gold; sdft paraphrase, gold; s3ft self,
paraphrase, gold). A verdict of None ("cannot judge") never counts as correct: the example falls
back to the next candidate, ending at gold."""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from s3ft.methods import SOURCES, get_method
from s3ft.types import Example

__all__ = ["SOURCES", "accepted_own", "accepted_paraphrase", "build_training_set", "choose", "mix", "needs_paraphrase"]


def accepted_own(row: Mapping[str, Any] | None) -> str | None:
    """The own answer if its judge verdict is exactly True."""
    if row and row.get("correct") is True and row.get("response"):
        return row["response"]
    return None


def accepted_paraphrase(row: Mapping[str, Any] | None) -> str | None:
    """The paraphrase if it passed the leak filter and the judge said exactly True."""
    if row and not row.get("filtered") and row.get("correct") is True and row.get("response"):
        return row["response"]
    return None


def choose(method: str, example: Example, own: Mapping[str, Any] | None, para: Mapping[str, Any] | None) -> tuple[str, str]:
    """(source, completion) for one example under `method`."""
    for source in get_method(method).sources:
        if source == "self" and (text := accepted_own(own)) is not None:
            return source, text
        if source == "paraphrase" and (text := accepted_paraphrase(para)) is not None:
            return source, text
        if source == "gold":
            return source, example.gold
    raise AssertionError("unreachable: every method ends with gold")


def build_training_set(
    method: str,
    examples: Sequence[Example],
    own: Mapping[str, Mapping[str, Any]],
    paraphrases: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Training rows {id, prompt, completion, source} for `method`, one per example, in order.
    `own` and `paraphrases` map example id -> judged row ({response, correct, filtered?})."""
    rows = []
    for ex in examples:
        source, completion = choose(method, ex, own.get(ex.id), paraphrases.get(ex.id))
        rows.append({"id": ex.id, "prompt": ex.prompt, "completion": completion, "source": source})
    return rows


def mix(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts and percentages of each source (the paper's Table 3)."""
    counts = Counter(r["source"] for r in rows)
    n = len(rows)
    return {
        "n": n,
        "counts": {s: counts.get(s, 0) for s in SOURCES},
        "percent": {s: round(100.0 * counts.get(s, 0) / n, 1) if n else 0.0 for s in SOURCES},
    }


def needs_paraphrase(scope: str, own_row: Mapping[str, Any] | None) -> bool:
    """Whether an example gets a paraphrase under `scope` (failed / all / none)."""
    if scope == "all":
        return True
    if scope == "failed":
        return accepted_own(own_row) is None
    return False
