"""The run's summary: metrics.json and summary.md, from the stage records in manifest.json; the
headline numbers (training-set mix, in-domain accuracy, general benchmarks and their change from
the base model, IFEval, answer style and drift) also go to the experiment trackers of `report_to`, through accelerate's tracker
classes (log_to_trackers)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from s3ft import forgetting
from s3ft.config import S3FTConfig
from s3ft.runs import RunDir, write_json
from s3ft.stages.common import log


def summarize(run: RunDir, method_run: RunDir, cfg: S3FTConfig, method: str, judge_name: str) -> Path:
    st = run.manifest().get("stages", {})
    metrics = {
        "task": cfg.task,
        "model": cfg.model,
        "method": method,
        "judge": judge_name,
        "own_correct": {k: st.get("judge", {}).get(k) for k in ("correct", "rows")},
        "paraphrase": {k: st.get("paraphrase", {}).get(k) for k in ("accepted", "filtered", "rows")},
        **({"samples": {k: st["judge.samples"].get(k) for k in ("rows", "correct", "inputs_with_correct", "distinct_correct")}}
           if "judge.samples" in st else {}),
        "mix": st.get(f"build.{method}", {}).get("mix"),
        "train": {k: v for k, v in st.get(f"train.{method}", {}).items() if k not in ("status", "fingerprint", "started", "finished")},
        "in_domain": {name: r.stage_record(f"eval.{name}")["accuracy"]
                      for name, r in (("base", run), (method, method_run)) if r.stage_record(f"eval.{name}")},
        **general_results(run, method_run, method),
        **forgetting_results(run, method_run, method),
        "stage_seconds": {k: v.get("seconds") for k, v in st.items()},
    }
    write_json(run / "metrics.json", metrics)
    lines = [f"# S3FT run: {cfg.task} / {method}", "",
             f"Model `{cfg.model}`, judge `{judge_name}`, {metrics['mix']['n'] if metrics['mix'] else '?'} training examples, "
             f"seed {cfg.seed}. Run directory `{cfg.output_dir}`.", ""]
    if metrics["mix"]:
        c, p = metrics["mix"]["counts"], metrics["mix"]["percent"]
        lines += ["## Training-set mix", "", "| source | rows | % |", "|---|---|---|"]
        names = {"self": "own answer", "sampled": "correct sampled answer", "paraphrase": "paraphrased gold", "gold": "gold"}
        lines += [f"| {names.get(k, k)} | {c[k]} | {p[k]} |" for k in c]
        lines.append("")
    if metrics["in_domain"]:
        lines += [f"## In-domain accuracy ({cfg.eval_split} split)", "", "| model | correct | accuracy % | 95% CI |", "|---|---|---|---|"]
        for name, a in metrics["in_domain"].items():
            lines.append(f"| {name} | {a['k']}/{a['n']} | {a['accuracy']} | {a.get('ci95')} |")
        lines.append("")
    if metrics.get("general"):
        models, change = list(metrics["general"]), metrics["general_change"]
        lines += ["## General benchmarks", "", f"| benchmark | {' | '.join(models)} | change |", "|---" * (len(models) + 2) + "|"]
        for b in sorted({b for r in metrics["general"].values() for b in r}):
            lines.append(f"| {b} | " + " | ".join(str(metrics["general"][m].get(b, "")) for m in models)
                         + f" | {change.get(b, '')} |")
        if "mean" in change:
            lines.append(f"| mean change | {' | '.join('' for _ in models)} | {change['mean']} |")
        reading = metrics.get("general_reading") or {}
        avg = reading.get("informative_average") or {}
        if reading:
            at_chance = [b for b, r in reading["benchmarks"].items() if not r["informative"]]
            lines += ["", "Read against chance (docs/forgetting.md): "
                      + (f"mean change over the informative benchmarks ({', '.join(avg['benchmarks'])}) "
                         f"{avg['mean']:+.2f} points, 95% CI {avg['ci95']}, MDE {avg['mde']}"
                         if avg.get("mean") is not None else "no benchmark is informative")
                      + (f"; the base model is at chance on {', '.join(at_chance)}" if at_chance else "") + ". "
                      + "Flips (right -> wrong / wrong -> right): "
                      + ", ".join(f"{b} -{c['forgotten']} / +{c['gained']}" for b, c in reading["general"].items()) + "."]
        lines.append("")
    if metrics.get("ifeval"):
        lines += ["## IFEval and output style (IFEval prompts)", "",
                  "| model | prompt strict | instr. strict | prompt loose | instr. loose | median words | <= 3 words % | cut off % |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in metrics["ifeval"].items():
            f, st = r["ifeval"], r["style"]
            lines.append(f"| {name} | {f['prompt_strict']['mean']:.1f} {f['prompt_strict']['ci95']} | {f['inst_strict']['mean']:.1f} | "
                         f"{f['prompt_loose']['mean']:.1f} | {f['inst_loose']['mean']:.1f} | {st['words_median']} | "
                         f"{st['short_pct']} | {st['cut_off_pct']} |")
        lines.append("")
    if metrics.get("drift"):
        lines += [f"## Drift of {method} from the base model", "",
                  "| prompts | answers | KL(base || tuned) per token [95% CI] | log-likelihood drop per token |", "|---|---|---|---|"]
        for k, d in metrics["drift"].items():
            if d["answers"]:
                lines.append(f"| {k} | {d['answers']} | {d['kl']['mean']:.4f} {d['kl']['ci95']} | {d['logp_drop']['mean']:.4f} |")
        lines.append("")
    t = metrics["train"]
    if t:
        lines += ["## Training", "", f"{t.get('global_step')} steps, final loss {t.get('train_loss')}, "
                  f"{t.get('tokens_per_second')} tokens/s, peak RSS {t.get('peak_rss_mb')} MB, "
                  f"{t.get('truncated_rows', 0)} rows truncated to max_length.", ""]
    lines += ["## Stage wall times (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in metrics["stage_seconds"].items()]
    (run / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    log_to_trackers(cfg.report_to, tracker_values(metrics, method), run / "tensorboard", f"{run.path.name}.{method}",
                    step=metrics["train"].get("global_step"))
    return run / "summary.md"


def general_results(run: RunDir, method_run: RunDir, method: str) -> dict[str, Any]:
    """{"general": {model: {benchmark: value}}, "general_change": {benchmark: fine-tuned minus
    base, "mean": their mean}} from the general stages' records (negative change: ability the
    fine-tuning cost); {} when no general benchmarks ran."""
    general = {}
    for name, r in (("base", run), (method, method_run)):
        results = (r.stage_record(f"general.{name}") or {}).get("results") or {}
        values = {b: x.get("value") for b, x in results.items() if isinstance(x, dict) and _number(x.get("value"))}
        if values:
            general[name] = values
    if not general:
        return {}
    base, tuned = general.get("base", {}), general.get(method, {})
    change = {b: round(tuned[b] - base[b], 6) for b in sorted(set(base) & set(tuned))}
    if change:
        change["mean"] = round(sum(change.values()) / len(change), 6)
    out: dict[str, Any] = {"general": general, "general_change": change}
    reading = forgetting.general_reading(run.path, method_run.path, method)  # per question, against chance
    if reading:
        out["general_reading"] = reading
    return out


def forgetting_results(run: RunDir, method_run: RunDir, method: str) -> dict[str, Any]:
    """{"ifeval": {model: {"ifeval": figures, "style": style}}, "drift": {set: summary}} from the
    ifeval and drift stages' records; parts that did not run are left out."""
    out: dict[str, Any] = {}
    for name, r in (("base", run), (method, method_run)):
        rec = r.stage_record(f"ifeval.{name}") or {}
        if rec.get("ifeval"):
            out.setdefault("ifeval", {})[name] = {"ifeval": rec["ifeval"], "style": rec.get("style") or {}}
    drift = (method_run.stage_record(f"drift.{method}") or {}).get("drift")
    if drift:
        out["drift"] = drift
    return out


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def tracker_values(metrics: dict[str, Any], method: str) -> dict[str, float]:
    """The summary as flat scalars for experiment trackers, under summary/: the mix (percent per
    source, rows), in-domain accuracy (percent) per model and its change, general benchmarks per
    model and their change from the base model."""
    out: dict[str, Any] = {}
    mix = metrics.get("mix") or {}
    out |= {f"summary/mix/{k}_percent": v for k, v in (mix.get("percent") or {}).items()}
    out["summary/mix/rows"] = mix.get("n")
    acc = {name: (a or {}).get("accuracy") for name, a in (metrics.get("in_domain") or {}).items()}
    out |= {f"summary/in_domain/{name}": v for name, v in acc.items()}
    if _number(acc.get("base")) and _number(acc.get(method)):
        out["summary/in_domain/change"] = acc[method] - acc["base"]
    out |= {f"summary/general/{b}/{name}": v for name, res in (metrics.get("general") or {}).items() for b, v in res.items()}
    out |= {f"summary/general_change/{b}": v for b, v in (metrics.get("general_change") or {}).items()}
    out["summary/general_change/informative_mean"] = \
        ((metrics.get("general_reading") or {}).get("informative_average") or {}).get("mean")
    for name, r in (metrics.get("ifeval") or {}).items():
        out |= {f"summary/ifeval/{m}/{name}": (r["ifeval"].get(m) or {}).get("mean")
                for m in ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")}
        out[f"summary/style/words_median/{name}"] = r["style"].get("words_median")
    out |= {f"summary/drift/{k}_kl": (d.get("kl") or {}).get("mean") for k, d in (metrics.get("drift") or {}).items()}
    return {k: float(v) for k, v in out.items() if _number(v)}


def log_to_trackers(report_to: str, values: dict[str, float], logging_dir: Path, run_name: str,
                    step: int | None = None) -> list[str]:
    """Log `values` once to each tracker of `report_to` (transformers' names; none: nothing; all:
    every tracker installed) through accelerate's tracker classes: TensorBoard into
    `logging_dir`/`run_name` (the TENSORBOARD_LOGGING_DIR environment variable, which
    transformers' training logs follow too, moves it), W&B into the project WANDB_PROJECT
    (default huggingface, as transformers' training logs) as run `run_name`, the others by
    `run_name`; at `step` (the training's last step). A tracker that fails is reported and
    skipped - the numbers are in metrics.json. Returns the trackers that took them."""
    names = [t.strip() for t in report_to.split(",") if t.strip() and t.strip() != "none"]
    if not names or not values:
        return []
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    if "all" in names:
        names = [str(t) for t in get_available_trackers()]
    logging_dir = Path(os.environ.get("TENSORBOARD_LOGGING_DIR") or logging_dir)
    sent = []
    for name in dict.fromkeys(names):
        cls = LOGGER_TYPE_TO_CLASS.get(name)
        if cls is None:
            log(f"report_to {name}: accelerate has no tracker for it, so the summary metrics are not sent there "
                "(they are in metrics.json)")
            continue
        try:
            if name == "wandb":
                tracker = cls(os.environ.get("WANDB_PROJECT", "huggingface"), name=run_name)
            elif cls.requires_logging_directory:
                tracker = cls(run_name, str(logging_dir))
            else:
                tracker = cls(run_name)
            tracker.start()
            tracker.log(values, step=step)
            tracker.finish()
            sent.append(name)
        except Exception as e:  # noqa: BLE001 - a tracker's own failure (no network, no login) must not lose the run
            log(f"warning: report_to {name}: the summary metrics could not be sent ({type(e).__name__}: "
                f"{str(e).strip()[:200]}); they are in metrics.json")
    if sent:
        log(f"summary metrics ({len(values)} values) sent to {', '.join(sent)}"
            + (f" (TensorBoard: {logging_dir / run_name})" if "tensorboard" in sent else ""))
    return sent
