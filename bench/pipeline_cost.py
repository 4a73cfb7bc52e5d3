"""Benchmark 2: what S3FT costs over plain SFT - the whole S3FT data construction plus training vs
SFT training alone, on the same data and epochs.

    python bench/pipeline_cost.py [--train_size 64] [--epochs 1] [--dtype auto] [--device cpu] [--out ...]

Two commands a user would type, each timed end to end in a fresh run directory (process start,
model loading, everything):
    s3ft train RECIPE --method s3ft   # own answers, judging, paraphrases of the failures, judging
                                      # them, the training set, then LoRA training
    s3ft train RECIPE --method sft    # the gold training set, then LoRA training
with recipes/squad.yaml's settings on a seeded subset of the SQuAD training questions. The
ratio is s3ft / sft wall time; the stage times come from each run's manifest.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def run(method: str, train_size: int, epochs: float, d: Path, dtype: str, device: str = "cpu") -> dict:
    cmd = [sys.executable, "-m", "s3ft.cli", "train", "recipes/squad.yaml", "--method", method, "--output_dir", str(d / method),
           "--train_size", str(train_size), "--num_train_epochs", str(epochs), "--per_device_train_batch_size", "8",
           "--max_length", "640", "--dtype", dtype] + (["--device", device] if device != "cpu" else [])
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode != 0:
        print(p.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{method} failed")
    manifest = json.loads((d / method / "manifest.json").read_text())
    stages = {k: v.get("seconds") for k, v in manifest.get("stages", {}).items()}
    return {"method": method, "wall_seconds": round(wall, 1), "stage_seconds": stages, "command": " ".join(cmd[3:])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train_size", type=int, default=64)
    ap.add_argument("--epochs", type=float, default=1.0)
    from common import add_device_argument, add_dtype_argument, machine, resolve_dtype_and_out, save

    add_dtype_argument(ap, "pipeline_cost")
    add_device_argument(ap)
    a = ap.parse_args()
    # --dtype goes to s3ft as given; with LoRA, generation and training resolve alike (models.resolve_dtype)
    dtype = resolve_dtype_and_out(a, "pipeline_cost")
    with tempfile.TemporaryDirectory() as d:
        res = [run(m, a.train_size, a.epochs, Path(d), a.dtype, a.device) for m in ("s3ft", "sft")]
    ratio = round(res[0]["wall_seconds"] / res[1]["wall_seconds"], 3)
    doc = {"benchmark": "pipeline cost: S3FT data construction + training vs SFT training alone", "machine": machine(),
           "date": time.strftime("%Y-%m-%d %H:%M"), "dtype": a.dtype, "device": a.device, "resolved_dtype": dtype, "train_size": a.train_size, "epochs": a.epochs, "results": res,
           "ratio_s3ft_over_sft": ratio, "command": "python " + " ".join(sys.argv)}
    lines = ["# Pipeline cost: S3FT (data construction + training) vs SFT training alone\n",
             f"Machine: {doc['machine']}; {doc['date']}; SmolLM2-135M-Instruct, {dtype}; {a.train_size} SQuAD training questions, "
             f"{a.epochs:g} epoch, LoRA, batch 8.\n", f"Command: `{doc['command']}`\n",
             "| command | wall s | stages (s) |", "|---|---|---|"]
    for r in res:
        st = ", ".join(f"{k} {v:.0f}" for k, v in r["stage_seconds"].items() if isinstance(v, (int, float)))
        lines.append(f"| `s3ft {r['command']}` | {r['wall_seconds']} | {st} |")
    lines.append(f"\nS3FT / SFT wall time: **{ratio}x**")
    save(doc, Path(a.out), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
