"""Benchmark 4: this machine's roofline - measured matmul FLOP/s and memory bandwidth - and the
model FLOP counts the other benchmarks divide by.

    python bench/roofline.py [--out bench/results/roofline.json]

Peak compute: the best of several `torch.matmul` runs on square matrices (1024-4096) and on the
shapes SmolLM2-135M actually multiplies, with torch's default thread count (all cores), in
float32 and in bfloat16 (what dtype auto computes in on a CPU with native bf16 - s3ft.models).
Bandwidth: a large tensor copy (read + write). Model FLOPs per token are counted from the config
(2 x multiply-adds of every projection, attention scores over the context, the LM head).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from common import add_device_argument, machine, on_gpu, save, sync


def _time(fn, reps: int, device: str = "cpu") -> float:
    fn()  # warm-up
    sync(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(sizes=None, reps: int = 3, dtype: torch.dtype = torch.float32, device: str = "cpu") -> dict:
    """Best matmul FLOP/s in `dtype` over square sizes and the model's shapes (on a GPU also
    8192, and ten products per timing, so that launch latency does not count)."""
    gpu = on_gpu(device)
    sizes = sizes or ((1024, 2048, 4096, 8192) if gpu else (1024, 2048, 3072, 4096))
    inner = 10 if gpu else 1
    out: dict = {"square": {}, "model_shapes": {}}

    def mm(a, b):
        for _ in range(inner):
            torch.matmul(a, b)

    with torch.inference_mode():
        for n in sizes:
            a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
            t = _time(lambda: mm(a, b), reps, device) / inner
            out["square"][n] = 2 * n**3 / t
        # (tokens x hidden) @ (hidden x out): prefill / training shapes, and a 16-row decode step
        for m, k, n in ((2048, 576, 1536), (2048, 1536, 576), (2048, 576, 49152), (16, 576, 1536), (16, 576, 49152)):
            a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)
            t = _time(lambda: mm(a, b), reps, device) / inner
            out["model_shapes"][f"{m}x{k}x{n}"] = 2 * m * k * n / t
    out["peak_flops"] = max(list(out["square"].values()) + list(out["model_shapes"].values()))
    return out


def bandwidth(n_bytes: int = 1 << 30, reps: int = 3, device: str = "cpu") -> float:
    """Bytes per second moved by a tensor copy (counts the read and the write)."""
    a = torch.empty(n_bytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    b = torch.empty_like(a)
    t = _time(lambda: b.copy_(a), reps, device)
    return 2 * n_bytes / t


def _gflops(mm: dict) -> dict:
    """matmul_peak's FLOP/s in GFLOP/s, as roofline.json records them."""
    return {"square": {str(k): round(v / 1e9, 1) for k, v in mm["square"].items()},
            "model_shapes": {k: round(v / 1e9, 1) for k, v in mm["model_shapes"].items()},
            "peak": round(mm["peak_flops"] / 1e9, 1)}


def roofline_path(device: str = "cpu") -> Path:
    """Where `python bench/roofline.py [--device D]` records: bench/results/roofline.json, or
    roofline_cuda.json for a GPU."""
    return Path(__file__).resolve().parent / "results" / ("roofline_cuda.json" if on_gpu(device) else "roofline.json")


def recorded_peak(dtype: str, path: str | None = None, device: str = "cpu") -> float:
    """The matmul peak (FLOP/s) `python bench/roofline.py [--device D]` recorded for float32 or
    bfloat16 (roofline_path(device) unless `path` is given)."""
    doc = json.loads(Path(path or roofline_path(device)).read_text())
    key = "matmul_gflops_bf16" if dtype == "bfloat16" else "matmul_gflops"
    return doc[key]["peak"] * 1e9


def forward_flops_per_token(cfg, context: float, lm_head: bool = True) -> float:
    """Forward FLOPs for one token of a Llama-style decoder attending over `context` tokens."""
    h, L = cfg.hidden_size, cfg.num_hidden_layers
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", heads) or heads
    hd = getattr(cfg, "head_dim", None) or h // heads
    inter = cfg.intermediate_size
    proj = 2 * h * (heads * hd) + 2 * 2 * h * (kv * hd) + 2 * (heads * hd) * h  # q, k, v, o
    mlp = 3 * 2 * h * inter  # gate, up, down
    attn = 2 * 2 * heads * hd * context  # scores and weighted values
    head = 2 * h * cfg.vocab_size if lm_head else 0
    return L * (proj + mlp + attn) + head


def train_flops_per_token(cfg, context: float, lora: bool, supervised_fraction: float) -> float:
    """Training FLOPs per token: forward + backward. Full fine-tuning: backward = 2 x forward
    (input and weight gradients). LoRA: the frozen weights need input gradients only (1 x
    forward; the rank-8 adapters are negligible). The LM head runs on supervised positions only."""
    body = forward_flops_per_token(cfg, context, lm_head=False)
    head = 2 * cfg.hidden_size * cfg.vocab_size * supervised_fraction
    factor = 2 if lora else 3
    return factor * (body + head)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="default bench/results/roofline.json (roofline_cuda.json on a GPU)")
    add_device_argument(ap)
    a = ap.parse_args()
    a.out = a.out or str(roofline_path(a.device))
    mm = matmul_peak(device=a.device)
    mm16 = matmul_peak(dtype=torch.bfloat16, device=a.device)
    bw = bandwidth(device=a.device)
    from transformers import AutoConfig

    from s3ft.models import cpu_has_native_bf16, resolve_model

    cfg = AutoConfig.from_pretrained(resolve_model("smollm2-135m-instruct"))
    n_params = 134_515_008  # SmolLM2-135M, tied embeddings
    doc = {
        "machine": machine(), "device": a.device, "date": time.strftime("%Y-%m-%d %H:%M"), "command": "python " + " ".join(sys.argv),
        "matmul_gflops": _gflops(mm),
        "matmul_gflops_bf16": _gflops(mm16),
        "cpu_has_native_bf16": cpu_has_native_bf16(),
        "copy_bandwidth_gb_s": round(bw / 1e9, 1),
        "model": {"forward_gflops_per_token_ctx256": round(forward_flops_per_token(cfg, 256) / 1e9, 3),
                  "lm_head_share_of_forward": round(2 * cfg.hidden_size * cfg.vocab_size / forward_flops_per_token(cfg, 256), 3),
                  "fp32_weight_bytes": n_params * 4,
                  "decode_batch1_bandwidth_bound_tok_s": round(bw / (n_params * 4), 1),
                  "decode_batch1_bandwidth_bound_tok_s_bf16": round(bw / (n_params * 2), 1)},
        "load_avg_at_end": os.getloadavg()[0],
    }
    save(doc, Path(a.out))
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
