"""Benchmark 1: s3ft's greedy generation vs batched `model.generate` (the library's best use) and a
naive per-example loop - same loaded model, same prompts, same greedy settings.

    python bench/generation_speed.py [--gsm8k 64] [--squad 48] [--batch_size 0] [--skip_naive]
                                     [--generate_first] [--threads 0] [--dtype auto] [--device cpu] [--out ...]

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

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict:
        return {"mean": round(sum(self.samples) / len(self.samples), 2), "max": round(max(self.samples), 2)}


def timed(fn, device: str):
    """(fn(), wall seconds, this process's CPU seconds (all threads), load average during it)."""
    sync(device)
    with LoadSampler() as load:
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        sync(device)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return out, seconds, cpu, load.summary()


def _count(ids, stop):
    """Generated tokens of one answer: up to and including its stop token."""
    for j, t in enumerate(ids):
        if t in stop:
            return j + 1
    return len(ids)


def _greedy_kw(tok, max_new_tokens, stop) -> dict:
    return {"max_new_tokens": max_new_tokens, "do_sample": False, "temperature": None, "top_p": None, "top_k": None,
            "eos_token_id": stop, "pad_token_id": tok.pad_token_id}


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
        from s3ft.backends import hf, hf_decode

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

    def __enter__(self):
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


def plan_auto(model, prompt_tokens: list[int], order: list[int], max_new: int) -> list[int]:
    """The batch sizes HFGenerator.stream picks with batch_size 0: auto_batch_size for the longest
    prompt left, batch after batch (free memory is read at each call, as it is there)."""
    from s3ft.backends.hf import auto_batch_size

    sizes, start = [], 0
    while start < len(order):
        sizes.append(auto_batch_size(model, prompt_tokens[order[start]], max_new))
        start += sizes[-1]
    return sizes


def run_task(task: str, prompts: list, max_new: int, batch_size: int, gen, peak: float, device: str,
             arms: list[str]) -> dict:
    from s3ft.backends.base import render_prompt, stop_ids

    n = len(prompts)
    tok, model = gen.tokenizer, gen.model
    stop = stop_ids(tok, model.generation_config)
    prompt_ids = [tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in prompts]
    prompt_tokens = [len(x) for x in prompt_ids]
    order = sorted(range(n), key=lambda i: prompt_tokens[i], reverse=True)  # HFGenerator.stream's order
    batches = None  # the batches batched generate runs: s3ft's own when s3ft ran first
    texts, new_tokens, seconds, cpu, load = {}, {}, {}, {}, {}
    r = {"task": task, "prompts": n, "max_new_tokens": max_new, "batch_size": batch_size, "arm_order": arms}

    def s3ft_arm():
        out: list[str | None] = [None] * n
        for i, text, *_ in gen.stream(prompts, max_new, progress=False):  # (index, text[, stop reason])
            out[i] = text
        return out

    for arm in arms:
        if arm == "s3ft":
            with Recorder(stop) as rec:
                texts[arm], seconds[arm], cpu[arm], load[arm] = timed(s3ft_arm, device)
            if not rec.decode_calls:
                raise SystemExit("HFGenerator.stream did not run s3ft's greedy loop (hf_decode.greedy_decode): nothing to compare")
            new_tokens[arm] = rec.new_tokens
            r["s3ft_prefill_each"] = sorted(rec.prefill_each) == [True]
            if not batch_size:
                if not rec.sizes:
                    raise SystemExit("HFGenerator.stream did not call s3ft.backends.hf.auto_batch_size: cannot copy its batches")
                s3ft_batches = plan_batches(order, rec.sizes)
                if batches is None:
                    batches, r["batch_sizes_from"] = s3ft_batches, "auto_batch_size as called in the s3ft arm"
                r["s3ft_batch_rows"] = [len(x) for x in s3ft_batches]
        elif arm == "generate":
            if batches is None:
                batches = plan_batches(order, batch_size or plan_auto(model, prompt_tokens, order, max_new))
                r["batch_sizes_from"] = "fixed --batch_size" if batch_size else "auto_batch_size, called as HFGenerator.stream calls it"
            (texts[arm], new_tokens[arm]), seconds[arm], cpu[arm], load[arm] = timed(
                lambda b=batches: batched_generate(model, tok, prompt_ids, b, max_new, stop), device)
            r["batch_rows"] = [len(x) for x in batches]
        elif arm == "naive":
            (texts[arm], new_tokens[arm]), seconds[arm], cpu[arm], load[arm] = timed(
                lambda: naive(model, tok, prompt_ids, max_new, stop), device)
    if batch_size:
        r["batch_sizes_from"] = "fixed --batch_size"
    ref = "naive" if "naive" in arms else "generate"
    flops_tok = forward_flops_per_token(model.config, context=sum(prompt_tokens) / n)
    processed = sum(prompt_tokens) + new_tokens[ref]  # useful work: every prompt token + the reference's generated tokens
    r.update({"mean_prompt_tokens": round(sum(prompt_tokens) / n, 1), "reference": ref, "answers": n})
    for arm in arms:
        r.update({f"generated_tokens_{arm}": new_tokens[arm], f"{arm}_seconds": round(seconds[arm], 2),
                  f"{arm}_cpu_seconds": round(cpu[arm], 1), f"{arm}_gen_tok_per_s": round(new_tokens[arm] / seconds[arm], 1),
                  f"{arm}_peak_fraction": round(processed * flops_tok / seconds[arm] / peak, 4),
                  f"load_avg_{arm}": load[arm]})
        if arm != ref:
            r[f"identical_{arm}_vs_{ref}"] = sum(x == y for x, y in zip(texts[ref], texts[arm]))
    for other in ("generate", "naive"):
        if other in arms:
            r[f"s3ft_vs_{other}"] = round(seconds[other] / seconds["s3ft"], 2)
            r[f"s3ft_vs_{other}_cpu"] = round(cpu[other] / cpu["s3ft"], 2)
    if "naive" in arms:
        r["generate_vs_naive"] = round(seconds["naive"] / seconds["generate"], 2)
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
    arms = doc["arms"]
    ref = "naive" if naive_run else "generate"
    others = [x for x in ("generate", "naive") if x in arms]
    slash = " / ".join
    lines = ["# Generation speed: s3ft's greedy loop vs batched `model.generate`" + (" and a naive loop" if naive_run else "") + "\n",
             (f"Machine: {doc['machine']}; {doc['date']}; {doc['model']}; measured {doc['dtype']} matmul peak "
              f"{doc['matmul_peak_gflops']} GFLOP/s (bench/roofline.py).\n"),
             (f"Command: `{doc['command']}`; whole benchmark {doc['wall_seconds']} s (model load and peak measurement "
              f"included); arms in the order {', '.join(arms)} on each task.\n"),
             (f"Load: 1-minute load average {doc['load_avg_start']} at start, {doc['load_avg_end']} at end, "
              f"{doc['cpu_count']} CPUs; this benchmark alone accounts for about {torch.get_num_threads()} "
              "(its torch threads), anything above that is other work: these CPUs are shared with other agents, whose "
              "load slows whichever arm it falls on - the load sampled during each arm is in the table, and so is each "
              "arm's CPU time (this process, all threads), which other processes' load inflates less than wall time.\n"),
             "Arms: **s3ft** = `HFGenerator.stream` (what `s3ft generate` calls; the stage's JSONL writing is "
             "not timed, negligible); **generate** = one left-padded `model.generate(do_sample=False)` call per "
             "batch, the same length-sorted batches s3ft used; "
             + ("**naive** = `model.generate` one prompt at a time. Identical answers: token-identical text vs the naive loop.\n"
                if naive_run else "the naive per-example arm was skipped (`--skip_naive`): identical answers are counted "
                "against batched generate instead. The last naive-loop figures: `bench/results/generation_speed_naive.md`.\n"),
             "| task | prompts | mean prompt tokens | max new | batch rows | " + slash(f"{x} s" for x in arms)
             + " | " + " | ".join(f"s3ft vs {x}" for x in others) + " | CPU s " + slash(arms)
             + " | " + " | ".join(f"s3ft vs {x} (CPU)" for x in others) + " | gen tok/s " + slash(arms)
             + " | identical " + slash(x for x in arms if x != ref) + f" vs {ref} | load avg mean (max) " + slash(arms)
             + " | peak fraction " + slash(arms) + " |"]
    ncol = lines[-1].count("|") - 1
    lines.append("|" + "---|" * ncol)
    for r in res:
        cells = [r["task"], r["prompts"], r["mean_prompt_tokens"], r["max_new_tokens"], ", ".join(map(str, r["batch_rows"])),
                 slash(str(r[f"{x}_seconds"]) for x in arms)]
        cells += [f"**{r[f's3ft_vs_{x}']}x**" for x in others]
        cells.append(slash(str(r[f"{x}_cpu_seconds"]) for x in arms))
        cells += [f"{r[f's3ft_vs_{x}_cpu']}x" for x in others]
        cells.append(slash(str(r[f"{x}_gen_tok_per_s"]) for x in arms))
        cells.append(slash(f"{r[f'identical_{x}_vs_{ref}']}/{r['answers']}" for x in arms if x != ref))
        cells.append(slash(f"{r[f'load_avg_{x}']['mean']} ({r[f'load_avg_{x}']['max']})" for x in arms))
        cells.append(slash(f"{r[f'{x}_peak_fraction']:.1%}" for x in arms))
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines.append("\nRatios: the other arm's seconds / s3ft's seconds - above 1, s3ft's loop is faster. gen tok/s counts "
                 "each answer's tokens up to and including its stop token.")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gsm8k", type=int, default=64, help="GSM8K prompts (short prompt, long answer: decode-bound)")
    ap.add_argument("--squad", type=int, default=48, help="SQuAD prompts (long context, short answer: prefill-bound)")
    ap.add_argument("--batch_size", type=int, default=0, help="0: automatic (what s3ft uses by default)")
    ap.add_argument("--skip_naive", action="store_true",
                    help="skip the slow per-example loop; identical answers are then counted against batched generate")
    ap.add_argument("--generate_first", action="store_true",
                    help="run batched generate before s3ft on each task (default: s3ft first, and generate copies its batches); "
                         "a second run in the other order evens out load that falls on one arm")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (0: torch's default, all cores). 1 takes OpenMP's barriers out of the "
                         "comparison when other processes load the CPUs: a parallel region then waits for no "
                         "descheduled thread, which penalizes many small operations (s3ft's per-prompt prefill, "
                         "shrinking batches) more than few large ones")
    add_dtype_argument(ap, "generation_speed")
    add_device_argument(ap)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dtype = resolve_dtype_and_out(a, "generation_speed")
    from s3ft.backends.hf import HFGenerator

    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    torch.manual_seed(0)
    peak = matmul_peak(dtype=getattr(torch, dtype), device=a.device)["peak_flops"]
    gen = HFGenerator.from_name(MODEL, batch_size=a.batch_size, dtype=dtype, device=a.device)
    warm_up(gen, a.device)
    arms = (["generate", "s3ft"] if a.generate_first else ["s3ft", "generate"]) + ([] if a.skip_naive else ["naive"])
    work = [(task, *prompts_for(task, n)) for task, n in (("gsm8k", a.gsm8k), ("squad", a.squad)) if n > 0]
    results = []
    for task, prompts, max_new in work:
        if prompts:
            r = run_task(task, prompts, max_new, a.batch_size, gen, peak, a.device, arms)
            print(json.dumps(r), flush=True)
            results.append(r)
    doc = {"benchmark": "generation: s3ft's greedy loop (HFGenerator.stream) vs batched model.generate"
                        + ("" if a.skip_naive else " and a naive per-example model.generate loop"),
           "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
           "model": f"SmolLM2-135M-Instruct ({dtype}, {'GPU' if on_gpu(a.device) else 'CPU'})", "dtype": dtype,
           "device": a.device, "skip_naive": a.skip_naive, "arms": arms, "torch_threads": torch.get_num_threads(), "matmul_peak_gflops": round(peak / 1e9, 1),
           "cpu_count": os.cpu_count(), "load_avg_start": round(load_start, 2), "load_avg_end": round(os.getloadavg()[0], 2),
           "wall_seconds": round(time.perf_counter() - t_start, 1), "results": results,
           "command": "python " + " ".join(sys.argv)}
    save(doc, Path(a.out), markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
