"""The report's opening answer and the learning-forgetting frontier plots, from compare.json's
`frontier` section (s3ft.compare.sweep, s3ft.frontier): per forgetting measure, every point of
the sweep (in-domain test accuracy against the measure) and each method's Pareto front as a curve;
the answer names the recommended point within the recipe's budget and what it costs, and reads the
fronts at matched forgetting."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from s3ft.frontier import MEASURES

from .fmt import NONE, ci, f1, method_name, signed, table, with_ci
from .plots import DPI, method_color


def plot_name(measure: str) -> str:
    return f"frontier_{measure}"


LOG_SPAN = 30  # the x axis turns logarithmic when the measure's positive values span more than this factor


def log_threshold(points: list[Mapping[str, Any]], measure: str) -> float | None:
    """The smallest positive value of `measure` when its positive values span more than LOG_SPAN times
    (drift from 0.001 to 0.2 nats/token: on a linear axis every point within a small budget sits
    in one pixel column), else None. The axis is then symmetric-log, linear up to that value, so
    the base model at 0 keeps its place."""
    pos = [p[measure] for p in points if (p.get(measure) or 0) > 0]
    return min(pos) if pos and max(pos) / min(pos) > LOG_SPAN else None


def draw(compare: Mapping[str, Any], plots_dir: Path) -> dict[str, Path]:
    """One PNG per forgetting measure the sweep took: plots/frontier_<measure>.png."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fr = compare.get("frontier") or {}
    out: dict[str, Path] = {}
    methods = list(dict.fromkeys(p["method"] for p in fr.get("points", [])))
    for measure, part in (fr.get("measures") or {}).items():
        fig = Figure(figsize=(8.6, 4.4), dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for m in methods:
            pts = [p for p in fr["points"] if p["method"] == m and p.get(measure) is not None]
            if not pts:
                continue
            color = method_color(m, methods)
            for interpolated in (False, True):  # hollow: interpolations toward the base (alpha < 1)
                sub = [p for p in pts if (p.get("alpha", 1.0) < 1) == interpolated]
                ax.scatter([p[measure] for p in sub], [p["in_domain"] for p in sub], s=22, alpha=0.6,
                           facecolors="none" if interpolated else color, edgecolors=color)
            front = part["fronts"].get(m) or []
            if front:  # a line through the front's points, drawn above, hollow or filled as they are
                ax.plot([p[measure] for p in front], [p["in_domain"] for p in front], "-", color=color, lw=1.5,
                        label=method_name(m))
                ax.scatter([p[measure] for p in front], [p["in_domain"] for p in front], s=30, edgecolors=color,
                           facecolors=["none" if p.get("alpha", 1.0) < 1 else color for p in front], zorder=3)
            elif m in ("base",):
                ax.scatter([pts[0][measure]], [pts[0]["in_domain"]], color=color, marker="s", s=40, label=method_name(m))
        budget = fr.get("budget") or {}
        if budget.get("measure") == measure:
            ax.axvline(budget["maximum"], color="#999999", ls="--", lw=1, label="forgetting budget")
            rec = (fr.get("recommendation") or {}).get("test") or {}
            if rec.get(measure) is not None and rec.get("in_domain") is not None:  # chosen on validation
                ax.scatter([rec[measure]], [rec["in_domain"]], marker="*", s=160, facecolors="none",
                           edgecolors="black", linewidths=1, zorder=4, label="recommended (chosen on validation)")
        ax.scatter([], [], s=22, color="#777777", label="trained")  # the marker key
        ax.scatter([], [], s=22, facecolors="none", edgecolors="#777777", label="interpolated toward the base")
        desc, unit = MEASURES[measure]
        threshold = log_threshold(fr["points"], measure)
        if threshold is not None:
            ax.set_xscale("symlog", linthresh=threshold)
            top = max(p[measure] for p in fr["points"] if p.get(measure) is not None)
            ax.set_xlim(-0.2 * threshold, top * 1.6)  # no negative decades; the largest point inside
            decades = [10.0 ** k for k in range(math.ceil(math.log10(threshold / 1.5)), math.ceil(math.log10(top * 1.6)))]
            ax.set_xticks([0.0, *decades], ["0", *(f"{d:g}" for d in decades)])  # none deep in the linear part
        ax.set_xlabel(f"{measure} ({unit}; lower: less forgetting)" + ("; log scale" if threshold is not None else ""))
        ax.set_ylabel(f"in-domain accuracy on {fr.get('split', 'test')} (%)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside: no point hidden
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = plots_dir / f"{plot_name(measure)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, metadata={"Software": None})
        out[plot_name(measure)] = path
    return out


def _point(p: Mapping[str, Any]) -> str:
    if p["method"] == "base":
        return "the base model itself"
    what = (f"{method_name(p['method'])} ({'LoRA' if p.get('peft') else 'full fine-tuning'}, learning rate "
            f"{p['learning_rate']:g}, epoch {p['epoch']:g}")
    return what + (f", interpolated to alpha {p['alpha']:g} toward the base)" if p.get("alpha", 1.0) < 1 else ")")


def _acc(p: Mapping[str, Any] | None) -> str:
    if not p or p.get("in_domain") is None:
        return "not measured"
    ci = p.get("ci95")
    return f"{p['in_domain']:.1f}%" + (f" [95% CI {ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")


def context(compare: Mapping[str, Any]) -> dict[str, Any] | None:
    """{"sentences": the opening answer, "plot": the plot to show with it, "measure"}; None
    without a sweep."""
    fr = compare.get("frontier")
    if not fr or not fr.get("measures"):
        return None
    budget = fr.get("budget") or {}
    measure = budget.get("measure") if budget.get("measure") in fr["measures"] else next(iter(fr["measures"]))
    unit = MEASURES[measure][1]
    out: list[str] = []
    rec = fr.get("recommendation")
    if budget and rec:
        val, test = rec["validation"], rec["test"]
        head = f"Within the forgetting budget ({measure} at most {budget['maximum']:g} {unit}), "
        if test and test.get(measure) is not None:
            text = (head + f"the best in-domain accuracy on the {fr['choice_split']} split ({_acc(val)}) is reached by "
                    f"{_point(rec['point'])}; on the {fr['split']} split it scores {_acc(test)} at a cost of {measure} "
                    f"{test[measure]:.3g} {unit}")
        else:
            text = head + f"the best point is {_point(rec['point'])} ({_acc(val)} on {fr['choice_split']})"
        out.append(text + f" ({rec['within_budget']} of {rec['of']} points are within the budget; "
                   + ("`s3ft export RUN_DIR --point recommended` writes it out as a transformers folder)."
                      if rec["point"]["method"] != "base" else "no fine-tuned point beats the base model there)."))
        vs = rec.get("vs_base") or {}
        if vs.get("diff") is not None and vs.get("ci95"):
            out.append(f"Against the base model on the same {fr['split']} questions it is {signed(vs['diff'])} points "
                       f"[{vs['ci95'][0]:.1f}, {vs['ci95'][1]:.1f}]"
                       + (f" (McNemar p = {vs['p_value']:.2g})" if vs.get("p_value") is not None else "")
                       + ("." if vs["ci95"][0] > 0 else
                          ": below the base model, which is the better choice within this budget." if vs["ci95"][1] < 0 else
                          ": within noise of the base model, so the point chosen within the budget has not clearly "
                          "learned the task."))
    elif budget:
        out.append(f"No point of the sweep stays within the forgetting budget ({measure} at most "
                   f"{budget['maximum']:g} {unit}).")
    chosen = [r for r in ((fr["measures"][measure].get("matched") or {}).get("forgetting") or [])
              if sum(bool(c and c.get("test")) for c in r["choices"].values()) >= 2]
    matched = [r for r in fr["measures"][measure]["matched_forgetting"] if all(v is not None for v in r["scores"].values())]
    if chosen:
        at = next((r for r in chosen if r["level"] == budget.get("maximum")), chosen[-1])
        ranked = sorted(((m, c["test"]) for m, c in at["choices"].items() if c and c.get("test")),
                        key=lambda mt: -mt[1]["in_domain"])
        ref = fr.get("reference")
        diffs = [f"{method_name(ref)} − {method_name(m)} {signed(d['diff'])} points {ci(d['ci95'])}"
                 for m, d in (at.get("paired") or {}).items() if d.get("ci95")]
        out.append(f"At matched forgetting ({measure} at most {at['level']:.3g} {unit}, each method's point chosen on "
                   f"{fr['choice_split']}), {fr['split']} accuracy is "
                   + ", ".join(f"{method_name(m)} {_acc(t)}" for m, t in ranked)
                   + (f"; paired on the same questions, {'; '.join(diffs)}." if diffs else "."))
    elif matched:
        r = matched[-1]
        ranked = sorted(r["scores"].items(), key=lambda kv: -kv[1])
        out.append(f"At matched forgetting ({measure} {r['level']:.3g} {unit}) the fronts reach "
                   + ", ".join(f"{method_name(m)} {v:.1f}%" for m, v in ranked) + ".")
    elif len(fr["measures"][measure]["fronts"]) < 2:
        out.append("One method was swept, so there is no matched-forgetting comparison; the plot shows its front.")
    else:
        out.append("The methods' fronts share no range of forgetting, so they cannot be compared at matched forgetting "
                   "here; the plot shows each one.")
    tops = sorted(((m, f[-1]) for m, f in fr["measures"][measure]["fronts"].items()), key=lambda mp: -mp[1]["in_domain"])
    if len(tops) >= 2:
        out.append("The fronts' highest points (read on " + fr["split"] + ", so optimistic): "
                   + "; ".join(f"{method_name(m)} {p['in_domain']:.1f}% at {measure} {p[measure]:.3g}" for m, p in tops) + ".")
    threshold = log_threshold(fr["points"], measure)
    return {"sentences": " ".join(out), "plot": plot_name(measure), "measure": measure,
            "caption": f"In-domain accuracy ({fr['split']}) against {measure}: every point of the sweep (hollow: "
                       "interpolated toward the base), each method's Pareto front as a line"
                       + (", the budget dashed and the recommended point starred" if budget else "")
                       + (f"; {measure} on a log scale, linear below {threshold:.2g}." if threshold is not None else ".")}


def _where(p: Mapping[str, Any]) -> str:
    """lr / epoch / LoRA or full / alpha of a point, compact."""
    if p["method"] == "base":
        return "base"
    return (f"lr {p['learning_rate']:g}, ep {p['epoch']:g}, {'LoRA' if p.get('peft') else 'full'}"
            + (f", α {p['alpha']:g}" if p.get("alpha", 1.0) < 1 else ""))


def _x(value: Any, nd: int = 3) -> str:
    return NONE if not isinstance(value, (int, float)) else f"{value:.{nd}g}"


def _x_ci(p: Mapping[str, Any], measure: str) -> str:
    iv = (p.get("forgetting_ci95") or {}).get(measure)
    return _x(p.get(measure)) + (f" [{_x(iv[0])}, {_x(iv[1])}]" if iv else "")


def tables(compare: Mapping[str, Any]) -> dict[str, Any] | None:
    """The frontier in numbers, for the report body: per forgetting measure (the budget's first)
    the matched comparisons chosen on the choice split and reported with intervals, and every
    method's Pareto front; None without a sweep."""
    fr = compare.get("frontier")
    if not fr or not fr.get("measures"):
        return None
    budget = (fr.get("budget") or {}).get("measure")
    order = sorted(fr["measures"], key=lambda m: m != budget)
    ref = fr.get("reference")
    grid = fr.get("grid") or {}
    out: list[dict[str, Any]] = []
    for measure in order:
        part = fr["measures"][measure]
        unit = MEASURES[measure][1]
        methods = list(part["fronts"])
        matched = part.get("matched") or {}
        rows = []
        for r in matched.get("forgetting", []):
            cells = [f"≤ {_x(r['level'])}"]
            for m in methods:
                c = (r["choices"].get(m) or {}).get("test")
                cells.append(NONE if not c else f"{with_ci(c['in_domain'], c.get('ci95'))} ({_where(c)})")
            for m in methods:
                if m != ref:
                    d = (r.get("paired") or {}).get(m) or {}
                    cells.append(with_ci(d.get("diff"), d.get("ci95"), signed))
            rows.append(cells)
        others = [m for m in methods if m != ref]
        forgetting_table = table([f"{measure} at most ({unit})"] + [method_name(m) for m in methods]
                                 + [f"{method_name(ref)} − {method_name(m)} (pts)" for m in others], rows,
                                 signed_cols=range(1 + len(methods), 1 + len(methods) + len(others)),
                                 left_cols=1 + len(methods)) if rows else None
        rows = []
        for r in matched.get("score", []):
            cells = [f"≥ {f1(r['score'])}"]
            for m in methods:
                c = (r["choices"].get(m) or {}).get("test")
                cells.append(NONE if not c else f"{_x_ci(c, measure)} at {f1(c['in_domain'])}% ({_where(c)})")
            rows.append(cells)
        score_table = table([f"in-domain on {fr['choice_split']} at least (%)"] + [method_name(m) for m in methods],
                            rows, left_cols=1 + len(methods)) if rows else None
        rows = []
        spans = any(p.get("f1") is not None for f in part["fronts"].values() for p in f)
        for m in methods:
            for p in part["fronts"][m]:
                acc = with_ci(p["in_domain"], p.get("ci95"))
                if p.get("seed_sd") is not None:  # a mean over the sweep's seeds
                    acc = f"{f1(p['in_domain'])} ± {f1(p['seed_sd'])}" + acc[len(f1(p["in_domain"])):]
                span = [with_ci(p.get("em"), p.get("em_ci95")), with_ci(p.get("f1"), p.get("f1_ci95"))] if spans else []
                rows.append([method_name(m), _where(p), acc, *span, _x_ci(p, measure)])
        front_table = table(["method", "point", f"in-domain on {fr['split']} (%)",
                             *(["exact match (%)", "F1"] if spans else []), f"{measure} ({unit})"], rows, left_cols=2)
        out.append({"measure": measure, "description": MEASURES[measure][0], "unit": unit, "plot": plot_name(measure),
                    "matched_forgetting": forgetting_table, "matched_score": score_table, "fronts": front_table})
    n_points = len(fr.get("points", []))
    seeds = fr.get("seeds") or [fr.get("seed")]
    return {"measures": out, "reference": method_name(ref) if ref else None,
            "seed": ("seed " + str(seeds[0]) if len(seeds) == 1 else
                     "seeds " + ", ".join(map(str, seeds)) + ", each point the mean over them (± the seeds' sd)"),
            "split": fr.get("split"), "choice_split": fr.get("choice_split"), "n_points": n_points,
            "grid": "; ".join([f"learning rates {', '.join(f'{v:g}' for v in grid.get('learning_rates', []))}",
                               f"epochs {', '.join(f'{v:g}' for v in grid.get('epochs', []))}",
                               ", ".join("LoRA" if v else "full fine-tuning" for v in grid.get("peft", [])),
                               "interpolation alphas " + (", ".join(f"{v:g}" for v in grid.get("alphas", [])) or "none")])}
