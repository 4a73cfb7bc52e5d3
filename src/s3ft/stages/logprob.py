"""Stage `logprob` (the paper's Figure 2): log p(response | prompt) under the base model for the
gold answers, the accepted paraphrases and the accepted own answers of the training set
-> logprob.jsonl, one row per response."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from s3ft import selection
from s3ft.runs import JsonlWriter, fingerprint, read_jsonl
from s3ft.stages.common import Stages, by_id, log
from s3ft.types import Example


def logprob(stages: Stages, examples: Sequence[Example], judged_path: Path | None, para_path: Path | None,
            scorer: Callable[[], Any], model_id: str, dtype: str, batch_size: int) -> list[dict[str, Any]]:
    """`scorer()` returns the loaded base model (`.model`, `.tokenizer`); it is called only when
    the stage runs."""
    from s3ft.logprob import sequence_logprobs

    own = by_id(read_jsonl(judged_path)) if judged_path else {}
    para = by_id(read_jsonl(para_path)) if para_path else {}
    items = []
    for e in examples:
        items.append((e, "gold", e.gold))
        if (t := selection.accepted_paraphrase(para.get(e.id))) is not None:
            items.append((e, "paraphrase", t))
        if (t := selection.accepted_own(own.get(e.id))) is not None:
            items.append((e, "self", t))
    out = stages.run / "logprob.jsonl"
    fp = fingerprint("logprob", model_id, [(e.id, kind, t) for e, kind, t in items], dtype)

    def work(info: dict) -> None:
        log(f"logprob: scoring {len(items)} training targets under the base model -> {out}")
        gen = scorer()
        vals = sequence_logprobs(gen.model, gen.tokenizer, [e.prompt for e, _, _ in items], [t for _, _, t in items],
                                 batch_size=batch_size)
        with JsonlWriter(out) as w:
            for (e, kind, _), v in zip(items, vals):
                w.write({"id": e.id, "kind": kind, **v})
        info["rows"] = len(items)

    stages.run_stage("logprob", fp, [out], work, resumable=False)
    return read_jsonl(out)
