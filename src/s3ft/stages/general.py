"""Stage `general`: general-ability benchmarks (lm-evaluation-harness over the bundled data) for
one model -> general/<name>/ (per-benchmark results and per-question samples). Benchmarks scored
by an interrupted run with the same fingerprint are kept."""
from __future__ import annotations

from typing import Any, Callable

from s3ft.config import S3FTConfig
from s3ft.runs import fingerprint
from s3ft.stages.common import Stages, libs_fp, log


def general(stages: Stages, name: str, model: str, model_fp: str, cfg: S3FTConfig,
            free_memory: Callable[[], None] = lambda: None) -> dict[str, Any]:
    from s3ft.general import evaluate_general, scored_benchmarks

    out_dir = stages.run / "general" / name
    stage = f"general.{name}"
    fp = fingerprint(stage, model_fp, sorted(cfg.general_benchmarks), cfg.general_limit, cfg.data_seed,
                     cfg.resolved_dtype(), libs_fp("lm_eval"))

    def work(info: dict) -> None:
        limit = f"seeded subsets of {cfg.general_limit}" if cfg.general_limit else "full sets"
        kept = scored_benchmarks(out_dir)
        log(f"general {name}: {', '.join(cfg.general_benchmarks)} ({limit}) -> {out_dir}"
            + (f" ({', '.join(kept)} already scored)" if kept else ""))
        free_memory()
        res = evaluate_general(model=model, benchmarks=list(cfg.general_benchmarks), limit=cfg.general_limit,
                               seed=cfg.data_seed, output_dir=out_dir, batch_size=cfg.rows_per_call("lm_eval"),
                               device=cfg.device, dtype=cfg.resolved_dtype(), resume=True,
                               revision=cfg.model_options(model)["revision"], trust_remote_code=cfg.trust_remote_code)
        info["results"] = {b: {k: v for k, v in r.items() if k in ("metric", "value", "stderr", "n")} for b, r in res.items()}
        log("general " + name + ": " + ", ".join(f"{b} {r.get('value')}" for b, r in info["results"].items()))

    return stages.run_stage(stage, fp, [out_dir / "general.json"], work)["results"]
