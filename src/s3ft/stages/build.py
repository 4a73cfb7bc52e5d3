"""Stage `build`: the method's training set -> train.<method>.jsonl, one row per example (rft:
per kept target) {id, prompt, completion, source, ...} - prompt the chat messages, completion one
assistant message (TRL's conversational prompt-completion format, which `trl sft` and
`SFTTrainer` take as they are; files written before hold the completion as text, and
selection.completion_text reads both); the source (self / sampled / paraphrase /
gold) is chosen by `s3ft.selection` from the method's preference in `s3ft.methods`."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from s3ft import selection
from s3ft.methods import METHODS
from s3ft.runs import JsonlWriter, file_fingerprint, fingerprint, read_jsonl
from s3ft.stages.common import Stages, by_id, examples_fp, log
from s3ft.stages.likelihood import scores
from s3ft.types import Example


def build(stages: Stages, method: str, examples: Sequence[Example], judged_path: Path | None,
          para_path: Path | None, samples_path: Path | None = None, scores_path: Path | None = None,
          gold: str | None = None) -> Path:
    """`judged_path` / `para_path` / `samples_path` / `scores_path`: the judged own answers,
    paraphrases, judged samples and candidates' log-likelihoods (None when the method uses none);
    `gold`: rft's rft_gold (None for the other methods)."""
    out = stages.run / f"train.{method}.jsonl"
    name = f"build.{method}"
    extra = ([p and file_fingerprint(p) for p in (samples_path, scores_path)] + [gold]
             if samples_path or scores_path or gold else [])  # (none: the fingerprint of the first methods)
    fp = fingerprint(name, examples_fp(examples), judged_path and file_fingerprint(judged_path),
                     para_path and file_fingerprint(para_path), *extra)

    def work(info: dict) -> None:
        own = by_id(read_jsonl(judged_path)) if judged_path else {}
        para = by_id(read_jsonl(para_path)) if para_path else {}
        samples = by_id(read_jsonl(samples_path)) if samples_path else {}
        rows = selection.build_training_set(method, examples, own, para, samples, scores(scores_path), gold or "fallback")
        if not rows:
            raise ValueError(f"{method}: no training rows - no input has a correct sampled answer and rft_gold is "
                             f"{gold!r}; set rft_gold: fallback, or sample more (sample_k)")
        with JsonlWriter(out) as w:  # TRL's conversational prompt-completion format: `trl sft` reads the file as is
            for r in rows:
                w.write({**r, "completion": selection.as_messages(r["completion"])})
        info["mix"] = m = selection.mix(rows, METHODS[method].sources)
        shares = " / ".join(f"{selection.MIX_NAMES[k]} {v}%" for k, v in m["percent"].items())
        log(f"build ({method}): {len(rows)} rows" + (f" from {m['inputs']} inputs" if m["inputs"] != len(rows) else "")
            + f" - {shares}")

    stages.run_stage(name, fp, [out], work, resumable=False)
    return out
