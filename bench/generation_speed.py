"""Benchmark 1: `s3ft generate` vs a naive per-example loop, same model, prompts, greedy settings.

    python bench/generation_speed.py [--gsm8k 64] [--squad 48] [--batch_size 0] [--dtype auto] [--device cpu] [--out ...]

For each task: the naive loop calls `model.generate` on one prompt at a time (the chat template,
greedy, the task's answer length), then the own-answer stage of s3ft (`pipeline.stage_generate`,
what `s3ft generate` runs: length-sorted left-padded batches, rows streamed to own.jsonl) answers
the same prompts with the same loaded model. Reported: wall time, generated tokens per second,
speed-up, and how many answers are token-identical (batched fp32 matmuls can flip a rare near-tie,
see FIELD-NOTES; bf16 rounds every activation to 8 bits of mantissa, so batch shape flips more
of them). Both arms compute in --dtype (auto: what s3ft uses on this machine). Also the fraction
of the machine's measured matmul peak in that dtype (bench/roofline.py) the
generation reaches, from the model's FLOPs per token. Writes a JSON and a Markdown table.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import add_device_argument, add_dtype_argument, machine, on_gpu, resolve_dtype_and_out, save, sync  # noqa: E402
from roofline import forward_flops_per_token, matmul_peak  # noqa: E402


def naive(model, tok, prompts, max_new_tokens, stop):
    from s3ft.generation import _decode, render_prompt

    texts, new_tokens = [], 0
    for p in prompts:
        ids = tok(render_prompt(tok, p), add_special_tokens=False, return_tensors="pt")["input_ids"].to(model.device)
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                                 temperature=None, top_p=None, top_k=None, eos_token_id=stop, pad_token_id=tok.pad_token_id)
        new = out[0, ids.shape[1]:].tolist()
        new_tokens += _count(new, stop)
        texts.append(_decode(tok, new, stop))
    return texts, new_tokens


def _count(ids, stop):
    for j, t in enumerate(ids):
        if t in stop:
            return j + 1
    return len(ids)


def run_task(task: str, n: int, batch_size: int, gen, peak: float, dtype: str, device: str = "cpu") -> dict:
    from s3ft.config import S3FTConfig
    from s3ft.generation import _stop_ids, render_prompt
    from s3ft.pipeline import Session, stage_generate
    from s3ft.runs import read_jsonl

    with tempfile.TemporaryDirectory() as d:
        cfg = S3FTConfig(model="smollm2-135m-instruct", task=task, train_size=n, batch_size=batch_size, output_dir=d,
                         device=device, dtype=dtype)
        s = Session(cfg)
        s._generators[cfg.model] = gen  # the same loaded model for both arms
        exs = s.train_examples()
        prompts = [e.prompt for e in exs]
        max_new = s.max_new_tokens
        tok = gen.tokenizer
        stop = _stop_ids(tok, gen.model.generation_config)
        prompt_tokens = [len(tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"]) for p in prompts]

        sync(device)
        t0 = time.perf_counter()
        want, naive_new = naive(gen.model, tok, prompts, max_new, stop)
        sync(device)
        t_naive = time.perf_counter() - t0

        t0 = time.perf_counter()
        out = stage_generate(s)
        sync(device)
        t_s3ft = time.perf_counter() - t0
        rows = {r["id"]: r["response"] for r in read_jsonl(out)}
        got = [rows[e.id] for e in exs]
    s3ft_new = sum(_count(tok(t, add_special_tokens=False)["input_ids"] + stop[:1], stop) for t in got)
    flops_tok = forward_flops_per_token(gen.model.config, context=sum(prompt_tokens) / len(prompt_tokens))
    # every token the model processes (prompt tokens in prefill + generated ones in decode)
    processed = sum(prompt_tokens) + naive_new
    return {
        "task": task, "prompts": n, "max_new_tokens": max_new, "batch_size": batch_size,
        "mean_prompt_tokens": round(sum(prompt_tokens) / n, 1),
        "generated_tokens_naive": naive_new, "generated_tokens_s3ft": s3ft_new,
        "naive_seconds": round(t_naive, 2), "s3ft_seconds": round(t_s3ft, 2),
        "naive_gen_tok_per_s": round(naive_new / t_naive, 1), "s3ft_gen_tok_per_s": round(s3ft_new / t_s3ft, 1),
        "speedup": round(t_naive / t_s3ft, 2),
        "identical_answers": sum(a == b for a, b in zip(want, got)), "answers": n,
        "naive_peak_fraction": round(processed * flops_tok / t_naive / peak, 4),
        "s3ft_peak_fraction": round(processed * flops_tok / t_s3ft / peak, 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gsm8k", type=int, default=64, help="GSM8K prompts (short prompt, long answer: decode-bound)")
    ap.add_argument("--squad", type=int, default=48, help="SQuAD prompts (long context, short answer: prefill-bound)")
    ap.add_argument("--batch_size", type=int, default=0, help="0: automatic (what s3ft uses by default)")
    add_dtype_argument(ap, "generation_speed")
    add_device_argument(ap)
    a = ap.parse_args()
    dtype = resolve_dtype_and_out(a, "generation_speed")
    from s3ft.generation import HFGenerator

    torch.manual_seed(0)
    peak = matmul_peak(dtype=getattr(torch, dtype), device=a.device)["peak_flops"]
    gen = HFGenerator.from_name("smollm2-135m-instruct", batch_size=a.batch_size, dtype=dtype, device=a.device)
    results = []
    for task, n in (("gsm8k", a.gsm8k), ("squad", a.squad)):
        if n > 0:
            r = run_task(task, n, a.batch_size, gen, peak, dtype, a.device)
            print(json.dumps(r), flush=True)
            results.append(r)
    doc = {"benchmark": "generation: s3ft generate vs naive per-example model.generate", "machine": machine(),
           "date": time.strftime("%Y-%m-%d %H:%M"), "model": f"SmolLM2-135M-Instruct ({dtype}, {'GPU' if on_gpu(a.device) else 'CPU'})", "dtype": dtype, "device": a.device,
           "matmul_peak_gflops": round(peak / 1e9, 1), "load_avg_at_end": os.getloadavg()[0], "results": results,
           "command": "python " + " ".join(sys.argv)}
    lines = ["# Generation speed: `s3ft generate` vs a naive loop\n", f"Machine: {doc['machine']}; {doc['date']}; "
             f"{doc['model']}; measured {dtype} matmul peak {doc['matmul_peak_gflops']} GFLOP/s (bench/roofline.py).\n",
             f"Command: `{doc['command']}`\n",
             "| task | prompts | mean prompt tokens | max new | naive s | s3ft s | speed-up | naive gen tok/s | s3ft gen tok/s "
             "| identical answers | peak fraction naive / s3ft |", "|" + "---|" * 11]
    for r in results:
        lines.append(f"| {r['task']} | {r['prompts']} | {r['mean_prompt_tokens']} | {r['max_new_tokens']} | {r['naive_seconds']} | "
                     f"{r['s3ft_seconds']} | **{r['speedup']}x** | {r['naive_gen_tok_per_s']} | {r['s3ft_gen_tok_per_s']} | "
                     f"{r['identical_answers']}/{r['answers']} | {r['naive_peak_fraction']:.1%} / {r['s3ft_peak_fraction']:.1%} |")
    save(doc, Path(a.out), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
