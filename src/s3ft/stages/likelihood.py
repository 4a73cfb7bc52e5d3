"""Stage `likelihood`: the length-normalised log-likelihood under the base model of the target
candidates that methods picking by likelihood choose among (grape: gold, paraphrase, correct
samples; s3ft_k: correct samples) -> likelihood.jsonl, one row per distinct candidate text of an
input {id, source, text, total, per_token, tokens}. Inputs with fewer than two candidates have
nothing to choose between and are not scored."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from s3ft import selection
from s3ft.runs import JsonlWriter, fingerprint, read_jsonl
from s3ft.stages.common import Stages, by_id, examples_fp, libs_fp, log
from s3ft.types import Example


def likelihood(stages: Stages, examples: Sequence[Example], kinds: Sequence[str], judged_path: Path | None,
               para_path: Path | None, samples_path: Path | None, scorer: Callable[[], Any], model_id: str, dtype: str,
               batch_size: int, done: Callable[[], None] = lambda: None) -> Path:
    """`kinds`: the sources whose candidates are scored (methods.scored_sources); `judged_path`,
    `para_path`, `samples_path`: the judged own answers, paraphrases and samples they come from.
    `scorer()` returns the loaded base model (`.model`, `.tokenizer`); it is called only when the
    stage runs, and `done()` after scoring (lets a model loaded for it go)."""
    own = by_id(read_jsonl(judged_path)) if judged_path else {}
    para = by_id(read_jsonl(para_path)) if para_path else {}
    samples = by_id(read_jsonl(samples_path)) if samples_path else {}
    items: list[tuple[Example, str, str]] = []
    for e in examples:
        found: dict[str, str] = {}  # text -> its first source
        for source in kinds:
            for text, _ in selection.candidates(source, e, own.get(e.id), para.get(e.id), samples.get(e.id)):
                found.setdefault(text, source)
        if len(found) > 1:
            items += [(e, source, text) for text, source in found.items()]
    out = stages.run / "likelihood.jsonl"
    fp = fingerprint("likelihood", model_id, examples_fp(examples), [(e.id, s, t) for e, s, t in items], dtype, libs_fp())

    def work(info: dict) -> None:
        from s3ft.logprob import sequence_logprobs

        log(f"likelihood: scoring {len(items)} candidate targets ({', '.join(kinds)}) of "
            f"{len({e.id for e, _, _ in items})} inputs under the base model -> {out}")
        vals = []
        if items:
            gen = scorer()
            vals = sequence_logprobs(gen.model, gen.tokenizer, [e.prompt for e, _, _ in items], [t for _, _, t in items],
                                     batch_size=batch_size)
            done()
        with JsonlWriter(out) as w:
            for (e, source, text), v in zip(items, vals):
                w.write({"id": e.id, "source": source, "text": text, **v})
        info["rows"] = len(items)
        info["inputs"] = len({e.id for e, _, _ in items})

    stages.run_stage("likelihood", fp, [out], work, resumable=False)
    return out


def scores(path: Path | None) -> dict[tuple[str, str], float]:
    """{(example id, candidate text): per-token log-likelihood} of a likelihood.jsonl."""
    return {(r["id"], r["text"]): r["per_token"] for r in read_jsonl(path)} if path else {}
