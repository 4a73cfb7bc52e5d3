"""Report of a method comparison, built from the metrics file alone (no models needed).

`s3ft compare` writes a `compare.json` with, per seed, the training-set mix of every method,
in-domain and cross-task accuracy, general-benchmark scores and (optionally) paired comparisons
and the base model's log-probabilities of the three kinds of training target. This module turns
that file into the paper's tables and figures:

- training-set mix (paper Table 3), in-domain accuracy (Table 2), cross-task accuracy,
  general benchmarks with each method's change from the base model (Table 4) and the average
  change (the paper's headline: SFT forgets more than S3FT), paired comparisons;
- plots in `plots/`: `in_domain_vs_drop.png` (accuracy against forgetting), `general_changes.png`,
  `mix.png`, `logprob.png` (Figure 2 analogue: gold vs paraphrase vs own answers under the base
  model).

`write_report(compare, out_dir)` writes `report.md`, a self-contained `report.html` (plots
embedded as base64 data URIs, inline CSS, no external references) and the PNGs, and returns
their paths. Sections whose data are absent are replaced by one line saying so. Run by hand:
`python -m s3ft.report compare.json OUT_DIR`.

Statistics: values are means over the seeds present; "sd" is the sample standard deviation over
seeds (n-1), shown only with more than one seed. A change from base is computed per seed (method
minus base, same seed) and then averaged. The average change over general benchmarks uses only
the benchmarks present for every method (and base) in every seed, so methods are compared on the
same benchmarks.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

BASE = "base"
MIX_KINDS = ("self", "paraphrase", "gold")
MIX_LABELS = {"self": "own", "paraphrase": "paraphrase", "gold": "gold"}
LOGPROB_LABELS = {"gold": "gold", "paraphrase": "paraphrase", "self": "own (self)"}
KIND_COLORS = {"self": "#2ca02c", "paraphrase": "#ff7f0e", "gold": "#1f77b4"}
METHOD_NAMES = {"base": "base", "sft": "SFT", "ssr": "SSR", "sdft": "SDFT", "s3ft": "S3FT", "rft": "RFT"}
METHOD_COLORS = {
    "base": "#7f7f7f",
    "sft": "#d62728",
    "ssr": "#9467bd",
    "sdft": "#ff7f0e",
    "s3ft": "#2ca02c",
}
_EXTRA_COLORS = ["#1f77b4", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939"]
DPI = 110
PLOT_NAMES = ("in_domain_vs_drop", "general_changes", "mix", "logprob")

# What the paper reports (Mistral-7B-Instruct-v0.2), shown next to ours where the task matches.
PAPER_MIX = {"gsm8k": (49.5, 42.1, 8.4), "mbpp": (30.2, 32.4, 37.4), "nq_open": (66.0, 25.6, 8.1)}
PAPER_IN_DOMAIN = {
    "gsm8k": {"base": 40.3, "sft": 53.4, "sdft": 54.8, "s3ft": 56.9},
    "mbpp": {"base": 22.2, "sft": 32.8, "sdft": 35.8, "s3ft": 39.4},
    "nq_open": {"base": 64.7, "sft": 60.0, "sdft": 67.1, "s3ft": 67.1},
}
PAPER_TASK_NAMES = {"gsm8k": "GSM8K", "mbpp": "MBPP", "nq_open": "NQ"}


# ----------------------------------------------------------------------------- small helpers


def method_name(method: str) -> str:
    """Display name of a method id (`s3ft` -> `S3FT`); unknown ids are shown as they are."""
    return METHOD_NAMES.get(method, method)


def _method_color(method: str, methods: Sequence[str]) -> str:
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    extras = [m for m in methods if m not in METHOD_COLORS]
    i = extras.index(method) if method in extras else 0
    return _EXTRA_COLORS[i % len(_EXTRA_COLORS)]


def _num(x: Any) -> float | None:
    """A finite float, or None for anything else (missing, null, NaN, text)."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _mean_sd(values: Iterable[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return mean, math.sqrt(var)


def _median(values: Sequence[float]) -> float | None:
    vals = sorted(values)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _f1(x: float | None, nd: int = 1) -> str:
    if x is None:
        return "—"
    s = f"{x:.{nd}f}"
    return "0." + "0" * nd if float(s) == 0 else s


def _signed(x: float | None, nd: int = 1) -> str:
    """+3.0 / -3.0 / 0.0 (no sign when it rounds to zero)."""
    if x is None:
        return "—"
    s = f"{x:+.{nd}f}"
    return "0." + "0" * nd if float(s) == 0 else s


def _mean_pm(mean: float | None, sd: float | None, signed: bool = False) -> str:
    fmt = _signed if signed else _f1
    if mean is None:
        return "—"
    return fmt(mean) if sd is None else f"{fmt(mean)} ± {_f1(sd)}"


def _seed_key(s: str) -> tuple[int, Any]:
    try:
        return (0, int(s))
    except (TypeError, ValueError):
        return (1, str(s))


def _compute_time(groups: Any) -> str:
    """Sum of the finished stages' times, with the split by part (shared pass, tuning, each seed)."""
    if not isinstance(groups, Mapping) or not groups:
        return "not recorded"

    def order(k: str) -> tuple[int, int]:
        return (2, int(k[5:])) if k.startswith("seed-") and k[5:].isdigit() else ({"shared": 0, "tune": 1}.get(k, 3), 0)

    def short(s: float) -> str:
        return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min"

    secs = {k: _num(v) for k, v in groups.items() if _num(v) is not None}
    names = {"shared": "shared pass", "tune": "tuning"}
    parts = ", ".join(f"{names.get(k, k)} {short(v)}" for k, v in sorted(secs.items(), key=lambda kv: order(kv[0])))
    return f"{short(sum(secs.values()))}: {parts}; sum of finished stages over every invocation, each from its last start"


def _duration(seconds: Any) -> str:
    s = _num(seconds)
    if s is None:
        return "not recorded"
    if s < 120:
        return f"{s:.1f} s"
    minutes = s / 60
    if minutes < 120:
        return f"{s:.1f} s ({minutes:.1f} min)"
    return f"{s:.1f} s ({minutes / 60:.2f} h)"


def _plain(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


# ----------------------------------------------------------------------------- summary


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


def _accuracy_entry(entry: Any) -> dict[str, Any] | None:
    """{acc, k, n, ci} from a {k, n, accuracy, ci95} record (accuracy from k/n if missing)."""
    if not isinstance(entry, Mapping):
        return None
    k, n = _num(entry.get("k")), _num(entry.get("n"))
    acc = _num(entry.get("accuracy"))
    if acc is None and k is not None and n:
        acc = 100.0 * k / n
    if acc is None:
        return None
    ci = entry.get("ci95")
    ci = [_num(ci[0]), _num(ci[1])] if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
    if ci is not None and None in ci:
        ci = None
    return {"acc": acc, "k": None if k is None else int(k), "n": None if n is None else int(n), "ci": ci}


def _aggregate_accuracy(by_seed: Mapping[str, Mapping[str, Any]], seeds: Sequence[str]) -> dict[str, dict]:
    """{method: {per_seed, mean, sd, change, change_sd}} from {seed: {method: record}}."""
    methods: set[str] = set()
    for s in seeds:
        methods.update((by_seed.get(s) or {}).keys())
    out: dict[str, dict] = {}
    for m in methods:
        per = {}
        for s in seeds:
            e = _accuracy_entry((by_seed.get(s) or {}).get(m))
            if e is not None:
                per[s] = e
        if not per:
            continue
        mean, sd = _mean_sd(e["acc"] for e in per.values())
        out[m] = {"per_seed": per, "mean": mean, "sd": sd}
    base = out.get(BASE)
    for m, agg in out.items():
        diffs = []
        if base is not None:
            diffs = [agg["per_seed"][s]["acc"] - base["per_seed"][s]["acc"]
                     for s in agg["per_seed"] if s in base["per_seed"]]
        agg["change"], agg["change_sd"] = _mean_sd(diffs)
    return out


def _general_entry(entry: Any) -> dict[str, Any] | None:
    if not isinstance(entry, Mapping):
        v = _num(entry)
        return None if v is None else {"value": v, "metric": None, "stderr": None, "n": None}
    v = _num(entry.get("value"))
    if v is None:
        return None
    n = _num(entry.get("n"))
    return {"value": v, "metric": entry.get("metric"), "stderr": _num(entry.get("stderr")),
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
            mean, sd = _mean_sd(e["value"] for e in per.values())
            diffs = [per[s]["value"] - data[s][BASE][b]["value"]
                     for s in per if b in data.get(s, {}).get(BASE, {})]
            ch, ch_sd = _mean_sd(diffs)
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
            mean, sd = _mean_sd(per_seed_avg.values())
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
    for s in seeds:
        for m, rec in (_per_seed(compare, s).get("mix") or {}).items():
            if not isinstance(rec, Mapping):
                continue
            counts = {k: _num((rec.get("counts") or {}).get(k)) for k in MIX_KINDS}
            n = _num(rec.get("n"))
            if n is None and all(c is not None for c in counts.values()):
                n = sum(counts.values())
            pct = {k: _num((rec.get("percent") or {}).get(k)) for k in MIX_KINDS}
            for k in MIX_KINDS:
                if pct[k] is None and counts[k] is not None and n:
                    pct[k] = 100.0 * counts[k] / n
            if all(v is None for v in pct.values()):
                continue
            per_method.setdefault(str(m), {})[s] = {"percent": pct, "counts": counts, "n": n}
    if not per_method:
        return None
    out = {}
    for m in _ordered_methods(compare, per_method):
        per = per_method[m]
        pct = {k: _mean_sd(p["percent"][k] for p in per.values()) for k in MIX_KINDS}
        out[m] = {"per_seed": per, "percent": {k: v[0] for k, v in pct.items()},
                  "sd": {k: v[1] for k, v in pct.items()}}
    return out


def _summarize_logprob(compare: Mapping[str, Any]) -> dict[str, dict] | None:
    lp = compare.get("logprob")
    if not isinstance(lp, Mapping):
        return None
    out = {}
    for kind in ("gold", "paraphrase", "self"):
        rows = lp.get(kind) or []
        per_token, total, tokens = [], [], []
        for r in rows:
            if not isinstance(r, Mapping):
                continue
            t, pt, nt = _num(r.get("total")), _num(r.get("per_token")), _num(r.get("tokens"))
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
                     "median_per_token": _median(per_token), "median_total": _median(total),
                     "median_tokens": _median(tokens)}
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


# ----------------------------------------------------------------------------- document model


@dataclass
class _Table:
    header: list[str]
    rows: list[list[str]]
    signed_cols: set[int] = field(default_factory=set)  # columns whose +x / -x get coloured in HTML
    bold_last: bool = False
    left_cols: int = 1  # leading columns aligned left (the rest are numbers, aligned right)


class _Doc:
    """A list of blocks rendered identically to Markdown and HTML."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def note(self, text: str) -> None:
        self.blocks.append(("note", text))

    def table(self, t: _Table) -> None:
        self.blocks.append(("table", t))

    def image(self, path: Path, alt: str, caption: str) -> None:
        self.blocks.append(("img", path, alt, caption))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    # --- markdown
    def markdown(self, out_dir: Path) -> str:
        parts = []
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                parts.append("#" * b[1] + " " + b[2])
            elif kind in ("p", "note"):
                parts.append(b[1] if kind == "p" else f"*{b[1]}*")
            elif kind == "table":
                parts.append(_md_table(b[1]))
            elif kind == "img":
                rel = b[1].relative_to(out_dir).as_posix()
                parts.append(f"![{b[2]}]({rel})\n\n*{b[3]}*")
            elif kind == "code":
                parts.append("```bash\n" + b[1] + "\n```")
        return "\n\n".join(parts) + "\n"

    # --- html
    def html(self, title: str) -> str:
        body = []
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                lvl = min(b[1], 4)
                anchor = re.sub(r"[^a-z0-9]+", "-", b[2].lower()).strip("-")
                body.append(f'<h{lvl} id="{anchor}">{_inline_html(b[2])}</h{lvl}>')
            elif kind == "p":
                body.append(f"<p>{_inline_html(b[1])}</p>")
            elif kind == "note":
                body.append(f'<p class="note">{_inline_html(b[1])}</p>')
            elif kind == "table":
                body.append(_html_table(b[1]))
            elif kind == "img":
                data = base64.b64encode(b[1].read_bytes()).decode("ascii")
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b[2])}">'
                    f"<figcaption>{_inline_html(b[3])}</figcaption></figure>"
                )
            elif kind == "code":
                body.append(f"<pre><code>{html.escape(b[1])}</code></pre>")
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body)
            + "\n</main>\n</body>\n</html>\n"
        )


_CSS = """\
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1f2328; background: #fff; margin: 0; line-height: 1.5; font-size: 15px; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 1.8em; border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.35em; border-bottom: 1px solid #d0d7de; padding-bottom: .25em; margin-top: 1.8em; }
h3 { font-size: 1.1em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: right; vertical-align: top; }
th.l, td.l { text-align: left; }
th { background: #f0f3f6; font-weight: 600; }
tbody tr:nth-child(even) { background: #f8fafc; }
tr.total td { font-weight: 600; border-top: 2px solid #8c959f; }
td { font-variant-numeric: tabular-nums; white-space: nowrap; }
.neg { color: #b42318; }
.pos { color: #1a7f37; }
code { background: #f0f3f6; padding: 1px 4px; border-radius: 4px; font-size: 90%; }
pre { background: #f6f8fa; padding: 10px 14px; border-radius: 6px; overflow-x: auto; }
pre code { background: none; padding: 0; }
p.note { color: #57606a; font-style: italic; margin: .3em 0 .8em; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e7eb; }
figcaption { color: #57606a; font-size: 13px; margin-top: 4px; }
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def _md_table(t: _Table) -> str:
    def fmt(row, bold=False):
        cells = [_md_cell(c) for c in row]
        if bold:
            cells = [f"**{c}**" if c and c != "—" else c for c in cells]
        return "| " + " | ".join(cells) + " |"

    n_left = min(t.left_cols, len(t.header))
    lines = [fmt(t.header), "|" + "|".join([":---"] * n_left + ["---:"] * (len(t.header) - n_left)) + "|"]
    for i, row in enumerate(t.rows):
        lines.append(fmt(row, bold=t.bold_last and i == len(t.rows) - 1))
    return "\n".join(lines)


_INLINE_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_SIGNED = re.compile(r"(?<![\w.])([+-]\d+(?:\.\d+)?)")


def _inline_html(text: str) -> str:
    out = html.escape(text, quote=False)
    out = _INLINE_CODE.sub(r"<code>\1</code>", out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    return out.replace("\n", "<br>")


def _signed_html(text: str) -> str:
    def repl(m: re.Match) -> str:
        cls = "neg" if m.group(1).startswith("-") else "pos"
        return f'<span class="{cls}">{m.group(1)}</span>'

    return _SIGNED.sub(repl, _inline_html(text))


def _html_table(t: _Table) -> str:
    def attr(j: int) -> str:
        return ' class="l"' if j < t.left_cols else ""

    head = "".join(f"<th{attr(j)}>{_inline_html(h)}</th>" for j, h in enumerate(t.header))
    rows = []
    for i, row in enumerate(t.rows):
        cells = "".join(
            f"<td{attr(j)}>{_signed_html(c) if j in t.signed_cols else _inline_html(c)}</td>"
            for j, c in enumerate(row)
        )
        cls = ' class="total"' if t.bold_last and i == len(t.rows) - 1 else ""
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"


# ----------------------------------------------------------------------------- plots


def _figure(width: float, height: float):
    """A matplotlib Figure that does not touch pyplot's global state (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def _plot_in_domain_vs_drop(summary: dict, path: Path) -> Path | None:
    general, in_domain = summary.get("general"), summary.get("in_domain")
    if not general or not in_domain or not general["avg_change"]:
        return None
    methods = [m for m in summary["methods"] if m in in_domain and m in general["avg_change"]]
    if not methods:
        return None
    fig = _figure(7.6, 5.4)
    ax = fig.subplots()
    xs, ys, x_ends, y_ends = [], [], [], []
    for m in methods:
        x, xsd = general["avg_change"][m]["mean"], general["avg_change"][m]["sd"]
        y, ysd = in_domain[m]["mean"], in_domain[m]["sd"]
        xs.append(x)
        ys.append(y)
        x_ends += [x - (xsd or 0), x + (xsd or 0)]  # the axes hold the error bars too
        y_ends += [y - (ysd or 0), y + (ysd or 0)]
        color = _method_color(m, summary["methods"])
        ax.errorbar(x, y, xerr=xsd, yerr=ysd, fmt="o", ms=9, color=color, ecolor=color, elinewidth=1.4,
                    capsize=4, label=method_name(m), zorder=3)
        ax.annotate(method_name(m), (x, y), xytext=(8, 6), textcoords="offset points", fontsize=11,
                    fontweight="bold", color=color, zorder=4)
    ax.axvline(0, color="#999999", lw=1, ls="--", zorder=1)
    if BASE in in_domain:
        ax.axhline(in_domain[BASE]["mean"], color="#999999", lw=1, ls=":", zorder=1)
    # margins so that labels fit
    xspan = max(max(x_ends) - min(x_ends), 1.0)
    yspan = max(max(y_ends) - min(y_ends), 2.0)
    ax.set_xlim(min(min(x_ends), 0) - 0.15 * xspan, max(max(x_ends), 0) + 0.3 * xspan)
    ax.set_ylim(min(y_ends) - 0.2 * yspan, max(y_ends) + 0.25 * yspan)
    n_b = len(general["common"])
    ax.set_xlabel(f"average change from base on {n_b} general benchmark{'s' if n_b != 1 else ''} (points)")
    ax.set_ylabel("in-domain accuracy (%)")
    ax.set_title("In-domain accuracy vs general-ability change", fontsize=13)
    ax.text(0.98, 0.97, "up and right is better", transform=ax.transAxes, ha="right", va="top",
            fontsize=10, color="#444444", style="italic", zorder=5,
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "#cccccc"})
    if len(summary["seeds"]) > 1:
        ax.text(0.02, 0.03, f"error bars: sd over {len(summary['seeds'])} seeds", transform=ax.transAxes,
                fontsize=9, color="#555555")
    ax.grid(True, alpha=0.3, zorder=0)
    fig.tight_layout()
    return _save(fig, path)


def _plot_general_changes(summary: dict, path: Path) -> Path | None:
    general = summary.get("general")
    if not general or not general["has_base"]:
        return None
    methods = [m for m in general["methods"] if m != BASE]
    groups = [b for b in general["benchmarks"]
              if any(general["values"][b].get(m, {}).get("change") is not None for m in methods)]
    if not methods or not groups:
        return None
    labels = [b if b in general["common"] else f"{b}*" for b in groups]
    rows = [[general["values"][b].get(m, {}) for m in methods] for b in groups]
    vals = [[(c.get("change"), c.get("change_sd")) for c in r] for r in rows]
    if general["avg_change"]:
        labels.append("average")
        vals.append([(general["avg_change"].get(m, {}).get("mean"), general["avg_change"].get(m, {}).get("sd"))
                     for m in methods])
    n_g, n_m = len(labels), len(methods)
    fig = _figure(min(11.5, max(7.0, 1.1 + n_g * (0.35 + 0.28 * n_m))), 4.8)
    ax = fig.subplots()
    width = 0.8 / n_m
    for j, m in enumerate(methods):
        xs = [i - 0.4 + width * (j + 0.5) for i in range(n_g)]
        hs = [v[j][0] if v[j][0] is not None else 0.0 for v in vals]
        errs = [v[j][1] if v[j][1] is not None else 0.0 for v in vals]
        bars = ax.bar(xs, hs, width * 0.92, color=_method_color(m, summary["methods"]), label=method_name(m),
                      yerr=errs if any(errs) else None, capsize=2, error_kw={"elinewidth": 0.9}, zorder=3)
        if n_m * n_g <= 24:  # value labels only while they stay readable (the table has them all)
            for bar, h, e, v in zip(bars, hs, errs, vals):
                if v[j][0] is None:
                    continue
                tip = h + e if h >= 0 else h - e  # beyond the error bar
                ax.annotate(_signed(h), (bar.get_x() + bar.get_width() / 2, tip),
                            xytext=(0, 3 if h >= 0 else -3), textcoords="offset points",
                            ha="center", va="bottom" if h >= 0 else "top", fontsize=7, color="#333333")
    if general["avg_change"]:
        ax.axvspan(n_g - 1.5, n_g - 0.5, color="#f2f2f2", zorder=0)
    ax.axhline(0, color="black", lw=0.8, zorder=2)
    ax.set_xticks(range(n_g))
    ax.set_xticklabels(labels, fontsize=10 if n_g <= 9 else 8)
    ax.set_xlim(-0.6, n_g - 0.4)
    lo, hi = ax.get_ylim()
    pad = 0.12 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel("change from base (points)")
    ax.set_title("General benchmarks: change from the base model", fontsize=13)
    ax.grid(True, axis="y", alpha=0.3, zorder=0)
    ax.legend(ncol=min(n_m, 5), fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def _plot_mix(summary: dict, path: Path) -> Path | None:
    mix = summary.get("mix")
    if not mix:
        return None
    methods = list(mix)
    fig = _figure(max(5.5, 1.8 + 1.1 * len(methods)), 4.6)
    ax = fig.subplots()
    bottoms = [0.0] * len(methods)
    for kind in MIX_KINDS:
        hs = [mix[m]["percent"][kind] or 0.0 for m in methods]
        width = 0.6 if len(methods) >= 3 else 0.45
        bars = ax.bar(range(len(methods)), hs, width, bottom=bottoms, color=KIND_COLORS[kind],
                      label=MIX_LABELS[kind], edgecolor="white", linewidth=0.8, zorder=3)
        for bar, h, b in zip(bars, hs, bottoms):
            if h >= 5:
                ax.text(bar.get_x() + bar.get_width() / 2, b + h / 2, f"{h:.1f}", ha="center", va="center",
                        fontsize=9, color="white", fontweight="bold")
        bottoms = [b + h for b, h in zip(bottoms, hs)]
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels([method_name(m) for m in methods], fontsize=11)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of training targets")
    n_s = len(summary["seeds"])
    ax.set_title("Training-set mix" + (f" (mean over {n_s} seeds)" if n_s > 1 else ""), fontsize=13)
    ax.legend(title="target", fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.grid(True, axis="y", alpha=0.3, zorder=0)
    fig.tight_layout()
    return _save(fig, path)


def _plot_logprob(summary: dict, path: Path) -> Path | None:
    lp = summary.get("logprob")
    if not lp:
        return None
    import numpy as np

    fig = _figure(11.0, 4.4)
    axes = fig.subplots(1, 2)
    panels = [("per_token", "median_per_token", "mean log-probability per token (nats)", "{:.2f}"),
              ("total", "median_total", "total sequence log-probability (nats)", "{:.1f}")]
    for ax, (key, med_key, xlabel, fmt) in zip(axes, panels):
        data = {k: v[key] for k, v in lp.items() if v[key]}
        if not data:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            continue
        allv = np.concatenate([np.asarray(v, dtype=float) for v in data.values()])
        n_bins = int(min(40, max(8, math.sqrt(len(allv)) * 1.5)))
        lo, hi = float(allv.min()), float(allv.max())
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, n_bins + 1)
        for kind in ("gold", "paraphrase", "self"):
            if kind not in data:
                continue
            vals = np.asarray(data[kind], dtype=float)
            med = lp[kind][med_key]
            color = KIND_COLORS[kind]
            label = f"{LOGPROB_LABELS[kind]} (n={len(vals)}), median {fmt.format(med)}"
            ax.hist(vals, bins=edges, histtype="step", lw=2, color=color, label=label, zorder=3)
            ax.hist(vals, bins=edges, histtype="stepfilled", alpha=0.12, color=color, zorder=2)
            ax.axvline(med, color=color, ls="--", lw=1.2, zorder=4)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("responses")
        ax.grid(True, alpha=0.3, zorder=0)
        ax.legend(fontsize=8.5, loc="upper left", frameon=True, framealpha=0.9)
        lo_y, hi_y = ax.get_ylim()
        ax.set_ylim(lo_y, hi_y * 1.35)  # room for the legend
    fig.suptitle("Log-probability of training targets under the base model (higher = closer to the model)",
                 fontsize=12)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------- sections


def _header(doc: _Doc, compare: Mapping[str, Any], summary: dict) -> None:
    task = compare.get("task", "?")
    doc.h(1, f"S3FT comparison: {task} on {compare.get('model', '?')}")
    limit = compare.get("general_limit", "absent")
    if limit == "absent":
        gen = "not recorded"
    elif limit is None:
        gen = "full sets"
    else:
        gen = f"seeded subset of {limit} questions per benchmark (the same questions for every method)"
    seeds = compare.get("seeds") or summary["seeds"]
    rows = [
        ["task", str(task)],
        ["model", str(compare.get("model", "?"))],
        ["judge", str(compare.get("judge", "?"))],
        ["evaluation split", str(compare.get("eval_split", "?"))],
        ["methods", ", ".join(method_name(m) for m in summary["methods"]) or "none"],
        ["seeds", ", ".join(map(str, seeds)) or "none"],
        ["general benchmarks", gen],
        ["machine", str(compare.get("machine", "not recorded"))],
        ["compute time", _compute_time(compare.get("stage_seconds"))],
        ["wall time of the last invocation", _duration(compare.get("wall_seconds"))],
    ]
    if compare.get("created"):
        rows.append(["created", str(compare["created"])])
    doc.table(_Table(["setting", "value"], rows, left_cols=2))
    hp = compare.get("hyperparameters")
    doc.h(3, "Hyperparameters")
    if isinstance(hp, Mapping) and hp:
        doc.table(_Table(["hyperparameter", "value"], [[str(k), _plain(v)] for k, v in hp.items()], left_cols=2))
    else:
        doc.note("No hyperparameters recorded.")
    tuning = compare.get("tuning")
    if isinstance(tuning, Mapping) and tuning.get("trials"):
        ch = tuning.get("chosen", {})
        doc.h(3, "How the learning rate and epochs were chosen")
        doc.p(f"Once, for SFT, on the {tuning.get('split', '?')} split (training seed {tuning.get('seed', '?')}), "
              f"then frozen for every method: learning rate {_plain(ch.get('learning_rate'))}, "
              f"{_plain(ch.get('num_train_epochs'))} epoch(s).")
        rows = []
        for t in tuning["trials"]:
            a = _accuracy_entry(t.get("accuracy")) or {}
            ci = a.get("ci")
            rows.append([_plain(t.get("learning_rate")), _plain(t.get("num_train_epochs")),
                         f"{_int(a.get('k'))}/{_int(a.get('n'))}", _f1(a.get("acc")),
                         f"[{_f1(ci[0])}, {_f1(ci[1])}]" if ci else "-"])
        doc.table(_Table(["learning rate", "epochs", "correct", "accuracy %", "95% CI"], rows, left_cols=2))


def _section_mix(doc: _Doc, compare: Mapping[str, Any], summary: dict, plots: dict) -> None:
    doc.h(2, "Training-set mix (paper Table 3)")
    mix = summary["mix"]
    if not mix:
        doc.note("No training-set mix in compare.json; table and plot omitted.")
        return
    n_s = len(summary["seeds"])
    doc.p("Where each training target comes from: the model's **own** correct answer, its validated "
          "**paraphrase** of the gold answer, or the **gold** answer itself. "
          + ("Percentages are means over seeds; counts per seed in the last column." if n_s > 1
             else "Counts in parentheses."))
    header = ["method", "own %", "paraphrase %", "gold %", "n"]
    if n_s > 1:
        header.append("counts per seed (own / paraphrase / gold)")
    rows = []
    for m, rec in mix.items():
        per = rec["per_seed"]
        if n_s > 1:
            cells = [_mean_pm(rec["percent"][k], rec["sd"][k]) for k in MIX_KINDS]
            ns = sorted({int(p["n"]) for p in per.values() if p["n"] is not None})
            n_cell = "/".join(map(str, ns)) if ns else "—"
            counts = "\n".join(
                f"s{s}: " + " / ".join(_int(p["counts"][k]) for k in MIX_KINDS) for s, p in per.items()
            )
            rows.append([method_name(m), *cells, n_cell, counts])
        else:
            p = next(iter(per.values()))
            cells = [f"{_f1(rec['percent'][k])} ({_int(p['counts'][k])})" for k in MIX_KINDS]
            rows.append([method_name(m), *cells, _int(p["n"])])
    doc.table(_Table(header, rows))
    task = str(compare.get("task", ""))
    if task in PAPER_MIX:
        a, b, c = PAPER_MIX[task]
        doc.note(f"Paper (S3FT, Mistral-7B-Instruct-v0.2, {PAPER_TASK_NAMES[task]}): own {a} / paraphrase {b} / "
                 f"gold {c} %.")
    _plot_block(doc, plots, "mix", "Training-set mix",
                "Stacked share of own / paraphrase / gold targets per method.")


def _int(x: float | None) -> str:
    return "—" if x is None else str(int(round(x)))


def _acc_rows(agg: Mapping[str, dict], methods: Sequence[str], n_s: int) -> tuple[list[str], list[list[str]]]:
    has_base = BASE in agg
    if n_s <= 1:
        header = ["method", "accuracy %", "k / n", "95% CI"] + (["change vs base"] if has_base else [])
        rows = []
        for m in methods:
            if m not in agg:
                continue
            e = next(iter(agg[m]["per_seed"].values()))
            kn = f"{e['k']}/{e['n']}" if e["k"] is not None and e["n"] is not None else "—"
            ci = f"[{_f1(e['ci'][0])}, {_f1(e['ci'][1])}]" if e["ci"] else "—"
            row = [method_name(m), _f1(e["acc"]), kn, ci]
            if has_base:
                row.append("—" if m == BASE else _signed(agg[m]["change"]))
            rows.append(row)
        return header, rows
    header = ["method", "accuracy % (mean ± sd)", "per seed: accuracy (k / n)", "per seed: 95% CI"]
    if has_base:
        header.append("change vs base")
    rows = []
    for m in methods:
        if m not in agg:
            continue
        per = agg[m]["per_seed"]
        per_lines = "\n".join(
            f"s{s}: {_f1(e['acc'])}" + (f" ({e['k']}/{e['n']})" if e["k"] is not None and e["n"] is not None else "")
            for s, e in per.items()
        )
        ci_lines = "\n".join(
            f"s{s}: [{_f1(e['ci'][0])}, {_f1(e['ci'][1])}]" if e["ci"] else f"s{s}: —" for s, e in per.items()
        )
        row = [method_name(m), _mean_pm(agg[m]["mean"], agg[m]["sd"]), per_lines, ci_lines]
        if has_base:
            row.append("—" if m == BASE else _mean_pm(agg[m]["change"], agg[m]["change_sd"], signed=True))
        rows.append(row)
    return header, rows


def _section_in_domain(doc: _Doc, compare: Mapping[str, Any], summary: dict) -> None:
    doc.h(2, "In-domain accuracy (paper Table 2)")
    agg = summary["in_domain"]
    if not agg:
        doc.note("No in-domain results in compare.json; table omitted.")
        return
    n_s = len(summary["seeds"])
    doc.p(f"Accuracy on the `{compare.get('eval_split', '?')}` split of `{compare.get('task', '?')}`, scored "
          f"by the `{compare.get('judge', '?')}` judge. "
          + ("Mean ± sd over seeds; change vs base is averaged over per-seed differences."
             if n_s > 1 else "95% CI as recorded by the evaluation (bootstrap over questions)."))
    header, rows = _acc_rows(agg, summary["methods"], n_s)
    doc.table(_Table(header, rows, signed_cols={len(header) - 1} if BASE in agg else set()))
    task = str(compare.get("task", ""))
    if task in PAPER_IN_DOMAIN:
        ref = ", ".join(f"{method_name(m)} {v}" for m, v in PAPER_IN_DOMAIN[task].items())
        doc.note(f"Paper (Mistral-7B-Instruct-v0.2, {PAPER_TASK_NAMES[task]}): {ref}.")


def _section_cross(doc: _Doc, summary: dict) -> None:
    doc.h(2, "Cross-task accuracy")
    cross = summary["cross_task"]
    if not cross:
        doc.note("No cross-task results in compare.json (not run); table omitted.")
        return
    n_s = len(summary["seeds"])
    doc.p("Accuracy on the other tasks (not trained on): a fine-tuned model should not lose them. "
          + ("Mean ± sd over seeds." if n_s > 1 else "Counts in parentheses."))
    header = ["method"]
    for t in cross:
        header += [f"{t} accuracy %", f"{t} change vs base"]
    rows = []
    signed = {2 + 2 * i for i in range(len(cross))}
    for m in summary["methods"]:
        if not any(m in agg for agg in cross.values()):
            continue
        row = [method_name(m)]
        for t, agg in cross.items():
            if m not in agg:
                row += ["—", "—"]
                continue
            a = agg[m]
            if n_s > 1:
                acc = _mean_pm(a["mean"], a["sd"])
            else:
                e = next(iter(a["per_seed"].values()))
                acc = _f1(e["acc"]) + (f" ({e['k']}/{e['n']})" if e["k"] is not None and e["n"] is not None else "")
            change = "—" if m == BASE or BASE not in agg else _mean_pm(a["change"], a["change_sd"], signed=True)
            row += [acc, change]
        rows.append(row)
    doc.table(_Table(header, rows, signed_cols=signed))


def _section_general(doc: _Doc, compare: Mapping[str, Any], summary: dict, plots: dict) -> None:
    doc.h(2, "General benchmarks (paper Table 4)")
    general = summary["general"]
    if not general:
        doc.note("No general-benchmark results in compare.json (not run); table and plots omitted.")
        return
    methods = general["methods"]
    n_s = len(summary["seeds"])
    doc.p("Score of each model on general-ability benchmarks (in %; the lm-evaluation-harness metric "
          "follows the benchmark's name), " + ("mean over seeds, " if n_s > 1 else "")
          + "with the change from the base model in parentheses. Forgetting shows as negative changes.")
    header = ["benchmark", "n"] + [method_name(m) for m in methods]
    rows = []
    for b in general["benchmarks"]:
        vals = general["values"][b]
        ns = sorted({v["n"] for v in vals.values() if v["n"] is not None})
        label = b + (f" ({general['metric'][b]})" if general["metric"][b] else "")
        if b not in general["common"]:
            label += " *"
        row = [label, "/".join(map(str, ns)) or "—"]
        for m in methods:
            v = vals.get(m)
            if v is None:
                row.append("—")
            elif m == BASE or v["change"] is None:
                row.append(_f1(v["mean"]))
            else:
                row.append(f"{_f1(v['mean'])} ({_signed(v['change'])})")
        rows.append(row)
    avg = general["avg_change"]
    if avg:
        row = ["average change from base", ""]
        for m in methods:
            if m == BASE:
                row.append("—")
            else:
                a = avg.get(m)
                row.append("—" if a is None else _mean_pm(a["mean"], a["sd"], signed=True))
        rows.append(row)
    doc.table(_Table(header, rows, signed_cols=set(range(2, len(header))), bold_last=bool(avg)))
    common = general["common"]
    if not general["has_base"]:
        doc.note("No base-model scores, so no changes from base can be shown.")
    elif not common:
        doc.note("No benchmark was evaluated for every method, so no average change is shown.")
    else:
        excluded = [b for b in general["benchmarks"] if b not in common]
        text = (f"Average change from base: mean over the {len(common)} benchmark"
                f"{'s' if len(common) != 1 else ''} present for all methods ({', '.join(common)})")
        if n_s > 1:
            text += f", computed per seed, then mean ± sd over {n_s} seeds"
        text += "."
        if excluded:
            text += f" * not in the average (missing for some method or seed): {', '.join(excluded)}."
        doc.note(text)
        parts = [f"{method_name(m)} {_signed(avg[m]['mean'])}" for m in methods if m != BASE and m in avg]
        if parts:
            doc.p("**Headline** (average change from base, points): " + ", ".join(parts)
                  + ". Paper (Mistral-7B): SFT drops by up to 4.4 points on average, S3FT by 2.5.")
    _plot_block(doc, plots, "in_domain_vs_drop", "In-domain accuracy vs general change",
                "Each method's in-domain accuracy (y) against its average general-benchmark change from "
                "base (x); up and right is better" + ("; error bars are sd over seeds." if n_s > 1 else "."))
    _plot_block(doc, plots, "general_changes", "Change from base per benchmark",
                "Change from the base model per benchmark and method (points); the shaded group is the "
                "average over the benchmarks present for all methods.")


def _section_paired(doc: _Doc, summary: dict) -> None:
    doc.h(2, "Paired comparisons")
    rows = summary["paired"]
    if not rows:
        doc.note("No paired comparisons in compare.json; table omitted.")
        return
    doc.p("Two methods scored on the same questions. For `A vs B` on in_domain: **both** right, **only A** "
          "right, **only B** right, **neither**; diff = accuracy(A) - accuracy(B) in points with its paired "
          "bootstrap 95% CI; p-value of McNemar's exact test (a small p means the difference is unlikely "
          "to be chance). On general: diff = mean over the general benchmarks of score(A) - score(B) on "
          "the same questions, in points, with a paired bootstrap 95% CI (questions resampled within each "
          "benchmark); `X vs base` on general is X's forgetting, with its interval.")
    table_rows = []
    for r in rows:
        a, _, b = r["comparison"].partition("_vs_")
        name = f"{method_name(a)} vs {method_name(b)}" if b else r["comparison"]
        ci = r.get("ci95")
        ci_s = f"[{_f1(_num(ci[0]))}, {_f1(_num(ci[1]))}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else "—"
        p = _num(r.get("p_value"))
        p_s = "—" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")
        table_rows.append([name, r["section"], str(r["seed"]), _int(_num(r.get("both"))),
                           _int(_num(r.get("only_a"))), _int(_num(r.get("only_b"))), _int(_num(r.get("neither"))),
                           _signed(_num(r.get("diff"))), ci_s, p_s])
    doc.table(_Table(["comparison", "on", "seed", "both", "only A", "only B", "neither", "diff (pts)",
                      "95% CI", "p"], table_rows, signed_cols={7}))


def _section_logprob(doc: _Doc, summary: dict, plots: dict) -> None:
    doc.h(2, "Log-probability of training targets (paper Figure 2)")
    lp = summary["logprob"]
    if not lp:
        doc.note("No log-probabilities in compare.json; table and plot omitted.")
        return
    doc.p("Sequence log-probability of each kind of target under the base model. The paper's point: "
          "the model's own answers and its paraphrases are far more likely under the model than the "
          "gold answers, so training on them moves the model less (its MBPP example: gold -84.3, "
          "own -36.6).")
    rows = []
    for kind in ("gold", "paraphrase", "self"):
        if kind in lp:
            v = lp[kind]
            rows.append([LOGPROB_LABELS[kind], str(v["n"]), _f1(v["median_per_token"], 2), _f1(v["median_total"]),
                         _f1(v["median_tokens"], 0) if v["median_tokens"] is not None else "—"])
    doc.table(_Table(["target", "n", "median log-prob per token", "median total log-prob", "median tokens"],
                     rows))
    _plot_block(doc, plots, "logprob", "Log-probability histograms",
                "Histograms of per-token (left) and total (right) log-probability for gold, paraphrase and "
                "own targets; dashed lines are medians.")


def _plot_block(doc: _Doc, plots: dict, name: str, alt: str, caption: str) -> None:
    path = plots.get(name)
    if path is not None:
        doc.image(path, alt, caption)
    else:
        reason = plots.get(f"_{name}_why", "its data are absent")
        doc.note(f"Plot `{name}.png` skipped: {reason}.")


def _how_to_read(doc: _Doc) -> None:
    doc.h(2, "How to read this")
    doc.p("SFT trains on the gold answers; SSR on the model's own correct answers (else gold); SDFT on "
          "the model's paraphrases of the gold (else gold); S3FT on own correct answers, else "
          "paraphrases, else gold. A good method raises in-domain accuracy over the base model "
          "(Table 2) while keeping the general-benchmark scores close to the base model's (Table 4: "
          "changes near zero, small average drop). In the scatter plot that is up (accuracy) and right "
          "(less forgetting). The mix table shows how much of the training set stayed in the model's "
          "own words; the log-probability histograms show why that matters. With few seeds and small "
          "evaluation sets, differences of a few points are within noise: check the CIs and the paired "
          "comparisons before concluding.")
    doc.p("Regenerate this report from the metrics file (no models needed):")
    doc.code("python -m s3ft.report compare.json OUT")


# ----------------------------------------------------------------------------- entry points


def write_report(compare: dict, out_dir: Path) -> dict[str, Path]:
    """Write report.md, report.html and plots/*.png into `out_dir` from a compare.json dict.

    Returns {"markdown": ..., "html": ..., and one entry per plot written, keyed by its name
    (in_domain_vs_drop, general_changes, mix, logprob)}. Plots whose data are absent are skipped,
    and so are all plots when matplotlib is not installed (the report says so)."""
    out_dir = Path(out_dir)
    summary = summarize(compare)
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Any] = {}
    makers = {
        "in_domain_vs_drop": _plot_in_domain_vs_drop,
        "general_changes": _plot_general_changes,
        "mix": _plot_mix,
        "logprob": _plot_logprob,
    }
    try:
        import matplotlib  # noqa: F401

        have_mpl = True
    except ImportError:
        have_mpl = False
    for name, maker in makers.items():
        target = plots_dir / f"{name}.png"
        if target.exists():
            target.unlink()  # never leave a stale plot from an earlier report
        if not have_mpl:
            plots[f"_{name}_why"] = "matplotlib is not installed (pip install 's3ft[eval]')"
            continue
        path = maker(summary, target)
        if path is not None:
            plots[name] = path

    doc = _Doc()
    _header(doc, compare, summary)
    _section_mix(doc, compare, summary, plots)
    _section_in_domain(doc, compare, summary)
    _section_cross(doc, summary)
    _section_general(doc, compare, summary, plots)
    _section_paired(doc, summary)
    _section_logprob(doc, summary, plots)
    _how_to_read(doc)

    md_path = out_dir / "report.md"
    html_path = out_dir / "report.html"
    md_path.write_text(doc.markdown(out_dir), encoding="utf-8")
    title = f"S3FT comparison: {compare.get('task', '?')} on {compare.get('model', '?')}"
    html_path.write_text(doc.html(title), encoding="utf-8")
    result: dict[str, Path] = {"markdown": md_path, "html": html_path}
    result.update({k: v for k, v in plots.items() if not k.startswith("_")})
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m s3ft.report",
        description="Write report.md, report.html and plots/*.png from a compare.json (no models needed).",
    )
    parser.add_argument("compare", type=Path, help="compare.json written by `s3ft compare`")
    parser.add_argument("out_dir", type=Path, help="folder for report.md, report.html and plots/")
    args = parser.parse_args(argv)
    try:
        compare = json.loads(args.compare.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"error: {args.compare}: no such file", file=sys.stderr)
        return 2
    except json.JSONDecodeError as e:
        print(f"error: {args.compare}: not valid JSON ({e})", file=sys.stderr)
        return 2
    if not isinstance(compare, dict):
        print(f"error: {args.compare}: expected a JSON object", file=sys.stderr)
        return 2
    paths = write_report(compare, args.out_dir)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
