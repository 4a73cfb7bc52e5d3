"""Question-answering judges: SQuAD-style answer normalisation, exact match, token F1 and
containment against every gold answer.

`normalize_answer`, `exact_match_score` and `f1_score` follow the official SQuAD v1.1 evaluation
script (lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace; F1 over
the bag of normalised tokens). `contains_score` asks whether the normalised gold appears in the
normalised response on token boundaries ("paris" is in "it is paris france", "art" is not in
"the start")."""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

from s3ft.types import Example, Verdict

POLICIES = ("em", "contains", "f1", "contains_or_f1")

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: Any) -> str:
    """SQuAD v1.1 normalisation: lower case, remove punctuation, articles and extra whitespace."""
    s = "" if s is None else str(s)
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match_score(prediction: Any, gold: Any) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


def f1_score(prediction: Any, gold: Any) -> float:
    """SQuAD token F1 between a prediction and one gold answer (0.0 when nothing overlaps)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def contains_score(prediction: Any, gold: Any) -> bool:
    """Normalised gold occurs in the normalised prediction, on token boundaries."""
    g = normalize_answer(gold)
    if not g:
        return False
    return f" {g} " in f" {normalize_answer(prediction)} "


def light_normalize(s: Any) -> str:
    """Lower case, collapse whitespace, strip punctuation only at the ends of tokens. Used for
    gold answers that SQuAD normalisation empties ("A+", "The The", "?")."""
    tokens = ("" if s is None else str(s)).lower().split()
    return " ".join(t for t in (t.strip(".,;:!?\"'()[]{}") for t in tokens) if t)


def gold_answers(example: Example) -> list[str]:
    """All gold answers: meta["answers"] (a list or a single string), else [example.gold]."""
    answers = (example.meta or {}).get("answers")
    if isinstance(answers, str):
        answers = [answers]
    out = [str(a) for a in (answers or []) if a is not None and str(a).strip()]
    if not out and example.gold is not None and str(example.gold).strip():
        out = [str(example.gold)]
    return out


def judge_qa(example: Example, response: Any, policy: str = "contains_or_f1", f1_threshold: float = 0.5) -> Verdict:
    """Correct if the response matches any gold answer under `policy`:
    em (normalised exact match), contains (gold inside the response on token boundaries),
    f1 (token F1 >= f1_threshold), contains_or_f1 (either of the two; exact match implies both).
    extracted = the gold answer that matched (None when wrong)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown qa policy {policy!r}; choose one of {', '.join(POLICIES)}")
    all_golds = gold_answers(example)
    golds = [g for g in all_golds if normalize_answer(g)]
    # golds that SQuAD normalisation empties ("A+" -> "a+" -> "" once the article goes)
    special = [g for g in all_golds if not normalize_answer(g) and light_normalize(g)]
    if not golds and not special:
        return Verdict(None, "no gold answer to compare with")
    text = response if isinstance(response, str) else ("" if response is None else str(response))
    if not light_normalize(text):
        return Verdict(False, "empty response")
    light = f" {light_normalize(text)} "
    for g in special:
        if light.strip() == light_normalize(g):
            return Verdict(True, f"exact match with gold {g!r} (punctuation kept: SQuAD normalisation empties it)", g)
        if policy in ("contains", "contains_or_f1") and f" {light_normalize(g)} " in light:
            return Verdict(True, f"response contains gold {g!r} (punctuation kept: SQuAD normalisation empties it)", g)
    if not golds or not normalize_answer(text):
        return Verdict(False, f"no gold matched ({', '.join(repr(g) for g in all_golds[:3])})", None)

    best_f1, best_gold = -1.0, golds[0]
    for g in golds:
        f1 = f1_score(text, g)
        if f1 > best_f1:
            best_f1, best_gold = f1, g
    if policy in ("em", "contains", "contains_or_f1"):
        for g in golds:
            if exact_match_score(text, g):
                return Verdict(True, f"exact match with gold {g!r}", g)
    if policy in ("contains", "contains_or_f1"):
        for g in golds:
            if contains_score(text, g):
                return Verdict(True, f"response contains gold {g!r}", g)
    if policy in ("f1", "contains_or_f1") and best_f1 >= f1_threshold:
        return Verdict(True, f"f1={best_f1:.2f} >= {f1_threshold:g} with gold {best_gold!r}", best_gold)
    how = {"em": "no exact match", "contains": "no gold contained", "f1": "f1 below threshold",
           "contains_or_f1": "no gold contained and f1 below threshold"}[policy]
    return Verdict(False, f"{how} (best f1={max(best_f1, 0.0):.2f} with gold {best_gold!r})", None)


def judge_exact(example: Example, response: Any) -> Verdict:
    """Normalised exact match with example.gold."""
    gold = example.gold
    if not light_normalize(gold):
        return Verdict(None, "no gold answer to compare with")
    text = response if isinstance(response, str) else ("" if response is None else str(response))
    if not light_normalize(text):
        return Verdict(False, "empty response")
    if not normalize_answer(gold):  # "A+": compare with punctuation kept
        if light_normalize(text) == light_normalize(gold):
            return Verdict(True, f"exact match with gold {str(gold)!r} (punctuation kept)", str(gold))
        return Verdict(False, "no exact match with gold", None)
    if exact_match_score(text, gold):
        return Verdict(True, f"exact match with gold {str(gold)!r}", str(gold))
    return Verdict(False, "no exact match with gold", None)
