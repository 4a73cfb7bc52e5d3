"""Benchmark 3: `s3ft train` vs a plain TRL SFTTrainer script - tokens/s and peak memory.

    python bench/train_speed.py [--rows 64] [--dtype auto] [--device cpu] [--out ...]

Same data (the first N gold SQuAD training rows as conversational prompt/completion pairs), same
hyperparameters (batch 8, lr 2e-4, 1 epoch, seed 0, max_length 640, LoRA r8/a16/d0.1 on all linear
layers, or full fine-tuning at lr 1e-5), same model (the embedded SmolLM2-135M-Instruct, CPU), same
precision: --dtype (auto: what s3ft computes in on this machine, per arm - on a CPU with native
bf16, full fine-tuning in bf16 and LoRA in float32, see s3ft.models.resolve_dtype). In bfloat16
both arms autocast (SFTConfig bf16=True) with the weights s3ft keeps: LoRA's frozen base in bf16,
full fine-tuning's weights in float32.
Each arm runs in its own process, so its peak RSS (ru_maxrss) is its own:

- trl: the script a TRL user writes (SFTConfig + SFTTrainer + LoraConfig, completion-only loss).
- s3ft: `s3ft.training.train`, what `s3ft train` runs.
- s3ft+gc: the same with gradient_checkpointing: true (memory for compute).
- s3ft-nodrop (only with --arms s3ft-nodrop-lora): lora_dropout 0, to measure what dropout costs.

tokens/s = non-padding tokens trained / train_runtime (the Trainer's own clock, model loading
excluded), so both arms count the same tokens.
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

HP = dict(per_device_train_batch_size=8, learning_rate=2e-4, num_train_epochs=1, seed=0, max_length=640)


def rows(n: int) -> list[dict]:
    from s3ft.session import Session
    from s3ft.config import S3FTConfig

    s = Session(S3FTConfig(model="smollm2-135m-instruct", task="squad", train_size=None))
    return [{"id": e.id, "prompt": e.prompt, "completion": e.gold, "source": "gold"} for e in s.train_examples()[:n]]


def child_trl(n: int, lora: bool, out: str, dtype: str, device: str = "cpu") -> dict:
    """A plain TRL script: what the TRL docs show, with CPU settings (or, on a GPU, TRL's own)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from s3ft.models import resolve_model

    path = resolve_model("smollm2-135m-instruct")
    data = [{"prompt": r["prompt"], "completion": [{"role": "assistant", "content": r["completion"]}]} for r in rows(n)]
    bf16 = dtype == "bfloat16"
    from common import on_gpu

    args = SFTConfig(output_dir=out, use_cpu=not on_gpu(device), bf16=bf16, gradient_checkpointing=False, report_to="none",
                     model_init_kwargs={"dtype": "bfloat16" if bf16 and lora else "float32"},
                     save_strategy="no", logging_steps=1, lr_scheduler_type="cosine",
                     **{**HP, "learning_rate": HP["learning_rate"] if lora else 1e-5})
    peft = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules="all-linear", task_type="CAUSAL_LM") if lora else None
    trainer = SFTTrainer(model=str(path), args=args, train_dataset=Dataset.from_list(data), peft_config=peft)
    res = trainer.train()
    tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    return {"tokens": tokens, "train_runtime": res.metrics["train_runtime"], "train_loss": res.training_loss}


def child_s3ft(n: int, lora: bool, gc: bool, out: str, dtype: str, dropout: float = 0.1, device: str = "cpu") -> dict:
    from s3ft.config import S3FTConfig
    from s3ft.training import train

    cfg = S3FTConfig(model="smollm2-135m-instruct", use_peft=lora, lora_r=8, lora_alpha=16, lora_dropout=dropout,
                     gradient_checkpointing=gc, lr_scheduler_type="cosine", logging_steps=1, save_steps=10_000,
                     device=device, dtype=dtype, **{**HP, "learning_rate": HP["learning_rate"] if lora else 1e-5})
    m = train(rows(n), cfg, out)
    return {"tokens": m["train_tokens"], "train_runtime": m["train_runtime"], "train_loss": m["train_loss"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--arms", default="trl-lora,s3ft-lora,s3ft+gc-lora,trl-full,s3ft-full,s3ft+gc-full")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import add_device_argument, add_dtype_argument, machine, on_gpu, peak_memory_mb, resolve_dtype_and_out, run_child, save

    add_dtype_argument(ap, "train_speed")
    add_device_argument(ap)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--report_only", action="store_true", help="rebuild the Markdown from --out's JSON")
    a = ap.parse_args()
    resolve_dtype_and_out(a, "train_speed")
    if a.child:
        arm, kind = a.child.rsplit("-", 1)
        dtype = resolve_dtype_and_out(a, "train_speed", full_training=kind == "full")
        with tempfile.TemporaryDirectory() as d:
            t0 = time.time()
            if arm == "trl":
                r = child_trl(a.rows, kind == "lora", d, dtype, a.device)
            else:  # s3ft, s3ft+gc (gradient checkpointing), s3ft-nodrop (lora_dropout 0)
                r = child_s3ft(a.rows, kind == "lora", "+gc" in arm, d, dtype, dropout=0.0 if "nodrop" in arm else 0.1,
                               device=a.device)
        r.update(arm=arm, kind=kind, dtype=dtype, wall=round(time.time() - t0, 1),
                 **{"peak_gpu_mb" if on_gpu(a.device) else "peak_rss_mb": peak_memory_mb(a.device)})
        r["tokens_per_s"] = round(r["tokens"] / r["train_runtime"], 1)
        print("RESULT " + json.dumps(r), flush=True)
        return 0
    if a.report_only:  # rebuild the Markdown (and peak fractions) from an earlier run's JSON
        doc = json.loads(Path(a.out).read_text())
        write_md(doc, Path(a.out))
        return 0
    results = []
    for arm in a.arms.split(","):
        r = run_child([__file__, "--rows", str(a.rows), "--dtype", a.dtype, "--device", a.device, "--child", arm], f"arm {arm}")
        print(json.dumps(r), flush=True)
        results.append(r)
    by = {(r["arm"], r["kind"]): r for r in results}
    ratios = {}
    for kind in ("lora", "full"):
        if ("trl", kind) in by and ("s3ft", kind) in by:
            t, s = by[("trl", kind)], by[("s3ft", kind)]
            ratios[kind] = {"speed_s3ft_over_trl": round(s["tokens_per_s"] / t["tokens_per_s"], 3),
                            "memory_s3ft_over_trl": round(_peak(s) / _peak(t), 3)}
    doc = {"benchmark": "training: s3ft train vs a plain TRL SFTTrainer script", "machine": machine(),
           "date": time.strftime("%Y-%m-%d %H:%M"), "dtype": a.dtype, "device": a.device, "rows": a.rows, "hyperparameters": HP, "results": results,
           "ratios": ratios, "command": "python " + " ".join(sys.argv)}
    save(doc, Path(a.out))
    write_md(doc, Path(a.out))
    return 0


def _peak(r: dict) -> float:
    """An arm's peak memory in MB: the GPU's peak allocation on a GPU, else the process's peak RSS."""
    return r["peak_gpu_mb"] if "peak_gpu_mb" in r else r["peak_rss_mb"]


def peak_fractions(doc: dict) -> dict:
    """Achieved training FLOP/s over the measured matmul peak (bench/results/roofline.json), with
    FLOPs per token from roofline.train_flops_per_token at the rows' mean length and share of
    supervised tokens."""
    from roofline import recorded_peak, roofline_path, train_flops_per_token
    from transformers import AutoConfig

    from s3ft.models import resolve_model

    roof = roofline_path(doc.get("device", "cpu"))
    if not roof.exists():
        return {}
    cfg = AutoConfig.from_pretrained(resolve_model("smollm2-135m-instruct"))
    from s3ft.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    rs = rows(doc["rows"])
    n_tok = [len(tok(tok.apply_chat_template(r["prompt"] + [{"role": "assistant", "content": r["completion"]}],
                                             tokenize=False), add_special_tokens=False)["input_ids"]) for r in rs]
    n_sup = [len(tok(r["completion"], add_special_tokens=False)["input_ids"]) + 2 for r in rs]  # + <|im_end|>\n
    ctx = sum(n_tok) / len(n_tok) / 2  # mean position a token attends over
    sup = sum(n_sup) / sum(n_tok)
    out = {}
    for r in doc["results"]:
        peak = recorded_peak(r.get("dtype", doc.get("dtype", "float32")), str(roof))
        f = train_flops_per_token(cfg, ctx, lora=r["kind"] == "lora", supervised_fraction=sup)
        out[f"{r['arm']}-{r['kind']}"] = round(r["tokens_per_s"] * f / peak, 3)
    return out


def write_md(doc: dict, out: Path) -> None:
    results, ratios = doc["results"], doc["ratios"]
    frac = peak_fractions(doc)
    lines = ["# Training speed and memory: `s3ft train` vs a plain TRL script\n",
             f"Machine: {doc['machine']}; {doc['date']}; SmolLM2-135M-Instruct, {doc.get('dtype', 'float32')}; {doc['rows']} SQuAD rows, batch 8, 1 epoch.\n",
             f"Command: `{doc['command']}`\n",
             f"| arm | training | dtype | tokens/s | train runtime s | {'peak GPU MB' if any('peak_gpu_mb' in r for r in results) else 'peak RSS MB'} | train loss | fraction of matmul peak |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        fr = frac.get(f"{r['arm']}-{r['kind']}")
        lines.append(f"| {r['arm']} | {r['kind']} | {r.get('dtype', doc.get('dtype', 'float32'))} | {r['tokens_per_s']} | {r['train_runtime']:.1f} | {_peak(r):.0f} | "
                     f"{r['train_loss']:.4f} | {'-' if fr is None else f'{fr:.1%}'} |")
    for kind, v in ratios.items():
        lines.append(f"\n{kind}: s3ft / TRL speed {v['speed_s3ft_over_trl']}x, peak memory {v['memory_s3ft_over_trl']}x")
    lines.append("\nFraction of peak: tokens/s x training FLOPs per token (bench/roofline.py: LoRA = forward + input "
                 "gradients, full = + weight gradients; LM head on supervised tokens only) / the measured matmul peak in "
                 "that dtype in bench/results/roofline.json. Not counted (so not in the fraction): the trl arms' LM-head work on unsupervised positions, and the forward pass the +gc arms compute twice.")
    from common import save_markdown

    save_markdown(lines, out)


if __name__ == "__main__":
    sys.exit(main())
