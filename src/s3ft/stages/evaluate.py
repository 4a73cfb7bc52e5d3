"""Stage `eval`: a model answers the evaluation examples and the judge scores each answer
-> eval/<name>.jsonl (answer + verdict per example); the stage record holds the accuracy with
its 95% interval."""
from __future__ import annotations

from typing import Any, Sequence

from s3ft.evaluation import accuracy, span_scores
from s3ft.runs import fingerprint, read_jsonl
from s3ft.stages.common import Decoding, Judge, Stages, examples_fp, log, pending, stream_rows
from s3ft.types import Example


# judges of SQuAD answers: SQuAD EM / F1 are reported beside them (for squad_sentence, EM shows how
# often a model answers with the bare span instead of the sentence asked for)
SPAN_JUDGES = ("squad", "squad_sentence", "qa")


def evaluate(stages: Stages, name: str, examples: Sequence[Example], generator, model_fp: str, decoding: Decoding,
             judge: Judge, flush_every: int, what: str = "examples") -> dict[str, Any]:
    """`name`: the model's name in the run (base, a method, or <task>.<method> for a cross task);
    `model_fp`: the model's identity; `what` describes the examples in the log."""
    out = stages.run / "eval" / f"{name}.jsonl"
    stage = f"eval.{name}"
    fp = fingerprint(stage, model_fp, examples_fp(examples), decoding.fingerprint(), judge.fingerprint(examples))

    def work(info: dict) -> None:
        todo, done = pending(out, examples)
        log(f"eval {name}: {len(todo)} {what} to answer ({done} already done) -> {out}")
        stream_rows(out, todo, generator, [e.prompt for e in todo], decoding.max_new_tokens, decoding.kwargs(),
                    f"eval {name}", lambda batch: judge.rows([e for e, _, _ in batch], [t for _, t, _ in batch]), flush_every)
        rows = read_jsonl(out)
        a = info["accuracy"] = accuracy(rows)
        if judge.name in SPAN_JUDGES:  # SQuAD's exact match and F1 beside the judge's accuracy
            a.update(span_scores(rows, examples))
        log(f"eval {name}: {a['k']}/{a['n']} = {a['accuracy']}% (95% CI {a.get('ci95')})"
            + (f", exact match {a['em']}%, F1 {a['f1']}" if "em" in a else "")
            + (f"; {a['cut_off']} answers cut off at max_new_tokens" if a.get("cut_off") else ""))

    return stages.run_stage(stage, fp, [out], work)["accuracy"]
