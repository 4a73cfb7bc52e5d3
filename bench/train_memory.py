"""Where training's peak memory goes: peak RSS per step and phase, LoRA vs full fine-tuning.

    python bench/train_memory.py [--rows 24] [--dtype auto] [--out ...]

`s3ft.training.build_trainer` on the first N gold SQuAD rows (SmolLM2-135M-Instruct, CPU, --dtype:
auto is what s3ft computes in on this machine; batch 8, the hyperparameters of bench/train_speed.py), trained with a thread sampling the
process's resident memory every 3 ms and the phase it is in: model forward (with the loss),
backward, optimizer step, between steps. Each arm runs in its own process, twice:

- glibc mmap threshold 64 KB: nearly every tensor is its own mapping, returned when freed, so RSS
  follows the memory that is really alive;
- 8 MB (what `s3ft train` sets on CPU): what a run really costs, heap fragmentation included.

The difference between the two is freed memory the heap keeps. Peak memory only: the 64 KB runs
are slow (page faults) and their times are not the point.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
THRESHOLDS = {"64KB": 64 << 10, "8MB": 8 << 20}
PHASES = ("forward", "backward", "optimizer", "between steps")


def child(rows_n: int, lora: bool, dtype: str) -> dict:
    sys.path.insert(0, str(HERE))
    from train_speed import HP, rows
    from transformers import TrainerCallback

    from s3ft.config import S3FTConfig
    from s3ft.training import build_trainer

    cfg = S3FTConfig(model="smollm2-135m-instruct", use_peft=lora, lora_r=8, lora_alpha=16, lora_dropout=0.1,
                     lr_scheduler_type="cosine", logging_steps=1, save_steps=10_000, device="cpu", dtype=dtype,
                     **{**HP, "learning_rate": HP["learning_rate"] if lora else 1e-5})
    trainer, _ = build_trainer(rows(rows_n), cfg, tempfile.mkdtemp())
    page = os.sysconf("SC_PAGE_SIZE")
    state = {"phase": "between steps", "step": 0, "stop": False}
    peaks: dict[tuple[int, str], float] = {}

    def sample() -> None:
        with open("/proc/self/statm") as f:
            while not state["stop"]:
                f.seek(0)
                gb = int(f.read().split()[1]) * page / 2**30
                key = (state["step"], state["phase"])
                peaks[key] = max(peaks.get(key, 0.0), gb)
                time.sleep(0.003)

    loss_fn = trainer.compute_loss

    def compute_loss(*a, **k):  # forward (with the loss); backward follows it
        state["phase"] = "forward"
        out = loss_fn(*a, **k)
        state["phase"] = "backward"
        return out

    class Phases(TrainerCallback):
        def on_pre_optimizer_step(self, args, st, control, **kw):
            state["phase"] = "optimizer"

        def on_step_end(self, args, st, control, **kw):
            state["step"], state["phase"] = st.global_step, "between steps"

    trainer.compute_loss = compute_loss
    trainer.add_callback(Phases())
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    trainer.train()
    state["stop"] = True
    th.join()
    by_phase = {p: round(max((v for (s, q), v in peaks.items() if q == p), default=0.0), 2) for p in PHASES}
    return {"peak_gb": round(max(peaks.values()), 2), "by_phase": by_phase,
            "by_step": {f"{s}:{p}": round(v, 2) for (s, p), v in sorted(peaks.items())}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=24)
    sys.path.insert(0, str(HERE))
    from common import add_dtype_argument, machine, resolve_dtype_and_out, run_child, save

    add_dtype_argument(ap, "train_memory")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    resolve_dtype_and_out(a, "train_memory")
    if a.child:  # auto: what s3ft uses for this kind of training (on a bf16 CPU: LoRA float32, full bf16)
        dtype = resolve_dtype_and_out(a, "train_memory", full_training=a.child == "full")
        print("RESULT " + json.dumps({"dtype": dtype, **child(a.rows, a.child == "lora", dtype)}), flush=True)
        return 0

    results = []
    for kind in ("lora", "full"):
        for name, thr in THRESHOLDS.items():
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(thr)}  # s3ft keeps a threshold the user set
            r = {"kind": kind, "mmap_threshold": name,
                 **run_child([__file__, "--rows", str(a.rows), "--dtype", a.dtype, "--child", kind], f"arm {kind} {name}", env)}
            print(json.dumps({k: r[k] for k in ("kind", "mmap_threshold", "peak_gb", "by_phase")}), flush=True)
            results.append(r)
    doc = {"benchmark": "training memory by phase, LoRA vs full fine-tuning", "machine": machine(),
           "date": time.strftime("%Y-%m-%d %H:%M"), "dtype": a.dtype, "rows": a.rows, "results": results,
           "command": "python " + " ".join(sys.argv)}
    lines = ["# Training memory by phase: LoRA vs full fine-tuning\n",
             f"Machine: {doc['machine']}; {doc['date']}; SmolLM2-135M-Instruct; {a.rows} SQuAD rows, batch 8; "
             f"dtype {a.dtype}: " + ", ".join(sorted({f"{r['kind']} {r['dtype']}" for r in results})) + ".\n",
             f"Command: `{doc['command']}`\n",
             "Peak resident memory (GB) in each phase over all steps. 64 KB threshold: RSS follows live tensors; "
             "8 MB: what `s3ft train` runs with (the difference is heap kept after frees).\n",
             "| training | mmap threshold | peak | " + " | ".join(PHASES) + " |",
             "|---|---|---|" + "---|" * len(PHASES)]
    for r in results:
        lines.append(f"| {r['kind']} | {r['mmap_threshold']} | {r['peak_gb']} | "
                     + " | ".join(str(r["by_phase"][p]) for p in PHASES) + " |")
    save(doc, Path(a.out), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
