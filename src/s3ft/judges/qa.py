"""Question-answering judges: SQuAD-style answer normalisation, exact match, token F1 and
containment against every gold answer.

`judge_squad` (the squad task's default) checks that a reply *states* a gold answer: the bare
span, or a short sentence asserting it. It reads the reply's first sentence, drops the words it
shares with the question and a few lead-in words ("the answer is", "according to the context"),
and asks that what is left begin with a gold answer or contain one with few other words around
it. A quoted context sentence with the span in the middle of other material fails.
`judge_squad_sentence` (the squad_sentence task's) adds one rule for one-sentence answers: a
sentence in its own words (not copied from the context) that states a gold answer after at most
3 words of its own. `judge_qa` is the lenient judge (gold contained anywhere in the reply, or F1 on the
whole reply): a reply quoting the context sentence that shares most words with the question
passes it about 80% of the time on SQuAD with no model at all (bench/results/squad_judge.md).

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


# Lead-in and linking words a reply may wrap its answer in; dropped before scoring (gold words never are).
FILLER = frozenset(
    "answer answers context passage text according based given above question reply "
    "is are was were be been being it its this that these those they he she there here to of in on "
    "by for as so".split())
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])|\n+")
_ABBREVIATION = re.compile(r"(?:\b[A-Z]|\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Mt|vs|No|Co|Inc|Ltd|Gen|Col|Lt|Sgt|Rev|Prof))\.$")


def sentences(text: str) -> list[str]:
    """`text` split into sentences at . ! ? followed by a capital, digit or quote, and at line
    breaks ("U.S." and "Dr." do not end one)."""
    out: list[str] = []
    for p in _SENTENCE_END.split(text.strip()):
        if not p or not p.strip():
            continue
        if out and _ABBREVIATION.search(out[-1]):
            out[-1] = f"{out[-1]} {p.strip()}"
        else:
            out.append(p.strip())
    return out


def first_sentence(text: str) -> str:
    """The reply's first non-empty sentence."""
    return next(iter(sentences(text)), "")


def stem(token: str) -> str:
    """A crude stem, so that a restated question's "debuted" matches its "debut"."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(token) > len(suffix) + 3 and token.endswith(suffix):
            return token[: -len(suffix)]
    return token


def stated_answer(response: str, question: str, golds: list[str]) -> list[str]:
    """What the reply's first sentence says beyond restating the question: its normalised tokens
    without the question's words (compared by a crude stem) and the lead-in words - except words
    of a gold answer."""
    keep = {t for g in golds for t in normalize_answer(g).split()}
    asked = {stem(t) for t in normalize_answer(question).split()}
    return [t for t in normalize_answer(first_sentence(response)).split()
            if t in keep or (t not in FILLER and stem(t) not in asked)]


def judge_squad(example: Example, response: Any, extra_words: int = 3) -> Verdict:
    """Correct if the reply states a gold answer: it is one (normalised exact match), or what its
    first sentence says beyond the question (`stated_answer`) either begins with a gold answer
    (the shape of a sentence answer: the question restated, the answer, then maybe more) or
    contains one with at most max(extra_words, its length) other words around it. A partial span
    ("July" for "July 1899"), a wrong one of the right shape ("July 1900") and a quoted sentence
    with the span in the middle of other material fail. The question comes from
    example.meta["question"] (none: only the lead-in words are dropped). extracted = the gold."""
    all_golds = gold_answers(example)
    golds = [g for g in all_golds if normalize_answer(g)]
    if not golds:
        return judge_qa(example, response, policy="em")  # golds SQuAD normalisation empties: exact match only
    text = response if isinstance(response, str) else ("" if response is None else str(response))
    if not normalize_answer(text):
        return Verdict(False, "empty response")
    for g in golds:
        if exact_match_score(text, g):
            return Verdict(True, f"exact match with gold {g!r}", g)
    question = str((example.meta or {}).get("question") or "")
    stated = stated_answer(text, question, golds)
    if not stated:
        return Verdict(False, "the first sentence states nothing beyond the question", None)
    said = " ".join(stated)
    for g in golds:
        if f"{said} ".startswith(f"{normalize_answer(g)} "):
            return Verdict(True, f"states {said[:80]!r}, which begins with gold {g!r}", g)
    contained = [g for g in golds if contains_score(said, g)]
    for g in sorted(contained, key=lambda g: -len(normalize_answer(g).split())):
        n = len(normalize_answer(g).split())
        if len(stated) - n <= max(extra_words, n):
            return Verdict(True, f"states {said!r}, which contains gold {g!r}", g)
    if contained:
        return Verdict(False, f"states {said[:80]!r}: gold {contained[0]!r} among {len(stated)} words (too much else)", None)
    return Verdict(False, f"states {said[:80]!r}: no gold answer in it ({', '.join(repr(g) for g in golds[:3])})", None)


# Words a sentence answer may put before its answer without saying anything else: the lead-in and
# linking words, and prepositions ("was held at Levi's Stadium").
SENTENCE_FILLER = FILLER | frozenset(
    "at from with into during about after before between through under over within without".split())


def copied_share(sentence: str, context: str, n: int = 4) -> float:
    """The share of the sentence's word n-grams (normalised tokens) that occur in `context`
    (0.0 for a sentence shorter than n words): 1.0 for a sentence copied from the context."""
    tokens = normalize_answer(sentence).split()
    if len(tokens) < n:
        return 0.0
    words = normalize_answer(context).split()
    seen = {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return sum(g in seen for g in grams) / len(grams)


def words_before_gold(sentence: str, question: str, golds: list[str]) -> tuple[list[str], str] | None:
    """The words a sentence says before its first gold answer beyond the question's (compared by a
    crude stem, gold words included) and SENTENCE_FILLER, with that gold: the gold found after the
    fewest such words. None when no gold answer occurs in the sentence."""
    tokens = normalize_answer(sentence).split()
    asked = {stem(t) for t in normalize_answer(question).split()}
    best: tuple[list[str], str] | None = None
    for g in golds:
        gold = normalize_answer(g).split()
        at = next((i for i in range(len(tokens) - len(gold) + 1) if tokens[i:i + len(gold)] == gold), None)
        if at is None:
            continue
        own = [t for t in tokens[:at] if t not in SENTENCE_FILLER and stem(t) not in asked]
        if best is None or len(own) < len(best[0]):
            best = (own, g)
    return best


def judge_squad_sentence(example: Example, response: Any, lead_words: int = 3, copied: float = 0.75) -> Verdict:
    """The squad_sentence task's judge, for one-sentence answers: `judge_squad`'s verdict, and where
    that is "wrong", also correct when the reply's first sentence is in its own words - under
    `copied` of its word 4-grams occur in the context (example.meta["context"]; none: not checked)
    - and states a gold answer after at most `lead_words` words of its own (`words_before_gold`:
    words beyond the question's, the lead-in and linking words and prepositions); what follows the
    gold is not limited, as after judge_squad's "begins with a gold answer". A sentence answer
    restates the question in its own words before the answer ("The coronation of King Richard was
    a double coronation, where ..."), which judge_squad counts against it; a quoted context
    sentence gets judge_squad's verdict alone, so quoting gains nothing over the squad task."""
    verdict = judge_squad(example, response)
    if verdict.correct is not False:
        return verdict
    golds = [g for g in gold_answers(example) if normalize_answer(g)]
    sentence = first_sentence(response if isinstance(response, str) else ("" if response is None else str(response)))
    if not golds or not normalize_answer(sentence):
        return verdict
    meta = example.meta or {}
    share = copied_share(sentence, str(meta.get("context") or ""))
    if share >= copied:
        return Verdict(False, f"{verdict.reason}; the sentence is copied from the context "
                              f"({share:.0%} of its word 4-grams): the squad rule alone", None)
    found = words_before_gold(sentence, str(meta.get("question") or ""), golds)
    if found is None:
        return verdict
    own, gold = found
    if len(own) <= lead_words:
        said = f" ({' '.join(own)!r})" if own else ""
        return Verdict(True, f"the sentence states gold {gold!r} after {len(own)} words of its own{said}", gold)
    return Verdict(False, f"{verdict.reason}; in its own words: gold {gold!r} after {len(own)} words of its own "
                          f"({' '.join(own)[:60]!r}), more than {lead_words}", None)


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
