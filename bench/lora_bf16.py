"""Does LoRA learn as well under bf16 autocast as in float32? (why `dtype: auto` trains LoRA in
float32 on CPU - s3ft.models.resolve_dtype)

    python bench/lora_bf16.py [--rows 64] [--learning_rate 1e-3] [--out bench/results/lora_bf16.json]

The embedded SmolLM2-135M-Instruct, LoRA r8/a16/dropout 0.1 on all linear layers, the first N gold
SQuAD training rows (batch 8, 1 epoch, cosine, seed 0), trained once in float32 and once under bf16
autocast (frozen base in bf16, adapter in float32 - what s3ft does for an explicit bfloat16).
Each adapter is scored on the next N training rows (held out): the mean log-loss per answer
token, computed by a float32 forward (merged) and by a bf16 forward (adapter unmerged).

Also a one-step probe: the adapter after a single float32 step, scored by both forwards. Under
bf16 autocast a frozen layer's output is rounded to bf16 before the adapter's delta is added,
and the sum is rounded again, so a delta below half a bf16 step vanishes: the bf16 forward does
not see what one step learned, and bf16 training steers by that forward.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))


def rows(n: int, start: int = 0) -> list[dict]:
    from s3ft.config import S3FTConfig
    from s3ft.session import Session

    s = Session(S3FTConfig(model="smollm2-135m-instruct", task="squad", train_size=None))
    exs = s.train_examples()[start : start + n]
    return [{"id": e.id, "prompt": e.prompt, "completion": e.gold, "source": "gold"} for e in exs]


def heldout_loss(model_path: str, dtype: str, held: list[dict]) -> float:
    """Mean negative log-likelihood per answer token of `held` under the model in `dtype`."""
    from s3ft.logprob import sequence_logprobs
    from s3ft.models import load_model, load_tokenizer

    model = load_model(model_path, dtype=dtype, device="cpu")
    r = sequence_logprobs(model, load_tokenizer("smollm2-135m-instruct"), [x["prompt"] for x in held],
                          [x["completion"] for x in held], progress=False)
    return round(-sum(x["total"] for x in r) / sum(x["tokens"] for x in r), 4)


def train_arm(train_rows: list[dict], dtype: str, lr: float, out: str) -> dict:
    from s3ft.config import S3FTConfig
    from s3ft.runs import read_jsonl
    from s3ft.training import train

    cfg = S3FTConfig(model="smollm2-135m-instruct", use_peft=True, lora_r=8, lora_alpha=16, lora_dropout=0.1,
                     learning_rate=lr, num_train_epochs=1, per_device_train_batch_size=8, lr_scheduler_type="cosine",
                     seed=0, max_length=640, logging_steps=1, save_steps=10_000, device="cpu", dtype=dtype,
                     saved_activations="float32")  # the plain float32 path (no bf16-packed activations)
    m = train(train_rows, cfg, out)
    losses = [round(r["loss"], 4) for r in read_jsonl(Path(out) / "train_log.jsonl") if r.get("loss") is not None]
    return {"train_loss": m["train_loss"], "step_losses": losses, "train_runtime": m["train_runtime"]}


def main() -> int:
    from common import machine, save

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--learning_rate", type=float, default=1e-3)
    ap.add_argument("--out", default="bench/results/lora_bf16.json")
    ap.add_argument("--report_only", action="store_true", help="rebuild the Markdown from --out's JSON")
    a = ap.parse_args()
    if a.report_only:
        doc = json.loads(Path(a.out).read_text())
        save(doc, Path(a.out), report(doc))
        return 0
    train_rows, held = rows(a.rows), rows(a.rows, start=a.rows)
    t0 = time.time()
    doc = {"bench": "lora_bf16", "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
           "rows": a.rows, "learning_rate": a.learning_rate,
           "base": {f: heldout_loss("smollm2-135m-instruct", f, held) for f in ("float32", "bfloat16")}, "arms": {}}
    with tempfile.TemporaryDirectory() as d:
        for name, dtype, data in (("one float32 step", "float32", train_rows[:8]),
                                  ("float32", "float32", train_rows), ("bf16 autocast", "bfloat16", train_rows)):
            out = str(Path(d) / name.replace(" ", "_"))
            arm = train_arm(data, dtype, a.learning_rate, out)
            arm["heldout_loss"] = {f: heldout_loss(str(Path(out) / "model"), f, held) for f in ("float32", "bfloat16")}
            doc["arms"][name] = arm
            print(name, arm, flush=True)
    doc["seconds"] = round(time.time() - t0, 1)
    save(doc, Path(a.out), report(doc))
    return 0


def report(doc: dict) -> list[str]:
    base, rows, lr = doc["base"], doc["rows"], doc["learning_rate"]
    md = ["# LoRA under bf16 autocast vs float32 (bench/lora_bf16.py)", "",
          f"Machine: {doc['machine']}; {doc['date']}; SmolLM2-135M-Instruct; LoRA r8/a16/d0.1 all-linear; "
          f"{rows} gold SQuAD rows, batch 8, 1 epoch ({rows // 8} steps), lr {lr:g}, cosine, seed 0; "
          f"held-out: the next {rows} rows. Mean log-loss per answer token (lower is better).", "",
          "| adapter | trained in | steps | held-out loss, float32 forward | held-out loss, bf16 forward |",
          "|---|---|---|---|---|",
          f"| none (base model) | - | 0 | {base['float32']} | {base['bfloat16']} |"]
    for name, arm in doc["arms"].items():
        md.append(f"| {name} | {'float32' if 'float32' in name else 'bf16 autocast'} | {len(arm['step_losses'])} "
                  f"| {arm['heldout_loss']['float32']} | {arm['heldout_loss']['bfloat16']} |")
    one, f32, b16 = doc["arms"]["one float32 step"], doc["arms"]["float32"], doc["arms"]["bf16 autocast"]
    g32 = base["float32"] - one["heldout_loss"]["float32"]
    g16 = base["bfloat16"] - one["heldout_loss"]["bfloat16"]
    t32 = base["float32"] - f32["heldout_loss"]["float32"]
    t16 = base["float32"] - b16["heldout_loss"]["float32"]
    md += ["", f"- One float32 step lowers the held-out loss by {g32:.4f} seen through a float32 forward and by "
           f"{g16:.4f} through a bf16 forward of the same adapter: bf16 rounding hides {1 - g16 / g32:.0%} of it.",
           f"- Trained under bf16 autocast, LoRA gains {t16:.4f} over the base vs {t32:.4f} trained in float32 "
           f"(both scored in float32): {1 - t16 / t32:.0%} less.",
           f"- Training time: float32 {f32['train_runtime']:.1f} s, bf16 {b16['train_runtime']:.1f} s. "
           f"Whole bench: {doc['seconds']} s. Command: `python bench/lora_bf16.py --rows {rows} --learning_rate {lr:g}`"]
    return md
    return 0


if __name__ == "__main__":
    sys.exit(main())
