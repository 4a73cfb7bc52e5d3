"""Output style: how a model writes, on prompts outside its task (the IFEval prompts). SFT on
short spans can leave a model answering everything in two words; accuracy benchmarks that rank
fixed continuations never see that. Per model: the length distribution in words, the share of
very short (at most SHORT_WORDS words) and empty answers, the share that hit the length limit,
and repetition (the share of an answer's word 4-grams that repeat an earlier 4-gram of the same
answer: 0 for prose, near 1 for a loop)."""
from __future__ import annotations

from typing import Any, Sequence

SHORT_WORDS = 3
NGRAM = 4


def repetition(text: str, n: int = NGRAM) -> float:
    """Share of the word n-grams of `text` that already occurred earlier in it (0.0 when it has
    no n-gram)."""
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)


def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-quantile of sorted values (nearest rank, lower)."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def style(answers: Sequence[tuple[str, bool]]) -> dict[str, Any]:
    """Style statistics of (answer text, cut off at the length limit) pairs; shares in percent."""
    n = len(answers)
    if not n:
        return {"answers": 0}
    words = sorted(len(t.split()) for t, _ in answers)
    pct = lambda k: round(100.0 * k / n, 1)  # noqa: E731
    return {
        "answers": n,
        "words_median": quantile(words, 0.5),
        "words_p10": quantile(words, 0.1),
        "words_p90": quantile(words, 0.9),
        "words_mean": round(sum(words) / n, 1),
        "short_pct": pct(sum(w <= SHORT_WORDS for w in words)),
        "empty_pct": pct(sum(not t.strip() for t, _ in answers)),
        "cut_off_pct": pct(sum(c for _, c in answers)),
        "repetition_pct": round(100.0 * sum(repetition(t) for t, _ in answers) / n, 1),
    }
