"""The report's opening answer and the learning-forgetting frontier plots, from compare.json's
`frontier` section (s3ft.compare.sweep, s3ft.frontier): per forgetting measure, every point of
the sweep (in-domain test accuracy against the measure) and each method's Pareto front as a curve;
the answer names the recommended point within the recipe's budget and what it costs, and reads the
fronts at matched forgetting."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from s3ft.frontier import MEASURES

from .fmt import method_name
from .plots import DPI, method_color


def plot_name(measure: str) -> str:
    return f"frontier_{measure}"


def draw(compare: Mapping[str, Any], plots_dir: Path) -> dict[str, Path]:
    """One PNG per forgetting measure the sweep took: plots/frontier_<measure>.png."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fr = compare.get("frontier") or {}
    out: dict[str, Path] = {}
    methods = list(dict.fromkeys(p["method"] for p in fr.get("points", [])))
    for measure, part in (fr.get("measures") or {}).items():
        fig = Figure(figsize=(6.4, 4.2), dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for m in methods:
            pts = [p for p in fr["points"] if p["method"] == m and p.get(measure) is not None]
            if not pts:
                continue
            color = method_color(m, methods)
            ax.scatter([p[measure] for p in pts], [p["in_domain"] for p in pts], color=color, alpha=0.45, s=18)
            front = part["fronts"].get(m) or []
            if front:
                ax.plot([p[measure] for p in front], [p["in_domain"] for p in front], "-o", color=color, ms=4,
                        label=method_name(m))
            elif m in ("base",):
                ax.scatter([pts[0][measure]], [pts[0]["in_domain"]], color=color, marker="s", s=40, label=method_name(m))
        budget = fr.get("budget") or {}
        if budget.get("measure") == measure:
            ax.axvline(budget["maximum"], color="#999999", ls="--", lw=1, label="forgetting budget")
        desc, unit = MEASURES[measure]
        ax.set_xlabel(f"{measure} ({unit}; lower: less forgetting)")
        ax.set_ylabel(f"in-domain accuracy on {fr.get('split', 'test')} (%)")
        ax.legend(fontsize=8, loc="best")
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
        out.append(f"Within the forgetting budget ({measure} at most {budget['maximum']:g} {unit}), the best in-domain "
                   f"accuracy on the {fr['choice_split']} split ({_acc(val)}) is reached by {_point(rec['point'])}; "
                   f"on the {fr['split']} split it scores {_acc(test)} at a cost of {measure} "
                   f"{test[measure]:.3g} {unit}" if test and test.get(measure) is not None else
                   f"Within the forgetting budget ({measure} at most {budget['maximum']:g} {unit}), the best point is "
                   f"{_point(rec['point'])} ({_acc(val)} on {fr['choice_split']}).")
        out[-1] += f" ({rec['within_budget']} of {rec['of']} points are within the budget)."
    elif budget:
        out.append(f"No point of the sweep stays within the forgetting budget ({measure} at most "
                   f"{budget['maximum']:g} {unit}).")
    matched = [r for r in fr["measures"][measure]["matched_forgetting"] if all(v is not None for v in r["scores"].values())]
    if matched:
        r = matched[-1]
        ranked = sorted(r["scores"].items(), key=lambda kv: -kv[1])
        out.append(f"At matched forgetting ({measure} {r['level']:.3g} {unit}) the fronts reach "
                   + ", ".join(f"{method_name(m)} {v:.1f}%" for m, v in ranked) + ".")
    elif len(fr["measures"][measure]["fronts"]) < 2:
        out.append("One method was swept, so there is no matched-forgetting comparison; the plot shows its front.")
    else:
        out.append("The methods' fronts share no range of forgetting, so they cannot be compared at matched forgetting "
                   "here; the plot shows each one.")
    return {"sentences": " ".join(out), "plot": plot_name(measure), "measure": measure,
            "caption": f"In-domain accuracy ({fr['split']}) against {measure}: every point of the sweep, each method's "
                       "Pareto front as a line" + (" and the budget dashed." if budget else ".")}
