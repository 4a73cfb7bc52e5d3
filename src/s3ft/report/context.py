"""The templates' context: every table of the report as rows of already formatted cells, and the
few values its sentences need. Prose and layout live in templates/; nothing here is Markdown or
HTML (cells may hold `code`, **bold** and newlines, which each format renders its way)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from s3ft.methods import BASE

from .forgetting import answer as opening_answer
from .forgetting import build as forgetting_section
from .fmt import LOGPROB_LABELS, NONE, ci, table, compute_time, count, duration, f1, mean_pm, method_name, plain, signed
from .summary import LOGPROB_KINDS, MIX_KINDS, accuracy_entry, mix_kinds, num

# What the paper reports (Mistral-7B-Instruct-v0.2), shown next to ours where the task matches.
PAPER_MIX = {"gsm8k": (49.5, 42.1, 8.4), "mbpp": (30.2, 32.4, 37.4), "nq_open": (66.0, 25.6, 8.1)}
PAPER_IN_DOMAIN = {
    "gsm8k": {"base": 40.3, "sft": 53.4, "sdft": 54.8, "s3ft": 56.9},
    "mbpp": {"base": 22.2, "sft": 32.8, "sdft": 35.8, "s3ft": 39.4},
    "nq_open": {"base": 64.7, "sft": 60.0, "sdft": 67.1, "s3ft": 67.1},
}
PAPER_TASK_NAMES = {"gsm8k": "GSM8K", "mbpp": "MBPP", "nq_open": "NQ"}


def _settings(compare: Mapping[str, Any], summary: dict) -> dict:
    limit = compare.get("general_limit", "absent")
    if "general_benchmarks" in compare and not compare["general_benchmarks"]:
        gen = "none"
    elif limit == "absent":
        gen = "not recorded"
    elif limit is None:
        gen = "full sets"
    else:
        gen = f"seeded subset of {limit} questions per benchmark (the same questions for every method)"
    seeds = compare.get("seeds") or summary["seeds"]
    rows = [
        ["task", str(compare.get("task", "?"))],
        ["model", str(compare.get("model", "?"))],
        ["judge", str(compare.get("judge", "?"))],
        ["evaluation split", str(compare.get("eval_split", "?"))],
        ["methods", ", ".join(method_name(m) for m in summary["methods"]) or "none"],
        ["seeds", ", ".join(map(str, seeds)) or "none"],
        ["general benchmarks", gen],
        ["machine", str(compare.get("machine", "not recorded"))],
        ["compute time", compute_time(compare.get("stage_seconds"))],
        ["wall time of the last invocation", duration(compare.get("wall_seconds"))],
    ]
    if compare.get("created"):
        rows.append(["created", str(compare["created"])])
    return table(["setting", "value"], rows, left_cols=2)


def _hyperparameters(compare: Mapping[str, Any]) -> dict | None:
    hp = compare.get("hyperparameters")
    if not isinstance(hp, Mapping) or not hp:
        return None
    return table(["hyperparameter", "value"], [[str(k), plain(v)] for k, v in hp.items()], left_cols=2)


def _tuning(compare: Mapping[str, Any]) -> dict | None:
    tuning = compare.get("tuning")
    if not isinstance(tuning, Mapping) or not tuning.get("trials"):
        return None
    chosen = tuning.get("chosen", {})
    rows = []
    for t in tuning["trials"]:
        a = accuracy_entry(t.get("accuracy")) or {}
        interval = a.get("ci")
        rows.append([plain(t.get("learning_rate")), plain(t.get("num_train_epochs")),
                     f"{count(a.get('k'))}/{count(a.get('n'))}", f1(a.get("acc")),
                     ci(interval) if interval else "-"])
    return {"split": str(tuning.get("split", "?")), "seed": str(tuning.get("seed", "?")),
            "learning_rate": plain(chosen.get("learning_rate")), "epochs": plain(chosen.get("num_train_epochs")),
            "table": table(["learning rate", "epochs", "correct", "accuracy %", "95% CI"], rows, left_cols=2)}


def _mix(compare: Mapping[str, Any], summary: dict) -> dict | None:
    mix = summary["mix"]
    if not mix:
        return None
    multi = len(summary["seeds"]) > 1
    kinds = mix_kinds(mix)
    names = {"self": "own", "sampled": "sampled", "paraphrase": "paraphrase", "gold": "gold"}
    header = ["method", *(f"{names[k]} %" for k in kinds), "n"]
    if multi:
        header.append(f"counts per seed ({' / '.join(names[k] for k in kinds)})")
    cut = any("cut_off" in p for rec in mix.values() for p in rec["per_seed"].values())
    if cut:
        header.append("passed over, cut off (own / paraphrase)")
    rows = []
    for m, rec in mix.items():
        per = rec["per_seed"]
        if multi:
            cells = [mean_pm(rec["percent"][k], rec["sd"][k]) for k in kinds]
            ns = sorted({int(p["n"]) for p in per.values() if p["n"] is not None})
            n_cell = "/".join(map(str, ns)) if ns else NONE
            counts = "\n".join(
                f"s{s}: " + " / ".join(count(p["counts"][k]) for k in kinds) for s, p in per.items()
            )
            row = [method_name(m), *cells, n_cell, counts]
        else:
            p = next(iter(per.values()))
            cells = [f"{f1(rec['percent'][k])} ({count(p['counts'][k])})" for k in kinds]
            row = [method_name(m), *cells, count(p["n"])]
        if cut:
            row.append(" / ".join(count((p.get("cut_off") or {}).get(k)) for p in list(per.values())[:1] for k in ("self", "paraphrase"))
                       if len(per) == 1 else "\n".join(f"s{s}: " + " / ".join(count((p.get("cut_off") or {}).get(k))
                                                                          for k in ("self", "paraphrase")) for s, p in per.items()))
        rows.append(row)
    task = str(compare.get("task", ""))
    paper = None
    if task in PAPER_MIX:
        paper = {"task": PAPER_TASK_NAMES[task], **dict(zip(MIX_KINDS, map(str, PAPER_MIX[task])))}
    return {"table": table(header, rows), "paper": paper}


def _kn(e: Mapping[str, Any]) -> str | None:
    return f"{e['k']}/{e['n']}" if e["k"] is not None and e["n"] is not None else None


def _extra_cells(agg: Mapping[str, dict], m: str, keys: Sequence[str]) -> list[str]:
    """SQuAD EM / F1 and the share of answers cut off, as mean over the seeds where recorded."""
    per = agg[m]["per_seed"].values()
    out = []
    for key in keys:
        vals = [e[key] for e in per if key in e]
        if key == "cut_off":
            ns = [e["n"] for e in per if key in e and e["n"]]
            out.append(f"{f1(100 * sum(vals) / sum(ns))}" if vals and ns else NONE)
        elif len(vals) == 1 and next(e for e in per if key in e).get(f"{key}_ci95"):  # one seed: with its interval
            out.append(f"{f1(vals[0])} {ci(next(e for e in per if key in e)[f'{key}_ci95'])}")
        else:
            out.append(f1(sum(vals) / len(vals)) if vals else NONE)
    return out


def _accuracy_table(agg: Mapping[str, dict], methods: Sequence[str], n_s: int) -> dict:
    has_base = BASE in agg
    present = {k for a in agg.values() for e in a["per_seed"].values() for k in e}
    extra = [k for k in ("em", "f1", "cut_off") if k in present]
    extra_header = [{"em": "exact match %", "f1": "F1", "cut_off": "cut off %"}[k] for k in extra]
    rows = []
    if n_s <= 1:
        header = ["method", "accuracy %", "k / n", "95% CI"] + (["change vs base"] if has_base else []) + extra_header
        for m in methods:
            if m not in agg:
                continue
            e = next(iter(agg[m]["per_seed"].values()))
            row = [method_name(m), f1(e["acc"]), _kn(e) or NONE, ci(e["ci"]) if e["ci"] else NONE]
            if has_base:
                row.append(NONE if m == BASE else signed(agg[m]["change"]))
            rows.append(row + _extra_cells(agg, m, extra))
    else:
        header = ["method", "accuracy % (mean ± sd)", "per seed: accuracy (k / n)", "per seed: 95% CI"]
        if has_base:
            header.append("change vs base")
        header += extra_header
        for m in methods:
            if m not in agg:
                continue
            per = agg[m]["per_seed"]
            per_lines = "\n".join(f"s{s}: {f1(e['acc'])}" + (f" ({_kn(e)})" if _kn(e) else "") for s, e in per.items())
            ci_lines = "\n".join(f"s{s}: {ci(e['ci']) if e['ci'] else NONE}" for s, e in per.items())
            row = [method_name(m), mean_pm(agg[m]["mean"], agg[m]["sd"]), per_lines, ci_lines]
            if has_base:
                row.append(NONE if m == BASE else mean_pm(agg[m]["change"], agg[m]["change_sd"], signed_=True))
            rows.append(row + _extra_cells(agg, m, extra))
    return table(header, rows, signed_cols=[len(header) - 1 - len(extra)] if has_base else [])


def _in_domain(compare: Mapping[str, Any], summary: dict) -> dict | None:
    agg = summary["in_domain"]
    if not agg:
        return None
    task = str(compare.get("task", ""))
    paper = None
    if task in PAPER_IN_DOMAIN:
        paper = {"task": PAPER_TASK_NAMES[task],
                 "accuracy": [{"method": method_name(m), "value": str(v)} for m, v in PAPER_IN_DOMAIN[task].items()]}
    return {"table": _accuracy_table(agg, summary["methods"], len(summary["seeds"])), "paper": paper}


def _cross_task(summary: dict) -> dict | None:
    cross = summary["cross_task"]
    if not cross:
        return None
    multi = len(summary["seeds"]) > 1
    header = ["method"]
    for t in cross:
        header += [f"{t} accuracy %", f"{t} change vs base"]
    rows = []
    for m in summary["methods"]:
        if not any(m in agg for agg in cross.values()):
            continue
        row = [method_name(m)]
        for agg in cross.values():
            if m not in agg:
                row += [NONE, NONE]
                continue
            a = agg[m]
            if multi:
                acc = mean_pm(a["mean"], a["sd"])
            else:
                e = next(iter(a["per_seed"].values()))
                acc = f1(e["acc"]) + (f" ({_kn(e)})" if _kn(e) else "")
            change = NONE if m == BASE or BASE not in agg else mean_pm(a["change"], a["change_sd"], signed_=True)
            row += [acc, change]
        rows.append(row)
    return {"table": table(header, rows, signed_cols=[2 + 2 * i for i in range(len(cross))])}


def _general(summary: dict) -> dict | None:
    general = summary["general"]
    if not general:
        return None
    methods = general["methods"]
    header = ["benchmark", "n"] + [method_name(m) for m in methods]
    rows = []
    for b in general["benchmarks"]:
        vals = general["values"][b]
        ns = sorted({v["n"] for v in vals.values() if v["n"] is not None})
        label = b + (f" ({general['metric'][b]})" if general["metric"][b] else "")
        if b not in general["common"]:
            label += " *"
        row = [label, "/".join(map(str, ns)) or NONE]
        for m in methods:
            v = vals.get(m)
            if v is None:
                row.append(NONE)
            elif m == BASE or v["change"] is None:
                row.append(f1(v["mean"]))
            else:
                row.append(f"{f1(v['mean'])} ({signed(v['change'])})")
        rows.append(row)
    avg = general["avg_change"]
    if avg:
        row = ["average change from base", ""]
        for m in methods:
            a = None if m == BASE else avg.get(m)
            row.append(NONE if a is None else mean_pm(a["mean"], a["sd"], signed_=True))
        rows.append(row)
    common = general["common"]
    return {
        "table": table(header, rows, signed_cols=range(2, len(header)), bold_last=bool(avg)),
        "has_base": general["has_base"],
        "common": common,
        "excluded": [b for b in general["benchmarks"] if b not in common],
        "headline": [{"method": method_name(m), "change": signed(avg[m]["mean"])}
                     for m in methods if m != BASE and m in avg],
    }


def _paired(summary: dict) -> dict | None:
    if not summary["paired"]:
        return None
    rows = []
    for r in summary["paired"]:
        a, _, b = r["comparison"].partition("_vs_")
        name = f"{method_name(a)} vs {method_name(b)}" if b else r["comparison"]
        interval = r.get("ci95")
        ci_s = ci([num(interval[0]), num(interval[1])]) if isinstance(interval, (list, tuple)) and len(interval) == 2 \
            else NONE
        p = num(r.get("p_value"))
        p_s = NONE if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")
        rows.append([name, r["section"], str(r["seed"]), count(num(r.get("both"))), count(num(r.get("only_a"))),
                     count(num(r.get("only_b"))), count(num(r.get("neither"))), signed(num(r.get("diff"))), ci_s, p_s])
    header = ["comparison", "on", "seed", "both", "only A", "only B", "neither", "diff (pts)", "95% CI", "p"]
    return {"table": table(header, rows, signed_cols=[7])}


def _logprob(summary: dict) -> dict | None:
    lp = summary["logprob"]
    if not lp:
        return None
    rows = []
    for kind in LOGPROB_KINDS:
        if kind in lp:
            v = lp[kind]
            rows.append([LOGPROB_LABELS[kind], str(v["n"]), f1(v["median_per_token"], 2), f1(v["median_total"]),
                         f1(v["median_tokens"], 0) if v["median_tokens"] is not None else NONE])
    header = ["target", "n", "median log-prob per token", "median total log-prob", "median tokens"]
    return {"table": table(header, rows)}


def build(compare: Mapping[str, Any], summary: dict, plots: Mapping[str, Path], skipped: Mapping[str, str],
          out_dir: Path) -> dict[str, Any]:
    """Context of templates/report.*.j2. `plots` maps each plot drawn to its PNG under `out_dir`,
    `skipped` each plot not drawn to the reason (shown in place of the plot)."""
    return {
        "task": str(compare.get("task", "?")),
        "model": str(compare.get("model", "?")),
        "judge": str(compare.get("judge", "?")),
        "eval_split": str(compare.get("eval_split", "?")),
        "n_seeds": len(summary["seeds"]),
        "settings": _settings(compare, summary),
        "hyperparameters": _hyperparameters(compare),
        "tuning": _tuning(compare),
        "mix": _mix(compare, summary),
        "in_domain": _in_domain(compare, summary),
        "cross_task": _cross_task(summary),
        "general": _general(summary),
        "paired": _paired(summary),
        "forgetting": forgetting_section(compare),
        "answer": opening_answer(compare, summary),
        "logprob": _logprob(summary),
        "plots": {name: {"file": path.relative_to(out_dir).as_posix(), "path": path} for name, path in plots.items()},
        "skipped": dict(skipped),
    }
