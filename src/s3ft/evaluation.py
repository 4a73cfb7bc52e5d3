"""In-domain evaluation: a model answers the task's evaluation split and the task's judge
scores every answer. Accuracy is k / n with a 95% bootstrap interval; "cannot judge"
verdicts count as not correct and are reported separately."""
from __future__ import annotations

import random
from typing import Any, Mapping, Sequence


def accuracy(rows: Sequence[Mapping[str, Any]], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Accuracy of judged rows ({correct: True/False/None}) with a percentile bootstrap 95% CI."""
    n = len(rows)
    flags = [1 if r.get("correct") is True else 0 for r in rows]
    k = sum(flags)
    out: dict[str, Any] = {
        "k": k,
        "n": n,
        "accuracy": round(100.0 * k / n, 2) if n else None,
        "cannot_judge": sum(1 for r in rows if r.get("correct") is None),
    }
    if n:
        rng = random.Random(seed)
        boots = sorted(sum(rng.choices(flags, k=n)) / n for _ in range(n_boot))
        out["ci95"] = [round(100 * boots[int(0.025 * n_boot)], 2), round(100 * boots[int(0.975 * n_boot) - 1], 2)]
    return out
