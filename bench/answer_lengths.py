"""How long the embedded model's answers and paraphrases are, per built-in task: the data the
tasks' token limits are sized from.

    python bench/answer_lengths.py [--n 48] [--tasks squad,nq_open,gsm8k,mbpp] [--kinds answer,paraphrase]
                                   [--slice A:B] [--cap N] [--out bench/results/answer_lengths] [--replies REPLIES.jsonl]

For each task, the base model (greedy, as `s3ft generate`) answers --n seeded training prompts and
paraphrases their gold answers (the paraphrase prompt of `s3ft paraphrase`) with a generous cap
(2x the task's limit, at least 256 tokens). Reported per kind: token-length percentiles of the
answers that ended on their own (end of turn), how many ran into the generous cap (runaways that
would never end), and how many a given limit would cut off. A limit fits when a normal answer
(one that ends) fits with room to spare: the tasks use about 1.5x the 90th percentile of those,
rounded up to a multiple of 64 tokens. --replies writes every reply ({task, kind, id, response,
stop, tokens}, one a line) for reading or judging (bench/squad_judge_probe.py --replies); --slice A:B
keeps prompts A to B-1 of the --n seeded ones, so that a slow machine can measure them in parts;
--cap sets the generous cap (default: 2x the task's limit, at least 256).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pct(values: list[int], q: float) -> int | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def measure(task: str, n: int, gen, tokenizer, kinds: tuple[str, ...] = ("answer", "paraphrase"),
            replies: list[dict] | None = None, part: slice = slice(None), cap: int | None = None) -> dict:
    from s3ft.paraphrase import paraphrase_prompt
    from s3ft.tasks import get_task

    t = get_task(task)
    exs = t.load("train", limit=n, seed=0)[part]
    cap = cap or max(256, 2 * t.max_new_tokens)
    out = {"task": task, "prompts": len(exs), "cap": cap, "limits": {"answer": t.max_new_tokens,
           "paraphrase": t.paraphrase_max_new_tokens, "eval": t.eval_max_new_tokens}}
    for kind, prompts, limit in (("answer", [e.prompt for e in exs], t.max_new_tokens),
                                 ("paraphrase", [paraphrase_prompt(e, t.paraphrase_kind) for e in exs], t.paraphrase_max_new_tokens)):
        if kind not in kinds:
            continue
        t0 = time.perf_counter()
        rows = sorted(gen.stream(prompts, cap, progress=False))
        lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for _, text, _ in rows]
        ended = [n for n, (_, _, stop) in zip(lengths, rows) if stop != "length"]
        if replies is not None:
            replies += [{"task": task, "kind": kind, "id": exs[i].id, "response": text, "stop": stop, "tokens": k}
                        for k, (i, text, stop) in zip(lengths, rows)]
        out[kind] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "ended": len(ended), "ran_into_cap": len(rows) - len(ended),
            "p50": pct(ended, 0.5), "p90": pct(ended, 0.9), "p95": pct(ended, 0.95), "max": max(ended, default=None),
            "cut_by_limit": sum(n >= limit for n in lengths), "limit": limit,
            "example": rows[0][1][:300],
        }
        print(json.dumps({task: {kind: out[kind]}}), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--tasks", default="squad,nq_open,gsm8k,mbpp")
    ap.add_argument("--kinds", default="answer,paraphrase", help="answer, paraphrase or both")
    ap.add_argument("--out", default="bench/results/answer_lengths")
    ap.add_argument("--replies", default=None, help="also write every reply to this JSONL file")
    ap.add_argument("--slice", default=":", help="A:B - only prompts A to B-1 of the --n seeded ones")
    ap.add_argument("--cap", type=int, default=None, help="the generous cap (default: 2x the task's limit, at least 256)")
    a = ap.parse_args()
    from s3ft.backends.hf import HFGenerator

    kinds = tuple(a.kinds.split(","))
    part = slice(*(int(x) if x else None for x in a.slice.split(":")))
    gen = HFGenerator.from_name("smollm2-135m-instruct", dtype="float32", device="cpu")
    replies: list[dict] | None = [] if a.replies else None
    results = [measure(task, a.n, gen, gen.tokenizer, kinds, replies, part, a.cap) for task in a.tasks.split(",")]
    if a.replies:
        Path(a.replies).parent.mkdir(parents=True, exist_ok=True)
        Path(a.replies).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in replies))
    doc = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "date": time.strftime("%Y-%m-%d"),
           "load_avg_at_end": round(os.getloadavg()[0], 2), "command": "python " + " ".join(sys.argv),
           "model": "SmolLM2-135M-Instruct (embedded, float32, greedy)", "results": results}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    lines = ["# Answer and paraphrase lengths of the embedded model (what the task limits are sized from)", "",
             f"{doc['date']}, {doc['machine']}, {doc['model']}; `{doc['command']}`; load average at the end "
             f"{doc['load_avg_at_end']}.", "",
             "Token lengths of the replies that ended on their own (end of turn), with a generous cap; "
             "'ran into cap': replies still going at the cap (the model repeats itself); 'cut by limit': "
             "replies the task's limit cuts off (these are never training targets).", "",
             "| task | kind | n | p50 | p90 | p95 | max | ran into cap | task limit | cut by limit |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for kind in (k for k in ("answer", "paraphrase") if k in r):
            k = r[kind]
            lines.append(f"| {r['task']} | {kind} | {r['prompts']} | {k['p50']} | {k['p90']} | {k['p95']} | {k['max']} | "
                         f"{k['ran_into_cap']} (cap {r['cap']}) | {k['limit']} | {k['cut_by_limit']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
