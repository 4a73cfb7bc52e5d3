"""Reading forgetting measures honestly: what changed per question, against chance, and how
small a change the sample can see.

Multiple-choice benchmarks (per question, paired by the question's row in the bundled file):
- flips: right -> wrong (forgotten) and wrong -> right (gained) between the base model and a
  fine-tuned one; the net change is their difference, and two models with the same score can
  have moved many answers.
- chance-adjusted score: (score - chance) / (100 - chance) * 100, where chance is the mean
  expected score of a uniform guess (general.chance_levels): 0 at chance, 100 when perfect.
- informative: a benchmark is informative for a model only when the base model is clearly above
  chance there - the lower end of its 95% interval (score - 1.96 standard errors over the
  questions) lies above chance. On one at chance a fine-tuned model cannot lose what the base
  did not have, and its changes are noise; all benchmarks are still shown, but the headline
  "average change" is the one over the informative benchmarks.

Every change comes with its paired 95% interval and its minimum detectable effect (MDE: 2.80
paired standard errors, the true change the comparison would detect with 80% power at the 5%
level), so "no change" with a wide MDE reads as "too few questions to tell"."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from s3ft.evaluation import Z80, Z95, mean_ci
from s3ft.runs import read_jsonl


def chance_adjusted(score: float, chance: float) -> float:
    """Score rescaled so that chance is 0 and perfect is 100 (both in percent)."""
    return round(100.0 * (score - chance) / (100.0 - chance), 2) if chance < 100 else 0.0


def benchmark_reading(benchmark: str, base_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The base model's score on one benchmark with its interval, the chance level, the
    chance-adjusted score and whether the benchmark is informative (module docstring). Samples
    that do not record their choices (written before they did) get no chance level and are not
    informative."""
    from s3ft.general import chance_levels

    rows = [dict(r) for r in base_rows]
    score = mean_ci([100.0 * float(r["score"]) for r in rows])
    try:
        chance = 100.0 * sum(chance_levels(benchmark, rows)) / len(rows) if rows else None
    except (KeyError, IndexError, TypeError, ZeroDivisionError):  # samples without the choices' count
        chance = None
    if chance is None:
        return {"score": score, "chance": None, "chance_adjusted": None, "informative": False}
    lower = score["mean"] - Z95 * score["se"]
    return {"score": score, "chance": round(chance, 2), "chance_adjusted": chance_adjusted(score["mean"], chance),
            "informative": lower > chance}


def paired_change(model: Mapping[Any, float], base: Mapping[Any, float]) -> dict[str, Any]:
    """Model - base on the questions both answered (per-question scores in [0, 1]): mean change
    in points with its paired 95% interval and MDE, and the flips (right -> wrong, wrong -> right;
    a question counts as right when its score is 1)."""
    keys = [k for k in model if k in base]
    out = mean_ci([100.0 * (float(model[k]) - float(base[k])) for k in keys])
    # The observed paired standard error is 0 when no answer changed, which would claim any change
    # detectable: the MDE uses at least the standard error two independent models at the base
    # model's level would have, sqrt(2 var(base) / n) - conservative, since paired answers correlate.
    if len(keys) > 1:
        b = [100.0 * float(base[k]) for k in keys]
        mb = sum(b) / len(b)
        planning = (2 * sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)) ** 0.5
        out["se_planning"] = round(planning, 6)
        out["mde"] = round((Z95 + Z80) * max(out["se"], planning), 6)
    out["forgotten"] = sum(1 for k in keys if base[k] == 1.0 and model[k] != 1.0)
    out["gained"] = sum(1 for k in keys if base[k] != 1.0 and model[k] == 1.0)
    return out


def informative_average(changes: Mapping[str, Mapping[str, Any]], readings: Mapping[str, Mapping[str, Any]],
                        model: Mapping[str, Mapping[Any, float]], base: Mapping[str, Mapping[Any, float]]) -> dict[str, Any]:
    """The headline change: the mean over the informative benchmarks of each one's mean change,
    with a 95% interval and MDE from the benchmarks' paired standard errors (independent
    questions across benchmarks); `benchmarks` lists those averaged."""
    names = [b for b in changes if readings.get(b, {}).get("informative") and changes[b].get("n")]
    if not names:
        return {"benchmarks": [], "mean": None}
    mean = sum(changes[b]["mean"] for b in names) / len(names)
    se = (sum(changes[b]["se"] ** 2 for b in names) ** 0.5) / len(names)
    planning = (sum(max(changes[b]["se"], changes[b].get("se_planning", 0.0)) ** 2 for b in names) ** 0.5) / len(names)
    from s3ft.evaluation import mde

    return {"benchmarks": names, "mean": round(mean, 4), "se": round(se, 4),
            "ci95": [round(mean - Z95 * se, 4), round(mean + Z95 * se, 4)], "mde": mde(planning),
            "n": sum(changes[b]["n"] for b in names)}


def ifeval_change(model_rows: Sequence[Mapping[str, Any]], base_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """IFEval, model - base, paired by prompt: prompt-level strict and loose (points over the
    prompts, with flips) and instruction-level strict and loose (points over the instructions)."""
    base = {r["id"]: r for r in base_rows}
    pairs = [(r, base[r["id"]]) for r in model_rows if r["id"] in base]
    out: dict[str, Any] = {}
    for level in ("strict", "loose"):
        key = f"prompt_{level}"
        out[key] = paired_change({i: float(m[key]) for i, (m, _) in enumerate(pairs)},
                                 {i: float(b[key]) for i, (_, b) in enumerate(pairs)})
        inst = f"inst_{level}"
        out[inst] = mean_ci([100.0 * (float(x) - float(y)) for m, b in pairs for x, y in zip(m[inst], b[inst])])
    return out


def style_change(model: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """Each style figure of a model minus the base model's (s3ft.style)."""
    return {k: round(model[k] - base[k], 2) for k in model
            if k != "answers" and isinstance(model.get(k), (int, float)) and isinstance(base.get(k), (int, float))}


def general_scores(run_dir: str | Path, name: str) -> dict[str, dict[Any, float]]:
    """Per-question scores of one model's general benchmarks ({benchmark: {dataset row: score}}),
    from the lm-evaluation-harness samples the general stage keeps; {} when there are none."""
    out: dict[str, dict[Any, float]] = {}
    folder = Path(run_dir) / "general" / name
    for f in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        rows = read_jsonl(f)
        if rows and all(isinstance(r.get("score"), (int, float)) for r in rows):
            out[f.stem] = {r.get("row", r.get("doc_id")): float(r["score"]) for r in rows}
    return out


def general_reading(base_run: str | Path, model_run: str | Path, name: str) -> dict[str, Any]:
    """The general benchmarks of model `name` (its samples under model_run/general/name) against
    the base model's (base_run/general/base): {"benchmarks": {benchmark: benchmark_reading},
    "general": {benchmark: paired_change}, "informative_average": ...}; {} without both."""
    base = general_scores(base_run, "base")
    model = general_scores(model_run, name)
    if not base or not model:
        return {}
    readings = {b: benchmark_reading(b, read_jsonl(Path(base_run) / "general" / "base" / f"{b}.jsonl")) for b in base}
    changes = {b: paired_change(model[b], base[b]) for b in model if b in base}
    return {"benchmarks": readings, "general": changes,
            "informative_average": informative_average(changes, readings, model, base)}
