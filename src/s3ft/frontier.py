"""Learning-forgetting frontiers: pure functions over the points of a sweep.

A point is one evaluated model of `s3ft compare`'s sweep, a dict
    {"method", "learning_rate", "epoch", "peft", "alpha", "in_domain": accuracy in %, and the
     forgetting measures (MEASURES; None where not measured)}
where alpha is the WiSE-FT interpolation toward the base (1: the trained model itself).
Every forgetting measure is oriented so that lower is better (a drop, a divergence).

- `pareto_front`: the points no other point of the same method beats on both axes (in-domain
  score up, forgetting down), sorted by forgetting; along it both coordinates strictly increase.
- `score_at` / `forgetting_at`: read a front at a forgetting level (the in-domain score it
  reaches) or at a score (the forgetting it pays) by piecewise-linear interpolation between its
  points; None outside the front's range (no extrapolation).
- `matched_forgetting` / `matched_score`: every method's front read at the same levels.
- `recommend`: given a forgetting budget (measure, maximum), the point with the best in-domain
  score within it, chosen on the validation split, with its test numbers beside.
- `matched_choices`: the comparison with intervals - at each forgetting level, each method's
  `recommend`ed point within it; at each in-domain score, each method's least-forgetting point
  that reaches it (`least_forgetting`). Chosen on validation and reported on test, so that the
  test numbers (and their intervals) are not the maximum of noisy test scores.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

# measure -> (description, unit); every one: lower is less forgetting
MEASURES: dict[str, tuple[str, str]] = {
    "ifeval_drop": ("IFEval prompt-level strict accuracy lost against the base model", "points"),
    "kl_general": ("KL(base || model) along the base model's answers to the IFEval prompts", "nats/token"),
    "kl_task": ("KL(base || model) along the base model's answers to the task's evaluation prompts", "nats/token"),
    "mc_drop": ("average multiple-choice score lost against the base model, informative benchmarks only", "points"),
}
# measure -> the recipe key whose instrument takes it
INSTRUMENT: dict[str, str] = {"ifeval_drop": "ifeval", "kl_general": "drift", "kl_task": "drift",
                              "mc_drop": "general_benchmarks"}
# a drift measure -> the set of base-model answers it is taken on (s3ft.stages.drift)
DRIFT_SET: dict[str, str] = {"kl_general": "general", "kl_task": "task"}
KEY = ("method", "learning_rate", "epoch", "peft", "alpha")


def key(point: Mapping[str, Any]) -> tuple:
    """What identifies a point of the sweep: method, learning rate, epoch, LoRA or not, alpha."""
    return tuple(point.get(k) for k in KEY)


def point_name(method: str, epoch: float, alpha: float = 1.0) -> str:
    """A sweep point's model name in its run's stages (eval.<name>, drift.<name>, ...):
    <method>-e<epoch>, with -a<alpha> for an interpolation toward the base."""
    return f"{method}-e{epoch:g}" + (f"-a{alpha:g}" if alpha < 1 else "")


def measures_of(forgetting: Mapping[str, Any], drift: Mapping[str, Any] | None) -> dict[str, float | None]:
    """The forgetting measures of one model from compare.forgetting_results' entry for it and its
    drift record (pipeline.drift_from_base); None where a measure was not taken."""
    def num(x: Any) -> float | None:
        return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None

    ps = ((forgetting or {}).get("ifeval") or {}).get("prompt_strict") or {}
    avg = (forgetting or {}).get("informative_average") or {}
    kl = {k: num((((drift or {}).get(k) or {}).get("kl") or {}).get("mean")) for k in DRIFT_SET.values()}
    drop = num(ps.get("mean"))
    mc = num(avg.get("mean"))
    return {"ifeval_drop": None if drop is None else round(-drop, 4), "kl_general": kl["general"],
            "kl_task": kl["task"], "mc_drop": None if mc is None else round(-mc, 4)}


def average_seeds(points: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One point per (split, KEY) from points trained at several seeds ("seed" on each; a row
    without one counts as a single seed): in-domain and every measure averaged over the seeds,
    `in_domain_by_seed` and `seed_sd` beside, each measure's interval the widest of the seeds'
    ([min lower, max upper]), `answers_by_seed` {seed: judged answers file}. The in-domain ci95
    is the first seed's until the caller recomputes it from the answers (s3ft.compare)."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for p in points:
        groups.setdefault((p.get("split"), *key(p)), []).append(p)
    out = []
    for rows in groups.values():
        first = dict(rows[0])
        seeds = [r.get("seed") for r in rows]
        first["seeds"] = seeds
        first["answers_by_seed"] = {str(r.get("seed")): r.get("answers") for r in rows if r.get("answers")}
        if len(rows) > 1:
            vals = [float(r["in_domain"]) for r in rows]
            mean = sum(vals) / len(vals)
            first["in_domain"] = round(mean, 2)
            first["in_domain_by_seed"] = {str(r.get("seed")): r["in_domain"] for r in rows}
            first["seed_sd"] = round((sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5, 2)
            for m in MEASURES:
                xs = [r.get(m) for r in rows]
                first[m] = round(sum(xs) / len(xs), 6) if all(isinstance(x, (int, float)) for x in xs) else None
            cis = [r.get("forgetting_ci95") or {} for r in rows]
            first["forgetting_ci95"] = {m: [min(c[m][0] for c in cis), max(c[m][1] for c in cis)]
                                        for m in MEASURES if all(m in c for c in cis)}
            first.pop("seed", None)
        out.append(first)
    return out


def intervals_of(forgetting: Mapping[str, Any], drift: Mapping[str, Any] | None) -> dict[str, list[float]]:
    """The 95% intervals of measures_of's values, oriented the same way (a drop is minus the
    change): {measure: [lo, hi]} for the measures that carry one."""
    def ci(x: Any) -> list[float] | None:
        return [float(x[0]), float(x[1])] if isinstance(x, (list, tuple)) and len(x) == 2 else None

    out: dict[str, list[float]] = {}
    change = {"ifeval_drop": (((forgetting or {}).get("ifeval") or {}).get("prompt_strict") or {}).get("ci95"),
              "mc_drop": ((forgetting or {}).get("informative_average") or {}).get("ci95")}
    for k, v in change.items():
        if ci(v):
            out[k] = [round(-ci(v)[1], 4), round(-ci(v)[0], 4)]
    for measure, k in DRIFT_SET.items():
        v = ci(((((drift or {}).get(k) or {}).get("kl") or {}).get("ci95")))
        if v:
            out[measure] = v
    return out


def pareto_front(points: Iterable[Mapping[str, Any]], measure: str, score: str = "in_domain") -> list[dict[str, Any]]:
    """The points (with both values) that no other point dominates - another point with no more
    forgetting and no lower score, better in one of them - sorted by forgetting. Of points with
    identical values the first is kept."""
    pts = [dict(p) for p in points if isinstance(p.get(measure), (int, float)) and isinstance(p.get(score), (int, float))]
    # by forgetting up, then score down: a point is on the front when it beats every score before it
    order = sorted(range(len(pts)), key=lambda i: (pts[i][measure], -pts[i][score], i))
    front: list[dict[str, Any]] = []
    for i in order:
        if not front or pts[i][score] > front[-1][score]:
            front.append(pts[i])
    return front


def fronts(points: Iterable[Mapping[str, Any]], measure: str, score: str = "in_domain") -> dict[str, list[dict[str, Any]]]:
    """pareto_front per method, methods in the order they first appear; methods with no point
    measured are left out."""
    by: dict[str, list[Mapping[str, Any]]] = {}
    for p in points:
        by.setdefault(p["method"], []).append(p)
    out = {m: pareto_front(ps, measure, score) for m, ps in by.items()}
    return {m: f for m, f in out.items() if f}


def _interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """Piecewise-linear y(x) through (xs, ys), xs ascending; None outside [xs[0], xs[-1]]."""
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    for i in range(len(xs)):
        if x == xs[i]:
            return float(ys[i])
        if x < xs[i]:
            t = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
            return float(ys[i - 1] + t * (ys[i] - ys[i - 1]))
    return None


def score_at(front: Sequence[Mapping[str, Any]], level: float, measure: str, score: str = "in_domain") -> float | None:
    """The in-domain score a front reaches at forgetting `level` (interpolated; None outside it)."""
    return _interp([p[measure] for p in front], [p[score] for p in front], level)


def forgetting_at(front: Sequence[Mapping[str, Any]], value: float, measure: str, score: str = "in_domain") -> float | None:
    """The forgetting a front pays to reach in-domain score `value` (interpolated; None outside)."""
    return _interp([p[score] for p in front], [p[measure] for p in front], value)


def common_levels(fs: Mapping[str, Sequence[Mapping[str, Any]]], axis: str) -> list[float]:
    """The values of `axis` where every front can be read: the fronts' own values inside the
    range they all cover (empty when fewer than two fronts or no common range)."""
    if len(fs) < 2:
        return []
    lo = max(f[0][axis] for f in fs.values())
    hi = min(f[-1][axis] for f in fs.values())
    return sorted({p[axis] for f in fs.values() for p in f if lo <= p[axis] <= hi})


def budget_levels(fs: Mapping[str, Sequence[Mapping[str, Any]]], measure: str) -> list[float]:
    """Forgetting levels at which every method has a point within budget: the fronts' own values
    from the largest of their smallest on (a method whose front ends below a level keeps its best
    point there; empty without fronts)."""
    if not fs:
        return []
    lo = max(f[0][measure] for f in fs.values())
    return sorted({p[measure] for f in fs.values() for p in f if p[measure] >= lo})


def matched_forgetting(fs: Mapping[str, Sequence[Mapping[str, Any]]], measure: str, levels: Sequence[float] | None = None,
                       score: str = "in_domain") -> list[dict[str, Any]]:
    """At each forgetting level (default: common_levels), the in-domain score of each method's front."""
    levels = common_levels(fs, measure) if levels is None else levels
    return [{"level": x, "scores": {m: score_at(f, x, measure, score) for m, f in fs.items()}} for x in levels]


def matched_score(fs: Mapping[str, Sequence[Mapping[str, Any]]], measure: str, values: Sequence[float] | None = None,
                  score: str = "in_domain") -> list[dict[str, Any]]:
    """At each in-domain score (default: common_levels), the forgetting each method's front pays."""
    values = common_levels(fs, score) if values is None else values
    return [{"score": y, "forgetting": {m: forgetting_at(f, y, measure, score) for m, f in fs.items()}} for y in values]


def recommend(validation: Sequence[Mapping[str, Any]], test: Sequence[Mapping[str, Any]], measure: str,
              maximum: float) -> dict[str, Any] | None:
    """The point with the best validation in-domain score among those whose `measure` is at most
    `maximum` (ties: less forgetting, then the earlier point), with the same point's test numbers.
    None when no point is within the budget."""
    ok = [(i, p) for i, p in enumerate(validation)
          if isinstance(p.get(measure), (int, float)) and p[measure] <= maximum and isinstance(p.get("in_domain"), (int, float))]
    if not ok:
        return None
    _, best = max(ok, key=lambda ip: (ip[1]["in_domain"], -ip[1][measure], -ip[0]))
    return {**chosen(best, test), "measure": measure, "maximum": maximum, "within_budget": len(ok),
            "of": len(validation)}


def chosen(best: Mapping[str, Any], test: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A point chosen on validation: its KEY, its validation record and the same point's test
    record (None when the test split has none)."""
    on_test = next((p for p in test if key(p) == key(best)), None)
    return {"point": {k: best.get(k) for k in KEY}, "validation": dict(best),
            "test": dict(on_test) if on_test is not None else None}


def least_forgetting(validation: Sequence[Mapping[str, Any]], test: Sequence[Mapping[str, Any]], measure: str,
                     minimum: float) -> dict[str, Any] | None:
    """recommend's counterpart at a matched in-domain score: the point with the least `measure`
    among those whose validation in-domain score is at least `minimum` (ties: the higher score,
    then the earlier point), with its test numbers. None when no point reaches it."""
    ok = [(i, p) for i, p in enumerate(validation)
          if isinstance(p.get(measure), (int, float)) and isinstance(p.get("in_domain"), (int, float))
          and p["in_domain"] >= minimum]
    if not ok:
        return None
    _, best = min(ok, key=lambda ip: (ip[1][measure], -ip[1]["in_domain"], ip[0]))
    return {**chosen(best, test), "measure": measure, "minimum": minimum, "reaching": len(ok), "of": len(validation)}


def spread(values: Iterable[float], most: int = 4) -> list[float]:
    """At most `most` of the sorted distinct `values`, evenly spaced by rank, both ends kept."""
    vs = sorted(set(values))
    if len(vs) <= most:
        return vs
    return [vs[round(i * (len(vs) - 1) / (most - 1))] for i in range(most)]


def matched_choices(validation: Sequence[Mapping[str, Any]], test: Sequence[Mapping[str, Any]], measure: str,
                    levels: Sequence[float], scores: Sequence[float]) -> dict[str, list[dict[str, Any]]]:
    """Per method (the methods of `test` other than base, in order): at each forgetting level its
    `recommend`ed point within it, and at each in-domain score its `least_forgetting` point
    reaching it - {"forgetting": [{"level", "choices": {method: choice or None}}],
                   "score": [{"score", "choices": {...}}]}."""
    methods = list(dict.fromkeys(p["method"] for p in test if p["method"] != "base"))

    def of(ps: Sequence[Mapping[str, Any]], m: str) -> list[Mapping[str, Any]]:
        return [p for p in ps if p["method"] == m]

    return {"forgetting": [{"level": x, "choices": {m: recommend(of(validation, m), of(test, m), measure, x)
                                                   for m in methods}} for x in levels],
            "score": [{"score": y, "choices": {m: least_forgetting(of(validation, m), of(test, m), measure, y)
                                               for m in methods}} for y in scores]}
