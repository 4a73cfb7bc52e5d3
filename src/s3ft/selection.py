"""Build the training set: the heart of the paper, as pure functions (no I/O).

For every training example the target is chosen from three candidates:
  self       - the base model's own answer, if the judge said correct
  paraphrase - the base model's paraphrase of the gold, if it passed the filter and the judge
  gold       - the dataset's response
Methods differ in which candidates they may use and in which order of preference
(`s3ft.methods.METHODS`: sft gold; ssr self, gold; sdft paraphrase, gold; s3ft self,
paraphrase, gold). A verdict of None ("cannot judge") never counts as correct, and an answer whose
generation hit the length limit (`stop: length`, cut off mid-answer) is never a target: the
example falls back to the next candidate, ending at gold. Each training row records its source
and the candidates it passed over because they were cut off (`cut_off`)."""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from s3ft.backends.base import LENGTH
from s3ft.methods import SOURCES, get_method
from s3ft.types import Example

__all__ = ["SOURCES", "accepted_own", "accepted_paraphrase", "build_training_set", "choose", "choose_with_rejections",
           "cut_off", "mix", "needs_paraphrase"]


def cut_off(row: Mapping[str, Any] | None) -> bool:
    """Whether the row's generation stopped at the length limit (its text is cut off)."""
    return bool(row) and row.get("stop") == LENGTH


def accepted_own(row: Mapping[str, Any] | None) -> str | None:
    """The own answer if its judge verdict is exactly True and it was not cut off."""
    if row and row.get("correct") is True and row.get("response") and not cut_off(row):
        return row["response"]
    return None


def accepted_paraphrase(row: Mapping[str, Any] | None) -> str | None:
    """The paraphrase if it passed the leak filter, the judge said exactly True and it was not cut off."""
    if row and not row.get("filtered") and row.get("correct") is True and row.get("response") and not cut_off(row):
        return row["response"]
    return None


def choose(method: str, example: Example, own: Mapping[str, Any] | None, para: Mapping[str, Any] | None) -> tuple[str, str]:
    """(source, completion) for one example under `method`."""
    source, text, _ = choose_with_rejections(method, example, own, para)
    return source, text


def choose_with_rejections(method: str, example: Example, own: Mapping[str, Any] | None,
                           para: Mapping[str, Any] | None) -> tuple[str, str, list[str]]:
    """(source, completion, sources passed over because their answer was cut off: an own answer
    judged correct as far as it goes, a paraphrase the filter rejected for its length)."""
    passed: list[str] = []
    for source in get_method(method).sources:
        if source == "self":
            if (text := accepted_own(own)) is not None:
                return source, text, passed
            if cut_off(own) and own.get("correct") is True:  # right as far as it goes, but cut off
                passed.append(source)
        if source == "paraphrase":
            if (text := accepted_paraphrase(para)) is not None:
                return source, text, passed
            if cut_off(para):  # (cut-off paraphrases are filtered before judging)
                passed.append(source)
        if source == "gold":
            return source, example.gold, passed
    raise AssertionError("unreachable: every method ends with gold")


def build_training_set(
    method: str,
    examples: Sequence[Example],
    own: Mapping[str, Mapping[str, Any]],
    paraphrases: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Training rows {id, prompt, completion, source[, cut_off]} for `method`, one per example, in
    order. `own` and `paraphrases` map example id -> judged row ({response, correct, filtered?,
    stop?}). `cut_off` lists the sources passed over because their answer was cut off."""
    rows = []
    for ex in examples:
        source, completion, passed = choose_with_rejections(method, ex, own.get(ex.id), paraphrases.get(ex.id))
        row = {"id": ex.id, "prompt": ex.prompt, "completion": completion, "source": source}
        if passed:
            row["cut_off"] = passed
        rows.append(row)
    return rows


def mix(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts and percentages of each source (the paper's Table 3), and how many candidates of
    each source were passed over because they were cut off at the length limit."""
    counts = Counter(r["source"] for r in rows)
    passed = Counter(s for r in rows for s in r.get("cut_off", ()))
    n = len(rows)
    return {
        "n": n,
        "counts": {s: counts.get(s, 0) for s in SOURCES},
        "percent": {s: round(100.0 * counts.get(s, 0) / n, 1) if n else 0.0 for s in SOURCES},
        "cut_off": {s: passed.get(s, 0) for s in SOURCES if s != "gold"},
    }


def needs_paraphrase(scope: str, own_row: Mapping[str, Any] | None) -> bool:
    """Whether an example gets a paraphrase under `scope` (failed / all / none)."""
    if scope == "all":
        return True
    if scope == "failed":
        return accepted_own(own_row) is None
    return False
