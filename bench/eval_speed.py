"""Benchmark 5: general-ability scoring, s3ft's context-sharing HFLM vs lm-eval's own HFLM.

    python bench/eval_speed.py [--limit 20] [--batch_size 16] [--dtype auto] [--out ...]

Both score the same seeded questions of every general benchmark the study uses (the tasks
`s3ft.general.prepare_tasks` writes over the bundled data) with the embedded model on CPU in
--dtype (auto: what s3ft computes in on this machine): lm-eval's `HFLM` at its batch size, and `s3ft.general_lm.PrefixSharingHFLM` (each context
once, its KV cache shared by the choices). Reported per benchmark: wall time, speed-up, the
largest difference between the two log-likelihoods of any choice, and whether the metric is
the same. Writes a JSON and a Markdown table.
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
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_dtype_argument, machine, resolve_dtype_and_out, save  # noqa: E402

BENCHMARKS = ["mmlu", "truthfulqa_mc2", "hellaswag", "arc_easy", "arc_challenge", "winogrande"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=20, help="seeded questions per benchmark")
    ap.add_argument("--batch_size", type=int, default=16, help="HFLM's batch size (s3ft's default when batch_size is 0)")
    ap.add_argument("--benchmarks", nargs="+", default=BENCHMARKS)
    add_dtype_argument(ap, "eval_speed")
    a = ap.parse_args()
    dtype = resolve_dtype_and_out(a, "eval_speed")
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from s3ft import general
    from s3ft.general_lm import PrefixSharingHFLM

    args = general._model_args("smollm2-135m-instruct", a.batch_size, "cpu", dtype)
    models = {"hflm": HFLM.create_from_arg_obj(dict(args)), "s3ft": PrefixSharingHFLM.create_from_arg_obj(dict(args))}
    results = []
    with tempfile.TemporaryDirectory() as d:
        general.prepare_tasks(a.benchmarks, a.limit, 0, Path(d))
        tm = general.task_manager(Path(d))
        for name in a.benchmarks:
            bench = general.BENCHMARKS[name]
            r: dict = {"benchmark": name, "questions": a.limit}
            samples = {}
            for key, lm in models.items():
                t0 = time.time()
                res = lm_eval.simple_evaluate(model=lm, tasks=[bench.task], task_manager=tm, log_samples=True)
                r[f"{key}_seconds"] = round(time.time() - t0, 1)
                r[f"{key}_{bench.metric}"] = round(100 * res["results"][bench.task][f"{bench.metric},none"], 2)
                samples[key] = sorted(res["samples"][bench.task], key=lambda s: s["doc_id"])
            diffs = [abs(x[0][0] - y[0][0]) for sa, sb in zip(samples["hflm"], samples["s3ft"])
                     for x, y in zip(sa["resps"], sb["resps"])]
            r["choices"] = len(diffs)
            r["max_abs_loglik_diff"] = float(f"{max(diffs):.2g}")
            r["speedup"] = round(r["hflm_seconds"] / r["s3ft_seconds"], 2)
            print(json.dumps(r), flush=True)
            results.append(r)
    total_h, total_s = sum(r["hflm_seconds"] for r in results), sum(r["s3ft_seconds"] for r in results)
    doc = {"benchmark": "general-ability scoring: context-sharing HFLM vs lm-eval HFLM", "machine": machine(),
           "date": time.strftime("%Y-%m-%d %H:%M"), "model": f"SmolLM2-135M-Instruct ({dtype}, CPU)", "dtype": dtype,
           "hflm_batch_size": a.batch_size, "results": results, "total_hflm_seconds": round(total_h, 1),
           "total_s3ft_seconds": round(total_s, 1), "total_speedup": round(total_h / total_s, 2),
           "load_avg_at_end": os.getloadavg()[0], "command": "python " + " ".join(sys.argv)}
    lines = ["# General-ability scoring speed: context-sharing HFLM vs lm-eval's HFLM\n",
             f"Machine: {doc['machine']}; {doc['date']}; {doc['model']}; HFLM batch size {a.batch_size}.\n",
             f"Command: `{doc['command']}`\n",
             "| benchmark | questions | choices | HFLM s | s3ft s | speed-up | metric HFLM / s3ft | max abs log-lik diff |",
             "|" + "---|" * 8]
    for r in results:
        m = general.BENCHMARKS[r["benchmark"]].metric
        lines.append(f"| {r['benchmark']} | {r['questions']} | {r['choices']} | {r['hflm_seconds']} | {r['s3ft_seconds']} | "
                     f"**{r['speedup']}x** | {r[f'hflm_{m}']} / {r[f's3ft_{m}']} | {r['max_abs_loglik_diff']} |")
    lines.append(f"| **all** | | | {doc['total_hflm_seconds']} | {doc['total_s3ft_seconds']} | **{doc['total_speedup']}x** | | |")
    save(doc, Path(a.out), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
