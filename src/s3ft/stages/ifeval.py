"""Stage `ifeval`: a model answers the IFEval prompts (the recipe's seeded subset) with the run's
backend and chat template, greedy; lm-evaluation-harness's checkers score every answer
-> ifeval/<name>.jsonl (answer, stop reason, verdicts per prompt). The stage record holds the
four IFEval figures with 95% intervals and the answers' style (s3ft.style). The base model's
answers are also the general prompts' reference answers for the `drift` stage."""
from __future__ import annotations

from typing import Any

from s3ft import ifeval as instrument
from s3ft.runs import fingerprint, read_jsonl
from s3ft.selection import cut_off
from s3ft.stages.common import Decoding, Stages, examples_fp, libs_fp, log, pending, stream_rows
from s3ft.style import style
from s3ft.types import Example


def examples(limit: int | None, seed: int) -> list[Example]:
    """The IFEval prompts a run answers, as examples (id: IFEval's key; meta.row: its line)."""
    rows = instrument.prompts()
    return [Example(id=str(rows[i]["key"]), prompt=[{"role": "user", "content": rows[i]["prompt"]}], gold="",
                    meta={"row": i}) for i in instrument.select(limit, seed)]


def ifeval(stages: Stages, name: str, generator, model_fp: str, decoding: Decoding, limit: int | None, seed: int,
           flush_every: int) -> dict[str, Any]:
    out = stages.run / "ifeval" / f"{name}.jsonl"
    stage = f"ifeval.{name}"
    exs = examples(limit, seed)
    fp = fingerprint(stage, model_fp, examples_fp(exs), decoding.fingerprint(), libs_fp("lm_eval", "nltk", "langdetect"))
    rows = instrument.prompts()

    def scored(batch: list[tuple[Example, str, str]]) -> list[dict[str, Any]]:
        verdicts = instrument.score([rows[e.meta["row"]] for e, _, _ in batch], [t for _, t, _ in batch])
        return [{"id": e.id, "row": e.meta["row"], "response": t, **v} for (e, t, _), v in zip(batch, verdicts)]

    def work(info: dict) -> None:
        todo, done = pending(out, exs)
        log(f"ifeval {name}: {len(todo)} of {len(exs)} prompts to answer ({done} already done) -> {out}")
        stream_rows(out, todo, generator, [e.prompt for e in todo], decoding.max_new_tokens, decoding.kwargs(),
                    f"ifeval {name}", scored, flush_every)
        answers = read_jsonl(out)
        info["ifeval"] = s = instrument.summarize(answers)
        info["style"] = st = style([(r["response"], cut_off(r)) for r in answers])
        log(f"ifeval {name}: prompt strict {s['prompt_strict']['mean']:.1f}, instruction strict "
            f"{s['inst_strict']['mean']:.1f}, prompt loose {s['prompt_loose']['mean']:.1f}, instruction loose "
            f"{s['inst_loose']['mean']:.1f} (average {s['average']}); answers: median {st['words_median']} words, "
            f"{st['cut_off_pct']}% cut off at {decoding.max_new_tokens} tokens")

    return stages.run_stage(stage, fp, [out], work)
