"""Stage `build`: the method's training set -> train.<method>.jsonl, one row per example
{id, prompt, completion, source}; the source (self / paraphrase / gold) is chosen by
`s3ft.selection` from the method's preference in `s3ft.methods`."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from s3ft import selection
from s3ft.runs import JsonlWriter, file_fingerprint, fingerprint, read_jsonl
from s3ft.stages.common import Stages, by_id, examples_fp, log
from s3ft.types import Example


def build(stages: Stages, method: str, examples: Sequence[Example], judged_path: Path | None,
          para_path: Path | None) -> Path:
    """`judged_path` / `para_path`: the judged own answers and paraphrases (None when the method
    uses none)."""
    out = stages.run / f"train.{method}.jsonl"
    name = f"build.{method}"
    fp = fingerprint(name, examples_fp(examples), judged_path and file_fingerprint(judged_path),
                     para_path and file_fingerprint(para_path))

    def work(info: dict) -> None:
        own = by_id(read_jsonl(judged_path)) if judged_path else {}
        para = by_id(read_jsonl(para_path)) if para_path else {}
        rows = selection.build_training_set(method, examples, own, para)
        with JsonlWriter(out) as w:
            for r in rows:
                w.write(r)
        info["mix"] = selection.mix(rows)
        p = info["mix"]["percent"]
        log(f"build ({method}): {len(rows)} rows - own {p['self']}% / paraphrase {p['paraphrase']}% / gold {p['gold']}%")

    stages.run_stage(name, fp, [out], work, resumable=False)
    return out
