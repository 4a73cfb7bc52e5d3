"""Stage `sample`: the base model samples k answers per training input (rft, grape, s3ft_k)
-> samples.jsonl, one row per input {id, samples: [{response, stop}]}, in the backend's sample
order. The k answers of one input come from one request (vLLM's and the openai backend's `n`,
the hf backend's `num_return_sequences`), seeded with sample_seed."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from s3ft import selection
from s3ft.backends.base import LENGTH
from s3ft.runs import JsonlWriter, fingerprint, read_jsonl
from s3ft.stages.common import Decoding, Stages, examples_fp, log, pending
from s3ft.types import Example


def sample(stages: Stages, examples: Sequence[Example], generator, model_id: str, decoding: Decoding, k: int) -> Path:
    """`decoding`: the samples' temperature, top-p, seed and length limit; `k`: answers per input."""
    out = stages.run / "samples.jsonl"
    fp = fingerprint("sample", model_id, examples_fp(examples), k, decoding.fingerprint())

    def work(info: dict) -> None:
        todo, done = pending(out, examples)
        log(f"sample: {k} answers each for {len(todo)} training inputs ({done} already done; temperature "
            f"{decoding.temperature}, top_p {decoding.top_p}, seed {decoding.seed}) -> {out}")
        with JsonlWriter(out) as w:
            if todo:
                for i, texts, stops in generator.stream([e.prompt for e in todo], decoding.max_new_tokens,
                                                        desc="samples", n=k, **decoding.kwargs()):
                    if k == 1:  # (a backend yields a single answer as it is)
                        texts, stops = [texts], [stops]
                    w.write({"id": todo[i].id, "samples": [{"response": t, "stop": s} for t, s in zip(texts, stops)]})
        rows = read_jsonl(out)
        info["rows"] = len(rows)
        info["samples"] = sum(len(r["samples"]) for r in rows)
        info["distinct"] = sum(len({selection.normalized(x["response"]) for x in r["samples"]}) for r in rows)
        info["cut_off"] = sum(x.get("stop") == LENGTH for r in rows for x in r["samples"])
        log(f"sample: {info['samples']} answers, {info['distinct']} distinct per input summed"
            + (f"; {info['cut_off']} cut off at max_new_tokens ({decoding.max_new_tokens}), never targets"
               if info["cut_off"] else ""))

    stages.run_stage("sample", fp, [out], work)
    return out
