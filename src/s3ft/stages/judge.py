"""Stage `judge`: the judge scores each own answer against the gold (S3FT step 2)
-> own_judged.jsonl (the own answers with correct / reason / extracted); `judge.samples` does
the same for the k sampled answers -> samples_judged.jsonl."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from s3ft import selection
from s3ft.runs import JsonlWriter, file_fingerprint, fingerprint, read_jsonl
from s3ft.stages.common import Judge, Stages, log
from s3ft.types import Example

CHUNK = 32  # answers judged and written at a time


def judge(stages: Stages, own_path: Path, examples: Sequence[Example], judge: Judge) -> Path:
    exs = {e.id: e for e in examples}
    out = stages.run / "own_judged.jsonl"
    fp = fingerprint("judge", file_fingerprint(own_path), judge.fingerprint(exs.values()))

    def work(info: dict) -> None:
        done = {r["id"] for r in read_jsonl(out)}
        todo = [r for r in read_jsonl(own_path) if r["id"] not in done]
        log(f"judge ({judge.name}): {len(todo)} answers to judge -> {out}")
        with JsonlWriter(out) as w, tqdm(total=len(todo), desc="judge own", unit="ex", dynamic_ncols=True) as bar:
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start : start + CHUNK]
                for src, row in zip(chunk, judge.rows([exs[r["id"]] for r in chunk], [r["response"] for r in chunk])):
                    w.write({**row, "stop": src.get("stop")})  # (a cut-off answer is never a training target)
                bar.update(len(chunk))
        rows = read_jsonl(out)
        info["rows"] = len(rows)
        info["correct"] = sum(r["correct"] is True for r in rows)
        info["cannot_judge"] = sum(r["correct"] is None for r in rows)
        log(f"judge: {info['correct']}/{len(rows)} own answers correct"
            + (f", {info['cannot_judge']} cannot judge" if info["cannot_judge"] else ""))

    stages.run_stage("judge", fp, [out], work)
    return out


def judge_samples(stages: Stages, samples_path: Path, examples: Sequence[Example], judge: Judge) -> Path:
    """Stage `judge.samples`: the judge scores every sampled answer (rft, grape, s3ft_k)
    -> samples_judged.jsonl, one row per input {id, samples: [{response, stop, correct, reason,
    extracted}]}; an answer given twice for one input is judged once."""
    exs = {e.id: e for e in examples}
    out = stages.run / "samples_judged.jsonl"
    fp = fingerprint("judge.samples", file_fingerprint(samples_path), judge.fingerprint(exs.values()))

    def work(info: dict) -> None:
        done = {r["id"] for r in read_jsonl(out)}
        todo = [r for r in read_jsonl(samples_path) if r["id"] not in done]
        per = max(1, CHUNK // max(1, max((len(r["samples"]) for r in todo), default=1)))  # inputs judged at a time
        log(f"judge ({judge.name}): the samples of {len(todo)} inputs to judge -> {out}")
        with JsonlWriter(out) as w, tqdm(total=len(todo), desc="judge samples", unit="ex", dynamic_ncols=True) as bar:
            for start in range(0, len(todo), per):
                chunk = todo[start : start + per]
                pairs = list(dict.fromkeys((r["id"], x["response"]) for r in chunk for x in r["samples"]))
                rows = judge.rows([exs[i] for i, _ in pairs], [t for _, t in pairs])
                verdict = {pair: {k: v for k, v in row.items() if k != "id"} for pair, row in zip(pairs, rows)}
                for r in chunk:
                    w.write({"id": r["id"], "samples": [{**verdict[(r["id"], x["response"])], "stop": x.get("stop")}
                                                        for x in r["samples"]]})
                bar.update(len(chunk))
        rows = read_jsonl(out)
        info["rows"] = len(rows)
        info["correct"] = sum(x["correct"] is True for r in rows for x in r["samples"])
        info["inputs_with_correct"] = sum(bool(selection.accepted_samples(r)) for r in rows)
        info["distinct_correct"] = sum(len(selection.accepted_samples(r)) for r in rows)
        log(f"judge: {info['correct']} sampled answers correct; {info['inputs_with_correct']}/{len(rows)} inputs "
            f"have one, {info['distinct_correct']} distinct and uncut in all")

    stages.run_stage("judge.samples", fp, [out], work)
    return out
