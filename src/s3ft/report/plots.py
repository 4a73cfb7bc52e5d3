"""The report's plots, drawn with matplotlib on its own Agg canvases (pyplot's global state is
left alone). Each `plot_*` writes one PNG from `summarize()`'s output, or returns None when its data
are absent.

- `in_domain_vs_drop.png`: in-domain accuracy against the average general-benchmark change;
- `general_changes.png`: change from base per benchmark and method;
- `mix.png`: training-set mix;
- `logprob.png`: log-probability histograms of the training targets (paper Figure 2 analogue).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from s3ft.methods import BASE, BASE_COLOR, METHODS

from .fmt import LOGPROB_LABELS, method_name, signed
from .summary import LOGPROB_KINDS, mix_kinds

DPI = 110
PLOT_NAMES = ("in_domain_vs_drop", "general_changes", "mix", "logprob")
MIX_LABELS = {"self": "own", "sampled": "sampled", "paraphrase": "paraphrase", "gold": "gold"}
KIND_COLORS = {"self": "#2ca02c", "sampled": "#17becf", "paraphrase": "#ff7f0e", "gold": "#1f77b4"}
_EXTRA_COLORS = ["#1f77b4", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939"]


def method_color(method: str, methods: Sequence[str]) -> str:
    """The methods table's colour (grey for base); methods it does not know get the fallback
    colours in their order of appearance in `methods`."""
    if method == BASE:
        return BASE_COLOR
    if method in METHODS:
        return METHODS[method].color
    extras = [m for m in methods if m != BASE and m not in METHODS]
    i = extras.index(method) if method in extras else 0
    return _EXTRA_COLORS[i % len(_EXTRA_COLORS)]


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


def plot_in_domain_vs_drop(summary: dict, path: Path) -> Path | None:
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
        color = method_color(m, summary["methods"])
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


def plot_general_changes(summary: dict, path: Path) -> Path | None:
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
        bars = ax.bar(xs, hs, width * 0.92, color=method_color(m, summary["methods"]), label=method_name(m),
                      yerr=errs if any(errs) else None, capsize=2, error_kw={"elinewidth": 0.9}, zorder=3)
        if n_m * n_g <= 24:  # value labels only while they stay readable (the table has them all)
            for bar, h, e, v in zip(bars, hs, errs, vals):
                if v[j][0] is None:
                    continue
                tip = h + e if h >= 0 else h - e  # beyond the error bar
                ax.annotate(signed(h), (bar.get_x() + bar.get_width() / 2, tip),
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


def plot_mix(summary: dict, path: Path) -> Path | None:
    mix = summary.get("mix")
    if not mix:
        return None
    methods = list(mix)
    fig = _figure(max(5.5, 1.8 + 1.1 * len(methods)), 4.6)
    ax = fig.subplots()
    bottoms = [0.0] * len(methods)
    for kind in mix_kinds(mix):
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


def plot_logprob(summary: dict, path: Path) -> Path | None:
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
        for kind in LOGPROB_KINDS:
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


def draw(summary: dict, plots_dir: Path) -> dict[str, Path]:
    """Every plot whose data are present, as {name: path} in PLOT_NAMES order."""
    makers = {"in_domain_vs_drop": plot_in_domain_vs_drop, "general_changes": plot_general_changes,
              "mix": plot_mix, "logprob": plot_logprob}
    out = {}
    for name in PLOT_NAMES:
        path = makers[name](summary, plots_dir / f"{name}.png")
        if path is not None:
            out[name] = path
    return out
