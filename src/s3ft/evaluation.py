"""In-domain evaluation: a model answers the task's evaluation split and the task's judge
scores every answer. Accuracy is k / n with a 95% bootstrap interval; "cannot judge"
verdicts count as not correct and are reported separately."""
from __future__ import annotations

import random
from typing import Any, Callable, Mapping, Sequence

from s3ft.selection import cut_off

# The smallest true change a comparison detects with 80% power at the 5% level (two-sided) is
# (z_0.975 + z_0.80) x its standard error: 2.80 standard errors.
Z95, Z80 = 1.959964, 0.841621


def mde(se: float | None) -> float | None:
    """Minimum detectable effect (in the unit of `se`): 2.80 standard errors (see Z95, Z80)."""
    return None if se is None else round((Z95 + Z80) * se, 2)


def mean_ci(values: Sequence[float]) -> dict[str, Any]:
    """Mean of per-item values with its standard error, normal 95% interval and minimum
    detectable change (`mde`), for figures that are means over questions or prompts."""
    n = len(values)
    if not n:
        return {"mean": None, "n": 0}
    m = sum(values) / n
    se = (sum((v - m) ** 2 for v in values) / (n - 1) / n) ** 0.5 if n > 1 else 0.0
    return {"mean": round(m, 6), "n": n, "se": round(se, 6),
            "ci95": [round(m - Z95 * se, 6), round(m + Z95 * se, 6)], "mde": None if se is None else round((Z95 + Z80) * se, 6)}


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
        "cut_off": sum(1 for r in rows if cut_off(r)),  # answers that hit max_new_tokens
    }
    if n:
        rng = random.Random(seed)
        boots = sorted(sum(rng.choices(flags, k=n)) / n for _ in range(n_boot))
        out["ci95"] = [round(100 * boots[int(0.025 * n_boot)], 2), round(100 * boots[int(0.975 * n_boot) - 1], 2)]
    return out


def span_scores(rows: Sequence[Mapping[str, Any]], examples: Sequence[Any]) -> dict[str, Any]:
    """SQuAD's standard exact match and token F1 (official v1.1 normalisation, best over the gold
    answers, averaged over the rows, in %) with their 95% intervals (bootstrap over questions),
    beside a judge's accuracy on span-answer tasks: `span_scores_over_seeds` with one seed."""
    from s3ft.judges.qa import gold_answers

    return span_scores_over_seeds({None: rows}, {e.id: gold_answers(e) for e in examples})


def paired(rows_a: Sequence[Mapping[str, Any]], rows_b: Sequence[Mapping[str, Any]], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Paired comparison of two models judged on the same questions (matched by id):
    the 2x2 table, accuracy difference a - b in points with a paired bootstrap 95% CI, and the
    exact two-sided McNemar p-value (binomial test on the discordant pairs)."""
    from math import comb

    b_by = {r["id"]: r.get("correct") is True for r in rows_b}
    pairs = [(r.get("correct") is True, b_by[r["id"]]) for r in rows_a if r["id"] in b_by]
    n = len(pairs)
    both = sum(a and b for a, b in pairs)
    only_a = sum(a and not b for a, b in pairs)
    only_b = sum(b and not a for a, b in pairs)
    out: dict[str, Any] = {"n": n, "both": both, "only_a": only_a, "only_b": only_b, "neither": n - both - only_a - only_b}
    if not n:
        return out
    diffs = [int(a) - int(b) for a, b in pairs]
    out["diff"] = round(100.0 * sum(diffs) / n, 2)
    rng = random.Random(seed)
    boots = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(n_boot))
    out["ci95"] = [round(100 * boots[int(0.025 * n_boot)], 2), round(100 * boots[int(0.975 * n_boot) - 1], 2)]
    d = only_a + only_b
    if d:
        tail = sum(comb(d, i) for i in range(0, min(only_a, only_b) + 1)) / 2**d
        out["p_value"] = round(min(1.0, 2 * tail), 4)
    else:
        out["p_value"] = 1.0
    return out


def seeds_bootstrap_ci(values: Sequence[Sequence[float]], n_boot: int = 2000, seed: int = 0) -> list[float] | None:
    """95% interval of the mean of a questions x seeds table (each row: one question's values at
    the same seeds) by a two-level bootstrap - the seeds resampled, then the questions - so that it
    carries the spread between training runs as well as between questions. None when empty."""
    import numpy as np

    table = np.asarray(values, dtype=float)
    if table.ndim != 2 or not table.size:
        return None
    n, k = table.shape
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, k, size=(n_boot, k))
    rows = rng.integers(0, n, size=(n_boot, n))
    boots = np.sort(np.array([table[rows[b]][:, cols[b]].mean() for b in range(n_boot)]))
    return [round(float(boots[int(0.025 * n_boot)]), 4), round(float(boots[int(0.975 * n_boot) - 1]), 4)]


def correct_by_seed(rows_by_seed: Mapping[Any, Sequence[Mapping[str, Any]]]) -> dict[Any, dict[Any, float]]:
    """{question id: {seed: 100.0 if judged correct else 0.0}} (accuracy in points) from judged
    rows per training seed."""
    return scores_by_seed(rows_by_seed, lambda r: 100.0 if r.get("correct") is True else 0.0)


def scores_by_seed(rows_by_seed: Mapping[Any, Sequence[Mapping[str, Any]]],
                   score: Callable[[Mapping[str, Any]], float | None]) -> dict[Any, dict[Any, float]]:
    """{question id: {seed: score(row)}} from answer rows per training seed (rows scored None are
    left out)."""
    out: dict[Any, dict[Any, float]] = {}
    for k, rows in rows_by_seed.items():
        for r in rows:
            v = score(r)
            if v is not None:
                out.setdefault(r["id"], {})[k] = v
    return out


def span_scores_over_seeds(rows_by_seed: Mapping[Any, Sequence[Mapping[str, Any]]],
                           golds: Mapping[Any, Sequence[str]]) -> dict[str, Any]:
    """SQuAD exact match and token F1 (`span_scores`'s, in %) of a model trained at one or more
    seeds ({seed: answer rows}; golds: {question id: gold answers}), each the mean over seeds and
    questions with a 95% interval over both (`mean_over_seeds`; with one seed, over the
    questions): {"em", "em_ci95", "f1", "f1_ci95", "span_n"}; span_n counts the questions scored -
    those with a gold answer and an answer at every seed. Empty when there are none."""
    from s3ft.judges.qa import exact_match_score, f1_score

    out: dict[str, Any] = {}
    for name, fn in (("em", exact_match_score), ("f1", f1_score)):
        m = mean_over_seeds(scores_by_seed(rows_by_seed, lambda r, fn=fn: max(
            (100.0 * float(fn(r.get("response") or "", g)) for g in golds.get(r["id"]) or ()), default=None)),
            list(rows_by_seed))
        if not m["n"]:
            return {}
        out.update({name: m["mean"], f"{name}_ci95": m["ci95"], "span_n": m["n"]})
    return out


def mean_over_seeds(by_question: Mapping[Any, Mapping[Any, float]], seeds: Sequence[Any], n_boot: int = 2000,
                    seed: int = 0, digits: int = 2) -> dict[str, Any]:
    """The mean of per-question scores at several training seeds ({question: {seed: score}}, from
    `scores_by_seed`) over the questions scored at every seed, with its 95% interval over seeds and
    questions (`seeds_bootstrap_ci`), rounded to `digits`: {"n": questions, "mean", "ci95"} (no
    mean when n is 0)."""
    table = [[v[k] for k in seeds] for v in by_question.values() if all(k in v for k in seeds)]
    if not table or not seeds:
        return {"n": 0}
    ci = seeds_bootstrap_ci(table, n_boot, seed)
    return {"n": len(table), "mean": round(sum(map(sum, table)) / (len(table) * len(seeds)), digits),
            "ci95": [round(ci[0], digits), round(ci[1], digits)] if ci else None}


def diff_over_seeds(a: Mapping[Any, Mapping[Any, float]], b: Mapping[Any, Mapping[Any, float]], seeds: Sequence[Any],
                    n_boot: int = 2000, seed: int = 0, digits: int = 2) -> dict[str, Any]:
    """Two models' per-question scores at the same training seeds ({question: {seed: score}})
    compared on the same questions: `mean_over_seeds` of a - b over the questions both scored at
    every seed - {"n", "mean" (the difference), "ci95"}."""
    both = {q: {k: a[q][k] - b[q][k] for k in seeds if k in a[q] and k in b[q]} for q in a if q in b}
    return mean_over_seeds(both, seeds, n_boot, seed, digits)


def accuracy_over_seeds_ci(rows_by_seed: Mapping[Any, Sequence[Mapping[str, Any]]]) -> list[float] | None:
    """95% interval (points) of the accuracy of a model trained at several seeds ({seed: judged
    rows}), over seeds and questions (`mean_over_seeds`); questions not judged at every seed are
    left out."""
    return mean_over_seeds(correct_by_seed(rows_by_seed), list(rows_by_seed)).get("ci95")


def paired_over_seeds(rows_a: Mapping[Any, Sequence[Mapping[str, Any]]], rows_b: Mapping[Any, Sequence[Mapping[str, Any]]],
                      n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """`paired` for models trained at several seeds ({seed: judged rows}, the same seeds on both
    sides): per question and seed the difference a - b; diff in points (the mean over both) with a
    95% CI by a two-level bootstrap (seeds, then questions: `diff_over_seeds`). With one seed
    this is `paired`, McNemar's p-value included; with several there is no p-value."""
    seeds = [k for k in rows_a if k in rows_b]
    if len(seeds) == 1:
        return {**paired(rows_a[seeds[0]], rows_b[seeds[0]], n_boot, seed), "seeds": seeds}
    d = diff_over_seeds(correct_by_seed({k: rows_a[k] for k in seeds}), correct_by_seed({k: rows_b[k] for k in seeds}),
                        seeds, n_boot, seed)
    out: dict[str, Any] = {"n": d["n"], "seeds": seeds}
    if d["n"]:
        out["diff"], out["ci95"] = d["mean"], d["ci95"]
    return out


def paired_scores(a: Mapping[str, Mapping[Any, float]], b: Mapping[str, Mapping[Any, float]], n_boot: int = 2000,
                  seed: int = 0) -> dict[str, Any]:
    """Paired comparison of two models on several benchmarks scored per question ({benchmark:
    {question: score in [0, 1]}}, e.g. lm-evaluation-harness samples): diff = mean over the
    benchmarks both have of (mean score a - mean score b), in points, with a paired bootstrap 95%
    CI that resamples each benchmark's questions (matched by key) independently. `benchmarks`
    names what was averaged; n counts the matched questions."""
    import numpy as np

    diffs = []
    names = []
    for bench in sorted(set(a) & set(b)):
        keys = [k for k in a[bench] if k in b[bench]]
        if keys:
            diffs.append(np.array([float(a[bench][k]) - float(b[bench][k]) for k in keys]))
            names.append(bench)
    out: dict[str, Any] = {"n": int(sum(len(d) for d in diffs)), "benchmarks": names}
    if not diffs:
        return out
    out["diff"] = round(100.0 * float(np.mean([d.mean() for d in diffs])), 2)
    rng = np.random.default_rng(seed)
    boots = np.zeros(n_boot)
    for d in diffs:
        boots += d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    boots = np.sort(boots / len(diffs))
    out["ci95"] = [round(100 * float(boots[int(0.025 * n_boot)]), 2), round(100 * float(boots[int(0.975 * n_boot) - 1]), 2)]
    return out
