"""Benchmark 1: s3ft's greedy generation vs batched `model.generate` (the library's best use) and a
naive per-example loop - same loaded model, same prompts, same greedy settings.

    python bench/generation_speed.py [--gsm8k 64] [--squad 48] [--batch_size 0] [--skip_naive]
                                     [--dtype auto] [--device cpu] [--out ...]

For each task (the seeded `train_size` training prompts `s3ft generate` answers, with the task's
answer length), three arms answer the same prompts with the same loaded model:

- s3ft: `HFGenerator.stream(prompts, max_new_tokens)` (s3ft.backends.hf), what the generate stage
  calls - length-sorted batches, on CPU each prompt prefilled alone from the KV cache of the
  prefix all prompts share, then s3ft's own greedy KV-cache loop, which drops each answer from
  the batch as soon as it ends (s3ft.backends.hf_decode). The stage itself adds only writing one
  short JSONL row per answer, which is negligible next to decoding (and is not timed here).
- batched generate: what a competent transformers user writes - the same prompts in the SAME
  batches (length-sorted as HFGenerator sorts them, the batch sizes HFGenerator chose in the s3ft
  arm: `auto_batch_size` for --batch_size 0, else the fixed size), left-padded, one
  `model.generate(input_ids, attention_mask, max_new_tokens, do_sample=False, eos_token_id=stop
  ids, pad_token_id)` call per batch, decoded as s3ft decodes.
- naive (skipped with --skip_naive; ~15 min on the GSM8K prompts on 2 CPU cores): `model.generate`
  on one prompt at a time.

Reported per task: wall time of each arm, generated tokens per second, the speed ratios (s3ft vs
batched generate, s3ft vs naive), and how many answers are token-identical to the reference arm -
the naive loop, or batched generate when the naive arm is skipped (batched fp32 matmuls can flip
a rare near-tie; bf16 rounds every activation to 8 bits of mantissa, so batch shape flips more of
them). Also the fraction of the machine's measured matmul peak in the compute dtype
(bench/roofline.py) each arm reaches, from the model's FLOPs per token of the useful work (prompt
tokens + the reference's generated tokens; batched generate also computes padding and finished
rows, which does not count), and the 1-minute load average sampled during each arm (the CPUs may
be shared: this process alone accounts for about its torch thread count). Writes a JSON and a
Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import add_device_argument, add_dtype_argument, machine, on_gpu, resolve_dtype_and_out, save, sync  # noqa: E402
from roofline import forward_flops_per_token, matmul_peak  # noqa: E402

MODEL = "smollm2-135m-instruct"


class LoadSampler:
    """The 1-minute load average, sampled every `every` seconds while an arm runs."""

    def __init__(self, every: float = 5.0):
        self.every, self.samples = every, [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> "LoadSampler":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict:
        return {"mean": round(sum(self.samples) / len(self.samples), 2), "max": round(max(self.samples), 2)}


def timed(fn, device: str):
    """(fn(), seconds, load average during it)."""
    sync(device)
    with LoadSampler() as load:
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        seconds = time.perf_counter() - t0
    return out, seconds, load.summary()


def _count(ids, stop):
    """Generated tokens of one answer: up to and including its stop token."""
    for j, t in enumerate(ids):
        if t in stop:
            return j + 1
    return len(ids)


def _greedy_kw(tok, max_new_tokens, stop) -> dict:
    return dict(max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                eos_token_id=stop, pad_token_id=tok.pad_token_id)


def naive(model, tok, prompt_ids, max_new_tokens, stop):
    """`model.generate` on one prompt at a time."""
    from s3ft.backends.base import decode

    texts, new_tokens = [], 0
    for x in prompt_ids:
        ids = torch.tensor([x], device=model.device)
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), **_greedy_kw(tok, max_new_tokens, stop))
        new = out[0, ids.shape[1]:].tolist()
        new_tokens += _count(new, stop)
        texts.append(decode(tok, new, stop))
    return texts, new_tokens


def batched_generate(model, tok, prompt_ids, batches, max_new_tokens, stop):
    """One left-padded `model.generate` call per batch (lists of prompt indices), greedy."""
    from s3ft.backends.base import decode
    from s3ft.backends.hf import left_pad

    texts: list[str | None] = [None] * len(prompt_ids)
    new_tokens = 0
    for batch in batches:
        input_ids, mask = left_pad([prompt_ids[i] for i in batch], tok.pad_token_id)
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                                 **_greedy_kw(tok, max_new_tokens, stop))
        new = out[:, input_ids.shape[1]:].tolist()
        for row, i in enumerate(batch):
            new_tokens += _count(new[row], stop)
            texts[i] = decode(tok, new[row], stop)
    return texts, new_tokens


class Recorder:
    """While HFGenerator.stream runs: what `auto_batch_size` returns (batch_size 0), so that the
    batched-generate arm uses exactly the batches s3ft used, and the tokens s3ft's greedy loop
    (hf_decode.greedy_decode) generates, counted as for the other arms (each answer up to its stop
    token). Wrapping costs a sum over the answers' token lists per batch."""

    def __init__(self, stop):
        import s3ft.backends.hf as hf
        import s3ft.backends.hf_decode as hf_decode

        self.hf, self.hf_decode, self.stop = hf, hf_decode, stop
        self.orig_size, self.orig_decode = hf.auto_batch_size, hf_decode.greedy_decode
        self.sizes: list[int] = []
        self.decode_calls, self.new_tokens = 0, 0
        self.prefill_each: set[bool] = set()

    def auto_batch_size(self, *args, **kwargs):
        size = self.orig_size(*args, **kwargs)
        self.sizes.append(size)
        return size

    def greedy_decode(self, *args, **kwargs):
        new = self.orig_decode(*args, **kwargs)
        self.decode_calls += 1
        self.prefill_each.add(bool(kwargs.get("prefill_each")))
        self.new_tokens += sum(_count(x, self.stop) for x in new)
        return new

    def __enter__(self) -> "Recorder":
        self.hf.auto_batch_size, self.hf_decode.greedy_decode = self.auto_batch_size, self.greedy_decode
        return self

    def __exit__(self, *exc) -> None:
        self.hf.auto_batch_size, self.hf_decode.greedy_decode = self.orig_size, self.orig_decode


def plan_batches(order: list[int], sizes) -> list[list[int]]:
    """`order` cut into consecutive batches of the given sizes (an int: that size throughout),
    as HFGenerator.stream cuts it."""
    batches, start, k = [], 0, 0
    while start < len(order):
        size = sizes if isinstance(sizes, int) else sizes[k]
        batches.append(order[start:start + size])
        start, k = start + len(batches[-1]), k + 1
    return batches


def prompts_for(task: str, n: int) -> tuple[list, int]:
    """The prompts `s3ft generate` answers for `task` with train_size n (the config's default
    split, data seed and no system prompt), and the task's answer length."""
    from s3ft.config import S3FTConfig
    from s3ft.tasks import get_task

    cfg = S3FTConfig(model=MODEL, task=task, train_size=n, output_dir="/nonexistent")
    t = get_task(task)
    exs = t.load(cfg.train_split, limit=n, seed=cfg.data_seed)
    return [e.prompt for e in exs], cfg.max_new_tokens or t.max_new_tokens


def run_task(task: str, prompts: list, max_new: int, batch_size: int, gen, peak: float, device: str,
             skip_naive: bool) -> dict:
    from s3ft.backends.base import render_prompt, stop_ids

    n = len(prompts)
    tok, model = gen.tokenizer, gen.model
    stop = stop_ids(tok, model.generation_config)
    prompt_ids = [tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in prompts]
    prompt_tokens = [len(x) for x in prompt_ids]

    def s3ft_arm():
        out: list[str | None] = [None] * n
        for i, text in gen.stream(prompts, max_new, progress=False):
            out[i] = text
        return out

    with Recorder(stop) as rec:
        got, t_s3ft, load_s3ft = timed(s3ft_arm, device)
    if not rec.decode_calls:
        raise SystemExit("HFGenerator.stream did not run s3ft's greedy loop (hf_decode.greedy_decode): nothing to compare")
    if batch_size:
        sizes, sizes_from = batch_size, "fixed --batch_size"
    elif rec.sizes:
        sizes, sizes_from = rec.sizes, "auto_batch_size as called by the s3ft arm"
    else:
        raise SystemExit("HFGenerator.stream did not call s3ft.backends.hf.auto_batch_size: cannot copy its batches")
    order = sorted(range(n), key=lambda i: prompt_tokens[i], reverse=True)  # HFGenerator.stream's order
    batches = plan_batches(order, sizes)

    (gen_texts, gen_new), t_gen, load_gen = timed(lambda: batched_generate(model, tok, prompt_ids, batches, max_new, stop), device)
    r = {"task": task, "prompts": n, "max_new_tokens": max_new, "batch_size": batch_size, "batch_sizes_from": sizes_from,
         "batch_rows": [len(b) for b in batches], "mean_prompt_tokens": round(sum(prompt_tokens) / n, 1),
         "s3ft_prefill_each": sorted(rec.prefill_each) == [True]}
    if not skip_naive:
        (want, ref_new), t_naive, load_naive = timed(lambda: naive(model, tok, prompt_ids, max_new, stop), device)
        ref = "naive"
    else:
        want, ref_new, ref = gen_texts, gen_new, "batched generate"
    s3ft_new = rec.new_tokens
    flops_tok = forward_flops_per_token(model.config, context=sum(prompt_tokens) / n)
    processed = sum(prompt_tokens) + ref_new  # useful work: every prompt token + the reference's generated tokens

    def frac(t):
        return round(processed * flops_tok / t / peak, 4)

    r.update({
        "reference": ref,
        "generated_tokens_s3ft": s3ft_new, "generated_tokens_generate": gen_new,
        "s3ft_seconds": round(t_s3ft, 2), "generate_seconds": round(t_gen, 2),
        "s3ft_gen_tok_per_s": round(s3ft_new / t_s3ft, 1), "generate_gen_tok_per_s": round(gen_new / t_gen, 1),
        "s3ft_vs_generate": round(t_gen / t_s3ft, 2),
        "identical_s3ft_vs_reference": sum(a == b for a, b in zip(want, got)),
        "identical_generate_vs_reference": sum(a == b for a, b in zip(want, gen_texts)),
        "identical_s3ft_vs_generate": sum(a == b for a, b in zip(gen_texts, got)),
        "answers": n,
        "s3ft_peak_fraction": frac(t_s3ft), "generate_peak_fraction": frac(t_gen),
        "load_avg_s3ft": load_s3ft, "load_avg_generate": load_gen,
    })
    if not skip_naive:
        r.update({"generated_tokens_naive": ref_new, "naive_seconds": round(t_naive, 2),
                  "naive_gen_tok_per_s": round(ref_new / t_naive, 1), "s3ft_vs_naive": round(t_naive / t_s3ft, 2),
                  "generate_vs_naive": round(t_naive / t_gen, 2), "naive_peak_fraction": frac(t_naive),
                  "load_avg_naive": load_naive})
    return r


def warm_up(gen, device: str) -> None:
    """One tiny answer through each path, so that no arm pays first-call costs."""
    p = [[{"role": "user", "content": "Say hi."}]]
    list(gen.stream(p, 2, progress=False))
    from s3ft.backends.base import render_prompt

    ids = gen.tokenizer(render_prompt(gen.tokenizer, p[0]), return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        gen.model.generate(ids.to(gen.model.device), attention_mask=torch.ones_like(ids).to(gen.model.device),
                           **_greedy_kw(gen.tokenizer, 2, [gen.tokenizer.eos_token_id]))
    sync(device)


def markdown(doc: dict) -> list[str]:
    res, naive_run = doc["results"], not doc["skip_naive"]
    lines = ["# Generation speed: s3ft's greedy loop vs batched `model.generate`" + (" and a naive loop" if naive_run else "") + "\n",
             f"Machine: {doc['machine']}; {doc['date']}; {doc['model']}; measured {doc['dtype']} matmul peak "
             f"{doc['matmul_peak_gflops']} GFLOP/s (bench/roofline.py).\n",
             f"Command: `{doc['command']}`; whole benchmark {doc['wall_seconds']} s (model load and peak measurement included).\n",
             f"Load: 1-minute load average {doc['load_avg_start']} at start, {doc['load_avg_end']} at end, "
             f"{doc['cpu_count']} CPUs; this benchmark alone accounts for about {torch.get_num_threads()} "
             "(its torch threads), anything above that is other work: these CPUs are shared with other agents, whose "
             "load slows whichever arm it falls on - the load sampled during each arm is in the table.\n",
             "Arms: **s3ft** = `HFGenerator.stream` (what `s3ft generate` calls; the stage's JSONL writing is "
             "not timed, negligible); **generate** = one left-padded `model.generate(do_sample=False)` call per "
             "batch, the same length-sorted batches s3ft used; "
             + ("**naive** = `model.generate` one prompt at a time. Identical answers: token-identical text vs the naive loop.\n"
                if naive_run else "the naive per-example arm was skipped (`--skip_naive`): identical answers are counted "
                "against batched generate instead. The last naive-loop figures: `bench/results/generation_speed_naive.md`.\n"),
             "| task | prompts | mean prompt tokens | max new | batch rows | s3ft s | generate s | "
             + ("naive s | " if naive_run else "") + "s3ft vs generate | " + ("s3ft vs naive | " if naive_run else "")
             + "gen tok/s s3ft / generate" + (" / naive" if naive_run else "") + " | identical s3ft / generate vs "
             + ("naive" if naive_run else "generate") + " | load avg mean (max) s3ft / generate" + (" / naive" if naive_run else "")
             + " | peak fraction s3ft / generate" + (" / naive" if naive_run else "") + " |"]
    ncol = lines[-1].count("|") - 1
    lines.append("|" + "---|" * ncol)
    for r in res:
        la = lambda k: f"{r[k]['mean']} ({r[k]['max']})"  # noqa: E731
        cells = [r["task"], r["prompts"], r["mean_prompt_tokens"], r["max_new_tokens"], ", ".join(map(str, r["batch_rows"])),
                 r["s3ft_seconds"], r["generate_seconds"]]
        if naive_run:
            cells.append(r["naive_seconds"])
        cells.append(f"**{r['s3ft_vs_generate']}x**")
        if naive_run:
            cells.append(f"**{r['s3ft_vs_naive']}x**")
        cells.append(" / ".join(str(r[k]) for k in ("s3ft_gen_tok_per_s", "generate_gen_tok_per_s")
                                + (("naive_gen_tok_per_s",) if naive_run else ())))
        cells.append(f"{r['identical_s3ft_vs_reference']}/{r['answers']}" + (
            f" / {r['identical_generate_vs_reference']}/{r['answers']}" if naive_run else " / -"))
        cells.append(" / ".join(la(k) for k in ("load_avg_s3ft", "load_avg_generate") + (("load_avg_naive",) if naive_run else ())))
        cells.append(" / ".join(f"{r[k]:.1%}" for k in ("s3ft_peak_fraction", "generate_peak_fraction")
                                + (("naive_peak_fraction",) if naive_run else ())))
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines.append("\nRatios are wall-time ratios (other arm's seconds / s3ft's seconds): above 1, s3ft's loop is faster. "
                 "gen tok/s counts each answer's tokens up to and including its stop token.")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gsm8k", type=int, default=64, help="GSM8K prompts (short prompt, long answer: decode-bound)")
    ap.add_argument("--squad", type=int, default=48, help="SQuAD prompts (long context, short answer: prefill-bound)")
    ap.add_argument("--batch_size", type=int, default=0, help="0: automatic (what s3ft uses by default)")
    ap.add_argument("--skip_naive", action="store_true",
                    help="skip the slow per-example loop; identical answers are then counted against batched generate")
    add_dtype_argument(ap, "generation_speed")
    add_device_argument(ap)
    a = ap.parse_args()
    dtype = resolve_dtype_and_out(a, "generation_speed")
    from s3ft.backends.hf import HFGenerator

    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    torch.manual_seed(0)
    peak = matmul_peak(dtype=getattr(torch, dtype), device=a.device)["peak_flops"]
    gen = HFGenerator.from_name(MODEL, batch_size=a.batch_size, dtype=dtype, device=a.device)
    warm_up(gen, a.device)
    work = [(task, *prompts_for(task, n)) for task, n in (("gsm8k", a.gsm8k), ("squad", a.squad)) if n > 0]
    results = []
    for task, prompts, max_new in work:
        if prompts:
            r = run_task(task, prompts, max_new, a.batch_size, gen, peak, a.device, a.skip_naive)
            print(json.dumps(r), flush=True)
            results.append(r)
    doc = {"benchmark": "generation: s3ft's greedy loop (HFGenerator.stream) vs batched model.generate"
                        + ("" if a.skip_naive else " and a naive per-example model.generate loop"),
           "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
           "model": f"SmolLM2-135M-Instruct ({dtype}, {'GPU' if on_gpu(a.device) else 'CPU'})", "dtype": dtype,
           "device": a.device, "skip_naive": a.skip_naive, "matmul_peak_gflops": round(peak / 1e9, 1),
           "cpu_count": os.cpu_count(), "load_avg_start": round(load_start, 2), "load_avg_end": round(os.getloadavg()[0], 2),
           "wall_seconds": round(time.perf_counter() - t_start, 1), "results": results,
           "command": "python " + " ".join(sys.argv)}
    save(doc, Path(a.out), markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
