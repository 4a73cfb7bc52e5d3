"""The run's summary: metrics.json and summary.md, from the stage records in manifest.json."""
from __future__ import annotations

from pathlib import Path

from s3ft.config import S3FTConfig
from s3ft.runs import RunDir, write_json


def summarize(run: RunDir, method_run: RunDir, cfg: S3FTConfig, method: str, judge_name: str) -> Path:
    st = run.manifest().get("stages", {})
    metrics = {
        "task": cfg.task,
        "model": cfg.model,
        "method": method,
        "judge": judge_name,
        "own_correct": {k: st.get("judge", {}).get(k) for k in ("correct", "rows")},
        "paraphrase": {k: st.get("paraphrase", {}).get(k) for k in ("accepted", "filtered", "rows")},
        "mix": st.get(f"build.{method}", {}).get("mix"),
        "train": {k: v for k, v in st.get(f"train.{method}", {}).items() if k not in ("status", "fingerprint", "started", "finished")},
        "in_domain": {name: r.stage_record(f"eval.{name}")["accuracy"]
                      for name, r in (("base", run), (method, method_run)) if r.stage_record(f"eval.{name}")},
        "stage_seconds": {k: v.get("seconds") for k, v in st.items()},
    }
    write_json(run / "metrics.json", metrics)
    lines = [f"# S3FT run: {cfg.task} / {method}", "",
             f"Model `{cfg.model}`, judge `{judge_name}`, {metrics['mix']['n'] if metrics['mix'] else '?'} training examples, "
             f"seed {cfg.seed}. Run directory `{cfg.output_dir}`.", ""]
    if metrics["mix"]:
        c, p = metrics["mix"]["counts"], metrics["mix"]["percent"]
        lines += ["## Training-set mix", "", "| source | rows | % |", "|---|---|---|"]
        lines += [f"| {name} | {c[k]} | {p[k]} |" for k, name in (("self", "own answer"), ("paraphrase", "paraphrased gold"), ("gold", "gold"))]
        lines.append("")
    if metrics["in_domain"]:
        lines += [f"## In-domain accuracy ({cfg.eval_split} split)", "", "| model | correct | accuracy % | 95% CI |", "|---|---|---|---|"]
        for name, a in metrics["in_domain"].items():
            lines.append(f"| {name} | {a['k']}/{a['n']} | {a['accuracy']} | {a.get('ci95')} |")
        lines.append("")
    t = metrics["train"]
    if t:
        lines += ["## Training", "", f"{t.get('global_step')} steps, final loss {t.get('train_loss')}, "
                  f"{t.get('tokens_per_second')} tokens/s, peak RSS {t.get('peak_rss_mb')} MB, "
                  f"{t.get('truncated_rows', 0)} rows truncated to max_length.", ""]
    lines += ["## Stage wall times (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in metrics["stage_seconds"].items()]
    (run / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run / "summary.md"
