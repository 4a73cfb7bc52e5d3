"""Stage `generate`: the base model answers every training input (S3FT step 1) -> own.jsonl."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from s3ft.backends.base import LENGTH
from s3ft.runs import fingerprint, read_jsonl
from s3ft.stages.common import Decoding, Stages, examples_fp, log, pending, stream_rows
from s3ft.types import Example


def generate(stages: Stages, examples: Sequence[Example], generator, model_id: str, decoding: Decoding,
             flush_every: int) -> Path:
    out = stages.run / "own.jsonl"
    fp = fingerprint("generate", model_id, examples_fp(examples), decoding.fingerprint())

    def work(info: dict) -> None:
        todo, done = pending(out, examples)
        log(f"generate: {len(todo)} own answers to write ({done} already done) -> {out}")
        stream_rows(out, todo, generator, [e.prompt for e in todo], decoding.max_new_tokens, decoding.kwargs(),
                    "own answers", lambda batch: [{"id": e.id, "response": t} for e, t, _ in batch], flush_every)
        info["rows"] = len(examples)
        info["cut_off"] = sum(r.get("stop") == LENGTH for r in read_jsonl(out))
        if info["cut_off"]:
            log(f"generate: {info['cut_off']} of {len(examples)} own answers hit max_new_tokens "
                f"({decoding.max_new_tokens}): cut off, they are never training targets")

    stages.run_stage("generate", fp, [out], work)
    return out
