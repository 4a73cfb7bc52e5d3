"""The numbers of the report: aggregates over seeds of everything in compare.json.

Values are means over the seeds present; "sd" is the sample standard deviation over seeds (n-1),
None with fewer than two seeds. A change from base is computed per seed (method minus base, same
seed) and then averaged. The average change over general benchmarks uses only the benchmarks
present for every method (and base) in every seed, so methods are compared on the same benchmarks.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from s3ft.methods import BASE

MIX_KINDS = ("self", "paraphrase", "gold")  # training-target sources, in the tables' order
SAMPLED = "sampled"  # the k-sample methods' source (rft, grape, s3ft_k): a column only where a method has it
ALL_MIX_KINDS = ("self", SAMPLED, "paraphrase", "gold")


def mix_kinds(mix: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The sources a summarised mix shows, in the tables' order: MIX_KINDS, with sampled after self
    when a method has it."""
    sampled = any(SAMPLED in rec.get("percent", {}) for rec in mix.values())
    return [k for k in ALL_MIX_KINDS if k in MIX_KINDS or sampled]
LOGPROB_KINDS = ("gold", "paraphrase", "self")


def num(x: Any) -> float | None:
    """A finite float, or None for anything else (missing, null, NaN, text)."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def mean_sd(values: Iterable[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return mean, math.sqrt(var)


def median(values: Sequence[float]) -> float | None:
    vals = sorted(values)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _seed_key(s: str) -> tuple[int, Any]:
    try:
        return (0, int(s))
    except (TypeError, ValueError):
        return (1, str(s))


def _seeds(compare: Mapping[str, Any]) -> list[str]:
    per_seed = compare.get("per_seed") or {}
    return sorted((str(s) for s in per_seed), key=_seed_key)


def _per_seed(compare: Mapping[str, Any], seed: str) -> Mapping[str, Any]:
    per_seed = compare.get("per_seed") or {}
    return per_seed.get(seed) or per_seed.get(_seed_key(seed)[1]) or {}


def _ordered_methods(compare: Mapping[str, Any], found: Iterable[str]) -> list[str]:
    """Methods in the file's `methods` order, then any others found in the data."""
    listed = [str(m) for m in (compare.get("methods") or [])]
    found_set = set(found)
    out = [m for m in listed if m in found_set]
    out += sorted(m for m in found_set if m not in listed)
    return out


def accuracy_entry(entry: Any) -> dict[str, Any] | None:
    """{acc, k, n, ci} from a {k, n, accuracy, ci95} record (accuracy from k/n if missing)."""
    if not isinstance(entry, Mapping):
        return None
    k, n = num(entry.get("k")), num(entry.get("n"))
    acc = num(entry.get("accuracy"))
    if acc is None and k is not None and n:
        acc = 100.0 * k / n
    if acc is None:
        return None
    ci = entry.get("ci95")
    ci = [num(ci[0]), num(ci[1])] if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
    if ci is not None and None in ci:
        ci = None
    out = {"acc": acc, "k": None if k is None else int(k), "n": None if n is None else int(n), "ci": ci}
    for key in ("em", "f1", "cut_off"):  # SQuAD exact match / F1 and cut-off answers, where recorded
        if num(entry.get(key)) is not None:
            out[key] = num(entry[key])
    for key in ("em_ci95", "f1_ci95"):
        if isinstance(entry.get(key), (list, tuple)) and len(entry[key]) == 2:
            out[key] = [num(v) for v in entry[key]]
    return out


def _aggregate_accuracy(by_seed: Mapping[str, Mapping[str, Any]], seeds: Sequence[str]) -> dict[str, dict]:
    """{method: {per_seed, mean, sd, change, change_sd}} from {seed: {method: record}}."""
    methods: set[str] = set()
    for s in seeds:
        methods.update((by_seed.get(s) or {}).keys())
    out: dict[str, dict] = {}
    for m in methods:
        per = {}
        for s in seeds:
            e = accuracy_entry((by_seed.get(s) or {}).get(m))
            if e is not None:
                per[s] = e
        if not per:
            continue
        mean, sd = mean_sd(e["acc"] for e in per.values())
        out[m] = {"per_seed": per, "mean": mean, "sd": sd}
    base = out.get(BASE)
    for m, agg in out.items():
        diffs = []
        if base is not None:
            diffs = [agg["per_seed"][s]["acc"] - base["per_seed"][s]["acc"]
                     for s in agg["per_seed"] if s in base["per_seed"]]
        agg["change"], agg["change_sd"] = mean_sd(diffs)
    return out


def _general_entry(entry: Any) -> dict[str, Any] | None:
    if not isinstance(entry, Mapping):
        v = num(entry)
        return None if v is None else {"value": v, "metric": None, "stderr": None, "n": None}
    v = num(entry.get("value"))
    if v is None:
        return None
    n = num(entry.get("n"))
    return {"value": v, "metric": entry.get("metric"), "stderr": num(entry.get("stderr")),
            "n": None if n is None else int(n)}


def _summarize_general(compare: Mapping[str, Any], seeds: Sequence[str]) -> dict[str, Any] | None:
    # data[seed][method][benchmark] -> entry
    data: dict[str, dict[str, dict[str, dict]]] = {}
    for s in seeds:
        gen = _per_seed(compare, s).get("general") or {}
        for m, benches in gen.items():
            if not isinstance(benches, Mapping):
                continue
            for b, e in benches.items():
                ent = _general_entry(e)
                if ent is not None:
                    data.setdefault(s, {}).setdefault(str(m), {})[str(b)] = ent
    if not data:
        return None
    methods = _ordered_methods(compare, {m for sd in data.values() for m in sd})
    benchmarks: list[str] = []
    for s in seeds:
        for m in methods:
            for b in (data.get(s, {}).get(m) or {}):
                if b not in benchmarks:
                    benchmarks.append(b)
    # benchmarks present for every method in every seed where that method has general results
    common = []
    for b in benchmarks:
        ok = True
        for m in methods:
            seeds_m = [s for s in seeds if m in data.get(s, {})]
            if not seeds_m or any(b not in data[s][m] for s in seeds_m):
                ok = False
                break
        if ok:
            common.append(b)
    has_base = any(BASE in data.get(s, {}) for s in seeds)
    values: dict[str, dict[str, dict]] = {}
    for b in benchmarks:
        values[b] = {}
        for m in methods:
            per = {s: data[s][m][b] for s in seeds if b in data.get(s, {}).get(m, {})}
            if not per:
                continue
            mean, sd = mean_sd(e["value"] for e in per.values())
            diffs = [per[s]["value"] - data[s][BASE][b]["value"]
                     for s in per if b in data.get(s, {}).get(BASE, {})]
            ch, ch_sd = mean_sd(diffs)
            first = next(iter(per.values()))
            values[b][m] = {"mean": mean, "sd": sd, "change": ch, "change_sd": ch_sd,
                            "metric": first["metric"], "n": first["n"], "per_seed": per}
    avg_change: dict[str, dict] = {}
    if has_base and common:
        for m in methods:
            per_seed_avg = {}
            for s in seeds:
                if m not in data.get(s, {}) or BASE not in data.get(s, {}):
                    continue
                diffs = [data[s][m][b]["value"] - data[s][BASE][b]["value"] for b in common]
                per_seed_avg[s] = sum(diffs) / len(diffs)
            mean, sd = mean_sd(per_seed_avg.values())
            if mean is not None:
                avg_change[m] = {"mean": mean, "sd": sd, "per_seed": per_seed_avg}
    metric_of = {}
    for b in benchmarks:
        metrics = {v["metric"] for v in values[b].values() if v["metric"]}
        metric_of[b] = ", ".join(sorted(metrics)) if metrics else None
    return {"methods": methods, "benchmarks": benchmarks, "common": common, "has_base": has_base,
            "values": values, "avg_change": avg_change, "metric": metric_of}


def _summarize_mix(compare: Mapping[str, Any], seeds: Sequence[str]) -> dict[str, dict] | None:
    per_method: dict[str, dict[str, dict]] = {}
    recs = [rec for s in seeds for rec in (_per_seed(compare, s).get("mix") or {}).values() if isinstance(rec, Mapping)]
    kinds = ALL_MIX_KINDS if any(SAMPLED in (rec.get("counts") or {}) for rec in recs) else MIX_KINDS
    for s in seeds:
        for m, rec in (_per_seed(compare, s).get("mix") or {}).items():
            if not isinstance(rec, Mapping):
                continue
            counts = {k: num((rec.get("counts") or {}).get(k, 0 if k == SAMPLED else None)) for k in kinds}
            n = num(rec.get("n"))
            if n is None and all(c is not None for c in counts.values()):
                n = sum(counts.values())
            pct = {k: num((rec.get("percent") or {}).get(k, 0 if k == SAMPLED else None)) for k in kinds}
            for k in kinds:
                if pct[k] is None and counts[k] is not None and n:
                    pct[k] = 100.0 * counts[k] / n
            if all(v is None for v in pct.values()):
                continue
            per_method.setdefault(str(m), {})[s] = {"percent": pct, "counts": counts, "n": n}
            if isinstance(rec.get("cut_off"), Mapping):  # candidates passed over because they were cut off
                per_method[str(m)][s]["cut_off"] = {k: num(v) for k, v in rec["cut_off"].items()}
    if not per_method:
        return None
    out = {}
    for m in _ordered_methods(compare, per_method):
        per = per_method[m]
        pct = {k: mean_sd(p["percent"][k] for p in per.values()) for k in kinds}
        out[m] = {"per_seed": per, "percent": {k: v[0] for k, v in pct.items()},
                  "sd": {k: v[1] for k, v in pct.items()}}
    return out


def _summarize_logprob(compare: Mapping[str, Any]) -> dict[str, dict] | None:
    lp = compare.get("logprob")
    if not isinstance(lp, Mapping):
        return None
    out = {}
    for kind in LOGPROB_KINDS:
        rows = lp.get(kind) or []
        per_token, total, tokens = [], [], []
        for r in rows:
            if not isinstance(r, Mapping):
                continue
            t, pt, nt = num(r.get("total")), num(r.get("per_token")), num(r.get("tokens"))
            if pt is None and t is not None and nt:
                pt = t / nt
            if t is not None:
                total.append(t)
            if pt is not None:
                per_token.append(pt)
            if nt is not None:
                tokens.append(nt)
        if not total and not per_token:
            continue
        out[kind] = {"n": len(rows), "per_token": per_token, "total": total,
                     "median_per_token": median(per_token), "median_total": median(total),
                     "median_tokens": median(tokens)}
    return out or None


def _summarize_paired(compare: Mapping[str, Any], seeds: Sequence[str]) -> list[dict]:
    rows = []
    for s in seeds:
        paired = _per_seed(compare, s).get("paired") or {}
        for name, sections in paired.items():
            if not isinstance(sections, Mapping):
                continue
            for section, rec in sections.items():
                if isinstance(rec, Mapping):
                    rows.append({"comparison": str(name), "section": str(section), "seed": s, **rec})
    return rows


def summarize(compare: Mapping[str, Any]) -> dict[str, Any]:
    """Aggregates over seeds of everything the report shows (None / empty where absent).

    Keys: seeds, methods, mix, in_domain, cross_task ({task: ...}), general, paired, logprob.
    `in_domain[m]` has per_seed {seed: {acc, k, n, ci}}, mean, sd, change, change_sd;
    `general["avg_change"][m]` has mean, sd, per_seed over `general["common"]` benchmarks."""
    if not isinstance(compare, Mapping):
        raise TypeError(f"compare must be a dict (the content of compare.json), got {type(compare).__name__}")
    seeds = _seeds(compare)
    in_domain_raw = {s: _per_seed(compare, s).get("in_domain") or {} for s in seeds}
    in_domain = _aggregate_accuracy(in_domain_raw, seeds)
    cross_tasks: list[str] = []
    for s in seeds:
        for t in (_per_seed(compare, s).get("cross_task") or {}):
            if t not in cross_tasks:
                cross_tasks.append(str(t))
    cross = {}
    for t in cross_tasks:
        raw = {s: (_per_seed(compare, s).get("cross_task") or {}).get(t) or {} for s in seeds}
        agg = _aggregate_accuracy(raw, seeds)
        if agg:
            cross[t] = agg
    found = set(in_domain)
    for agg in cross.values():
        found.update(agg)
    mix = _summarize_mix(compare, seeds)
    general = _summarize_general(compare, seeds)
    found.update(mix or {})
    found.update((general or {}).get("methods") or [])
    return {
        "seeds": seeds,
        "methods": _ordered_methods(compare, found | set(map(str, compare.get("methods") or []))),
        "mix": mix,
        "in_domain": in_domain or None,
        "cross_task": cross,
        "general": general,
        "paired": _summarize_paired(compare, seeds),
        "logprob": _summarize_logprob(compare),
    }
