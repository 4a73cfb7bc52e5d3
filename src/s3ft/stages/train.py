"""Stage `train`: fine-tune the base model on a method's training set (TRL SFTTrainer, loss on
the completion only; LoRA by default) -> <method>/model/. Resumes from the last checkpoint of an
interrupted run with the same fingerprint."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from s3ft.config import S3FTConfig
from s3ft.methods import METHODS
from s3ft.runs import CHECKPOINTS, file_fingerprint, fingerprint, read_jsonl
from s3ft.stages.common import Stages, libs_fp, log


def train(stages: Stages, method: str, train_path: Path, cfg: S3FTConfig, model_id: str,
          free_memory: Callable[[], None] = lambda: None, barrier: Callable[[], None] | None = None,
          keep_epochs: tuple[int, ...] = ()) -> Path:
    """`stages.run` is where the model goes (a seed's folder in `s3ft compare`). `free_memory`
    lets go of generation models before training loads its own. `barrier` (multi-process
    training): called by every process once rank 0 has cleared stale outputs, before any process
    looks for a checkpoint to resume. `keep_epochs`: whole epochs whose end-of-epoch model is kept
    too, in <method>/epochs/epoch-N (training.epoch_dir; `s3ft compare`'s sweep)."""
    from s3ft import training

    loss, kl_key = METHODS[method].loss, METHODS[method].kl_weight_key
    kl_weight = getattr(cfg, kl_key) if kl_key else None  # ASFT, KL-SFT: the weight of KL(base || model)
    out_dir = stages.run / method
    model_dir = out_dir / "model"
    name = f"train.{method}"
    knobs = (cfg.train_knobs() | ({"loss_type": loss} if loss != "nll" else {})  # (nll: as before the key existed)
             | ({kl_key: kl_weight} if kl_key else {}) | ({"keep_epochs": sorted(keep_epochs)} if keep_epochs else {}))
    fp = fingerprint(name, model_id, file_fingerprint(train_path), knobs, libs_fp("trl", "peft", "accelerate"))

    def work(info: dict) -> None:
        if barrier is not None:
            barrier()
        rows = read_jsonl(train_path)
        free_memory()
        log(f"train ({method}): {len(rows)} rows, {'LoRA' if cfg.use_peft else 'full fine-tuning'}"
            + (f", {loss} loss" if loss != "nll" else "")
            + (f" + {kl_weight:g} * KL to the base" if kl_key else "") + f" -> {model_dir}")
        metrics = training.train(rows, cfg, out_dir, loss=loss, kl_weight=kl_weight, keep_epochs=tuple(keep_epochs))
        info.update({k: v for k, v in metrics.items() if k != "model_path"})

    # checkpoints of another fingerprint must not be resumed: they go with the stale model
    kept = [training.epoch_dir(out_dir, e) for e in sorted(keep_epochs)]
    stages.run_stage(name, fp, [model_dir, *kept], work, scratch=[out_dir / CHECKPOINTS])
    return model_dir
