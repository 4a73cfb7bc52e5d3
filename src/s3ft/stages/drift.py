"""Stage `drift`: how far a fine-tuned model moved from the base model (s3ft.drift) on the base
model's own greedy answers to general prompts (its IFEval answers) and to the task's evaluation
prompts (its in-domain answers) -> drift/<name>.jsonl (one row per answer: set, id, tokens, kl,
kl_max, logp_tuned, logp_base). The stage record holds per set the mean KL(base || tuned) per
token and the drop in the answers' log-likelihood, with 95% intervals."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from s3ft.runs import JsonlWriter, file_fingerprint, fingerprint, read_jsonl
from s3ft.stages.common import Stages, by_id, libs_fp, log
from s3ft.types import Example

SETS = ("general", "task")  # the base model's answers to the IFEval prompts, to the task's evaluation prompts


def drift(stages: Stages, name: str, model_fp: str, sets: dict[str, tuple[Sequence[Example], Path]],
          load: Callable[[], tuple[Any, Any, Any]], dtype: str, tokens_per_batch: int,
          free_memory: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """`sets`: {set name: (its prompts as examples, the base model's answers file)}; `load()`
    returns (tuned model, tokenizer, reference) where reference is None when the tuned model is
    a peft model (its base: the adapter disabled), else the base model."""
    from s3ft.drift import drift_rows, summarize

    out = stages.run / "drift" / f"{name}.jsonl"
    stage = f"drift.{name}"
    fp = fingerprint(stage, model_fp, {k: file_fingerprint(p) for k, (_, p) in sorted(sets.items())},
                     {k: [(e.id, e.prompt) for e in exs] for k, (exs, _) in sorted(sets.items())}, dtype, libs_fp())

    def work(info: dict) -> None:
        items = []  # (set, example, base answer)
        for set_name, (exs, answers) in sets.items():
            base = by_id(read_jsonl(answers))
            items += [(set_name, e, base[e.id]["response"]) for e in exs if e.id in base]
        log(f"drift {name}: KL(base || {name}) on {len(items)} base-model answers "
            f"({', '.join(f'{k}: {sum(s == k for s, _, _ in items)}' for k in sets)}) -> {out}")
        free_memory()
        tuned, tokenizer, reference = load()
        rows = drift_rows(tuned, tokenizer, [e.prompt for _, e, _ in items], [t for _, _, t in items],
                          reference=reference, tokens_per_batch=tokens_per_batch)
        with JsonlWriter(out) as w:
            for (set_name, e, _), r in zip(items, rows):
                w.write({"set": set_name, "id": e.id, **r})
        info["drift"] = {k: summarize([r for (s, _, _), r in zip(items, rows) if s == k]) for k in sets}
        log(f"drift {name}: " + "; ".join(f"{k} KL {v['kl']['mean']:.4f} nats/token, log-likelihood drop "
                                          f"{v['logp_drop']['mean']:.4f}" for k, v in info["drift"].items() if v["answers"]))

    return stages.run_stage(stage, fp, [out], work, resumable=False)
