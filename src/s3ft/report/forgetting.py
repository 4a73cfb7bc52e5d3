"""The report's forgetting section: IFEval, drift from the base model, output style and the
multiple-choice benchmarks read against chance, each change with its 95% interval and its
minimum detectable effect (MDE; s3ft.forgetting). One row per model (and seed, when several)."""
from __future__ import annotations

from typing import Any, Mapping

from s3ft.methods import BASE

from .fmt import NONE, ci, f1, method_name, signed, table


def _seeds(compare: Mapping[str, Any]) -> list[str]:
    return sorted(compare.get("per_seed") or {}, key=lambda s: (0, int(s)) if str(s).isdigit() else (1, s))


def _rows(compare: Mapping[str, Any], part: str) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(seed, model, entry) of per_seed[seed][part], the base model once (it is not retrained)."""
    seeds = _seeds(compare)
    out, base_seen = [], False
    for s in seeds:
        for m, entry in ((compare["per_seed"][s] or {}).get(part) or {}).items():
            if m == BASE:
                if base_seen:
                    continue
                base_seen = True
            out.append((s, m, entry))
    return out


def _name(m: str, s: str, multi: bool) -> str:
    return method_name(m) if m == BASE or not multi else f"{method_name(m)} (seed {s})"


def _change(c: Mapping[str, Any] | None, nd: int = 1) -> str:
    """+x.x [lo, hi] (MDE y.y)."""
    if not c or c.get("mean") is None:
        return NONE
    return f"{signed(c['mean'], nd)} {ci(c['ci95'])}" + (f", MDE {f1(c['mde'], nd)}" if c.get("mde") is not None else "")


def _ifeval(compare, multi: bool) -> dict | None:
    rows = _rows(compare, "ifeval")
    if not rows:
        return None
    out = []
    for s, m, e in rows:
        f = e["ifeval"]
        ch = ((compare["per_seed"][s].get("forgetting") or {}).get(m) or {}).get("ifeval") or {}
        ps = ch.get("prompt_strict")
        flips = f"-{ps['forgotten']} / +{ps['gained']}" if ps else NONE
        out.append([_name(m, s, multi), str(f["prompts"]),
                    f"{f1(f['prompt_strict']['mean'])} {ci(f['prompt_strict']['ci95'])}", f1(f["inst_strict"]["mean"]),
                    f1(f["prompt_loose"]["mean"]), f1(f["inst_loose"]["mean"]), _change(ps), _change(ch.get("inst_strict")),
                    flips])
    header = ["model", "prompts", "prompt strict [95% CI]", "instr. strict", "prompt loose", "instr. loose",
              "prompt strict vs base", "instr. strict vs base", "prompts lost / gained"]
    return table(header, out, signed_cols=[6, 7])


def _drift(compare, multi: bool) -> dict | None:
    rows = _rows(compare, "drift")
    if not rows:
        return None
    sets = [k for k in ("general", "task") if any(k in e for _, _, e in rows)]
    out = []
    for s, m, e in rows:
        row = [_name(m, s, multi)]
        for k in sets:
            d = e.get(k) or {}
            kl, drop = d.get("kl") or {}, d.get("logp_drop") or {}
            interval = f"[{f1(kl['ci95'][0], 4)}, {f1(kl['ci95'][1], 4)}]" if kl.get("ci95") else ""
            row += [f"{f1(kl.get('mean'), 4)} {interval}".strip(),
                    f1(drop.get("mean"), 3), str(d.get("answers", NONE))]
        out.append(row)
    header = ["model"] + [h for k in sets for h in (f"{k}: KL per token [95% CI]", f"{k}: log-lik. drop", f"{k}: answers")]
    return table(header, out)


def _style(compare, multi: bool) -> dict | None:
    rows = _rows(compare, "ifeval")
    if not rows:
        return None
    out = []
    for s, m, e in rows:
        st = e.get("style") or {}
        out.append([_name(m, s, multi), f1(st.get("words_median"), 0), f"{f1(st.get('words_p10'), 0)}-{f1(st.get('words_p90'), 0)}",
                    f1(st.get("short_pct")), f1(st.get("empty_pct")), f1(st.get("cut_off_pct")), f1(st.get("repetition_pct"))])
    header = ["model", "median words", "p10-p90 words", "<= 3 words %", "empty %", "cut off %", "repeated 4-grams %"]
    return table(header, out)


def _multiple_choice(compare, multi: bool) -> tuple[dict | None, list[dict]]:
    """The benchmarks read against chance (one table, the base model's reading then each model's
    change), and the headline average over the informative benchmarks per model."""
    seeds = _seeds(compare)
    readings = next(((compare["per_seed"][s].get("forgetting") or {}).get("benchmarks") for s in seeds
                     if (compare["per_seed"][s].get("forgetting") or {}).get("benchmarks")), None)
    if not readings:
        return None, []
    models = [(s, m, part) for s in seeds for m, part in (compare["per_seed"][s].get("forgetting") or {}).items()
              if m != "benchmarks" and part.get("general")]
    header = ["benchmark", "base [95% CI]", "chance", "base, chance-adjusted", "informative"] + \
             [f"{_name(m, s, multi)}: change, -lost / +gained" for s, m, _ in models]
    out = []
    for b, r in readings.items():
        row = [b, f"{f1(r['score']['mean'])} {ci(r['score']['ci95'])}", f1(r["chance"]), f1(r["chance_adjusted"]),
               "yes" if r["informative"] else ("no (at chance)" if r["chance"] is not None else "no (chance unknown)")]
        for _, _, part in models:
            c = part["general"].get(b)
            row.append(NONE if not c else f"{_change(c)}; -{c['forgotten']} / +{c['gained']}")
        out.append(row)
    headline = []
    avg_row = ["average over the informative benchmarks", "", "", "", ""]
    for s, m, part in models:
        a = part.get("informative_average") or {}
        avg_row.append(_change(a) if a.get("mean") is not None else "none informative")
        if a.get("mean") is not None:
            headline.append({"model": _name(m, s, multi), "change": signed(a["mean"]), "ci": ci(a["ci95"]),
                             "mde": f1(a["mde"]), "benchmarks": ", ".join(a["benchmarks"])})
    out.append(avg_row)
    return table(header, out, signed_cols=list(range(5, len(header))), bold_last=True), headline


def build(compare: Mapping[str, Any]) -> dict | None:
    """Context of the forgetting section; None when no model has any of its measures."""
    multi = len(_seeds(compare)) > 1
    mc, headline = _multiple_choice(compare, multi)
    parts = {"ifeval": _ifeval(compare, multi), "drift": _drift(compare, multi), "style": _style(compare, multi),
             "multiple_choice": mc, "headline": headline}
    return parts if any(v for v in parts.values()) else None


def answer(compare: Mapping[str, Any], summary: dict) -> str | None:
    """The report's opening for a comparison without a sweep: in two or three sentences, which
    model scores best in-domain (with its interval) and what each pays in drift and instruction
    following, before any table. None without in-domain results."""
    agg = summary.get("in_domain") or {}
    trained = [m for m in agg if m != BASE and agg[m].get("mean") is not None]
    if not trained:
        return None
    multi = len(summary.get("seeds") or []) > 1
    best = max(trained, key=lambda m: agg[m]["mean"])
    first = agg[best]["per_seed"][next(iter(agg[best]["per_seed"]))]
    spread = f" ± {f1(agg[best]['sd'])} over seeds" if multi and agg[best].get("sd") is not None else \
        (f" {ci(first['ci'])}" if first.get("ci") else "")
    out = [f"Best in-domain: **{method_name(best)}** at {f1(agg[best]['mean'])}%{spread}"
           + (f" (base {f1(agg[BASE]['mean'])}%)" if BASE in agg and agg[BASE].get("mean") is not None else "") + "."]
    seed = _seeds(compare)[0] if _seeds(compare) else None
    per = (compare.get("per_seed") or {}).get(seed) or {}
    drift = {m: ((d.get("general") or {}).get("kl") or {}).get("mean") for m, d in (per.get("drift") or {}).items()}
    drift = {m: v for m, v in drift.items() if v is not None}
    if drift:
        lo, hi = min(drift, key=drift.get), max(drift, key=drift.get)
        out.append(f"Drift from the base model on general prompts (KL per token{f', seed {seed}' if multi else ''}): "
                   f"least {method_name(lo)} {f1(drift[lo], 4)}, most {method_name(hi)} {f1(drift[hi], 4)}"
                   + (f"; {method_name(best)} {f1(drift[best], 4)}" if best in drift and best not in (lo, hi) else "") + ".")
    ife = {m: ((part.get("ifeval") or {}).get("prompt_strict") or {}) for m, part in (per.get("forgetting") or {}).items()
           if m != "benchmarks"}
    ife = {m: c for m, c in ife.items() if c.get("mean") is not None}
    if ife:
        lo = min(ife, key=lambda m: ife[m]["mean"])
        mde = max(c.get("mde") or 0 for c in ife.values())
        out.append(f"IFEval prompt-level strict changes from the base range from {signed(ife[lo]['mean'])} points "
                   f"({method_name(lo)}) to {signed(max(c['mean'] for c in ife.values()))}; with this many prompts a "
                   f"change under about {f1(mde)} points cannot be told from none.")
    return " ".join(out)
