"""Stage `paraphrase`: the base model rewrites the gold in its own words where needed (S3FT
steps 3-4) -> paraphrase.jsonl. Each paraphrase is filtered first (talk about "the reference
answer", a worked answer cut to its last line: `s3ft.paraphrase.filter_reason`) - a rejected one
is never judged - then judged like an own answer."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from s3ft import selection
from s3ft.backends.base import LENGTH
from s3ft.paraphrase import filter_reason, paraphrase_prompt
from s3ft.runs import file_fingerprint, fingerprint, read_jsonl
from s3ft.stages.common import Decoding, Judge, Stages, by_id, examples_fp, log, pending, stream_rows
from s3ft.types import Example


CUT_OFF_REASON = "cut off at max_new_tokens"  # the filter reason of a paraphrase that hit the length limit


def paraphrase(stages: Stages, examples: Sequence[Example], judged_path: Path | None, scope: str, generator,
               model_id: str, decoding: Decoding, judge: Judge, kind: str, min_length_ratio: float,
               flush_every: int, samples_path: Path | None = None) -> Path:
    """`scope`: which examples get a paraphrase (failed: those whose own answer in `judged_path`
    is not correct or was cut off, or, given `samples_path` (judged samples), that have no correct
    uncut sample; all; none). `decoding`: the paraphrases' generation settings and length limit.
    `kind`: the task's paraphrase prompt (generic, math, code)."""
    out = stages.run / "paraphrase.jsonl"
    failed = scope == "failed"
    own = by_id(read_jsonl(judged_path)) if failed and judged_path else {}
    samples = by_id(read_jsonl(samples_path)) if failed and samples_path else {}
    # failed: no accepted answer in a pass given here (the greedy one when none is)
    failure = tuple(k for k, path in (("self", judged_path), ("sampled", samples_path)) if path) or ("self",)
    upstream = file_fingerprint(judged_path) if failed and judged_path else "none"
    fp = fingerprint("paraphrase", model_id, examples_fp(examples), scope, upstream, decoding.fingerprint(),
                     judge.fingerprint(examples), kind, *([min_length_ratio] if min_length_ratio else []),
                     *(["samples", file_fingerprint(samples_path)] if failed and samples_path else []))

    def rows_for(batch: list[tuple[Example, str, str]]) -> list[dict[str, Any]]:
        whys = {e.id: CUT_OFF_REASON if stop == LENGTH else filter_reason(t, e.gold, min_length_ratio) for e, t, stop in batch}
        keep = [(e, t) for e, t, _ in batch if whys[e.id] is None]
        judged = by_id(judge.rows([e for e, _ in keep], [t for _, t in keep])) if keep else {}
        rows = []
        for e, t, _ in batch:
            why = whys[e.id]
            if why is None:
                rows.append({**judged[e.id], "filtered": False, "filter_reason": None})
            else:
                rows.append({"id": e.id, "response": t, "filtered": True, "filter_reason": why,
                             "correct": None, "reason": "rejected by the paraphrase filter", "extracted": None})
        return rows

    def work(info: dict) -> None:
        wanted = [e for e in examples if selection.needs_paraphrase(scope, own.get(e.id), samples.get(e.id), failure)]
        todo, done = pending(out, wanted)
        log(f"paraphrase (scope {scope}): {len(todo)} to write ({done} already done) -> {out}")
        stream_rows(out, todo, generator, [paraphrase_prompt(e, kind) for e in todo],
                    decoding.max_new_tokens, decoding.kwargs(), "paraphrases", rows_for, flush_every)
        rows = read_jsonl(out)
        info["rows"] = len(rows)
        info["filtered"] = sum(bool(r["filtered"]) for r in rows)
        info["accepted"] = sum(selection.accepted_paraphrase(r) is not None for r in rows)
        info["cut_off"] = sum(r.get("stop") == LENGTH for r in rows)
        log(f"paraphrase: {info['accepted']}/{len(rows)} accepted, {info['filtered']} rejected by the filter"
            + (f" ({info['cut_off']} cut off at max_new_tokens)" if info["cut_off"] else ""))

    stages.run_stage("paraphrase", fp, [out], work)
    return out
