"""The forgetting instruments on the embedded model: what must score well and what must score badly.

    python bench/forgetting_probe.py [--ifeval_limit 100] [--ifeval_max_new_tokens 512] [--out bench/results/forgetting_probe.json]

One `s3ft run` (task jsonl, method sft, ifeval and drift on) trains SmolLM2-135M-Instruct on 128
SQuAD training questions whose target is the first word of the gold answer, at a high learning
rate (1e-3, 3 epochs): a model damaged into answering in one word. The run evaluates the base
model and the damaged one on the same seeded IFEval prompts (scores and style) and measures the
damaged model's drift from the base along the base model's own answers. The base model against
itself (drift exactly 0) is measured here too, on the first 16 general prompts. Results, per-stage
wall times and a sample of answers go to OUT.json / OUT.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save  # noqa: E402


def one_word_data(folder: Path) -> dict[str, str]:
    from s3ft.tasks import get_task

    task = get_task("squad")
    out = {}
    for split, n in (("train", 128), ("test", 40)):
        rows = [{"id": e.id, "prompt": e.prompt[-1]["content"], "response": e.gold.split()[0].strip(".,;:")}
                for e in task.load(split, n, 0)]
        path = folder / f"forgetting_probe_{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out[split] = str(path)
    return out


def base_against_itself(run: Path, n: int = 16) -> dict:
    """drift_rows with the base model as both models, on its own IFEval answers: must be 0."""
    from s3ft.drift import drift_rows
    from s3ft.models import load_model, load_tokenizer
    from s3ft.runs import read_jsonl
    from s3ft.stages.ifeval import examples

    answers = {r["id"]: r["response"] for r in read_jsonl(run / "ifeval" / "base.jsonl")}
    exs = [e for e in examples(None, 0) if e.id in answers][:n]
    tok = load_tokenizer("smollm2-135m-instruct")
    a, b = load_model("smollm2-135m-instruct"), load_model("smollm2-135m-instruct")
    rows = drift_rows(a, tok, [e.prompt for e in exs], [answers[e.id] for e in exs], reference=b, progress=False)
    return {"answers": len(rows), "max_kl": max(r["kl_max"] for r in rows), "tokens": sum(r["tokens"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ifeval_limit", type=int, default=100)
    ap.add_argument("--ifeval_max_new_tokens", type=int, default=512)
    ap.add_argument("--run_dir", default="runs/forgetting-probe")
    ap.add_argument("--out", default="bench/results/forgetting_probe.json")
    a = ap.parse_args()
    run = Path(a.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    files = one_word_data(run.parent)
    recipe = run.parent / "forgetting_probe.yaml"
    recipe.write_text(
        f"model: smollm2-135m-instruct\ntask: jsonl\nid_field: id\njudge: qa\n"
        f"data_files: {{train: {files['train']}, test: {files['test']}}}\nmethod: sft\noutput_dir: {run}\n"
        f"max_new_tokens: 64\nlearning_rate: 1.0e-3\nnum_train_epochs: 3\nper_device_train_batch_size: 8\n"
        f"ifeval: true\nifeval_limit: {a.ifeval_limit}\nifeval_max_new_tokens: {a.ifeval_max_new_tokens}\ndrift: true\n")
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "s3ft.cli", "run", str(recipe)], check=True)
    wall = time.time() - t0
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    from s3ft.runs import read_jsonl

    doc = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
           "command": "python bench/forgetting_probe.py " + " ".join(sys.argv[1:]),
           "ifeval_limit": a.ifeval_limit, "ifeval_max_new_tokens": a.ifeval_max_new_tokens, "wall_seconds": round(wall, 1),
           "stage_seconds": {k: v.get("seconds") for k, v in stages.items()},
           "base": {"ifeval": stages["ifeval.base"]["ifeval"], "style": stages["ifeval.base"]["style"]},
           "damaged": {"ifeval": stages["ifeval.sft"]["ifeval"], "style": stages["ifeval.sft"]["style"],
                       "drift": stages["drift.sft"]["drift"]},
           "base_vs_base": base_against_itself(run)}
    base_ans = {r["id"]: r for r in read_jsonl(run / "ifeval" / "base.jsonl")}
    sample = [(r["id"], base_ans[r["id"]]["response"][:160], r["response"][:160]) for r in read_jsonl(run / "ifeval" / "sft.jsonl")[:4]]
    doc["sample"] = sample
    fig = lambda f, m: f"{f[m]['mean']:.1f} [{f[m]['ci95'][0]:.1f}, {f[m]['ci95'][1]:.1f}]"  # noqa: E731
    md = ["# Forgetting instruments on the embedded model: base vs a model damaged into one-word answers",
          "", f"{doc['date']}, {doc['machine']}. `{doc['command']}`; wall time {wall / 60:.1f} min.",
          f"IFEval: seeded {a.ifeval_limit} of 541 prompts, answers capped at {a.ifeval_max_new_tokens} tokens.", "",
          "| measure | base | damaged (SFT on one-word answers) |", "|---|---|---|"]
    for m in ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose"):
        md.append(f"| IFEval {m.replace('_', ' ')} | {fig(doc['base']['ifeval'], m)} | {fig(doc['damaged']['ifeval'], m)} |")
    for k in ("words_median", "short_pct", "empty_pct", "cut_off_pct", "repetition_pct"):
        md.append(f"| style: {k} | {doc['base']['style'][k]} | {doc['damaged']['style'][k]} |")
    for s in ("general", "task"):
        d = doc["damaged"]["drift"][s]
        md.append(f"| drift KL per token ({s}, {d['answers']} answers) | 0 (base vs base: max {doc['base_vs_base']['max_kl']} "
                  f"over {doc['base_vs_base']['tokens']} tokens) | {d['kl']['mean']:.3f} [{d['kl']['ci95'][0]:.3f}, {d['kl']['ci95'][1]:.3f}] |")
    md += ["", "Stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in doc["stage_seconds"].items()), "",
           "Sample (IFEval prompt key, base answer, damaged answer; first 160 characters):", ""]
    md += [f"- {k}: base `{b!r}` / damaged `{d!r}`" for k, b, d in sample]
    save(doc, Path(a.out), md)


if __name__ == "__main__":
    main()
