"""The one table of training methods: which target sources each may use (in order of
preference), which examples need a paraphrase for it, how the report names and colours it, and
the paper it comes from, and the training loss. Config choices, training-set selection, the
train stage, `s3ft compare` and the report all read this table; a new method is one entry here
(plus its loss or data stage, if new: docs/contributing.md).

Target sources:
  self       - the base model's own answer, if the judge said correct
  paraphrase - the base model's paraphrase of the gold, if it passed the filter and the judge
  gold       - the dataset's response"""
from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("self", "paraphrase", "gold")
BASE = "base"  # `s3ft compare`'s name for the untrained model


@dataclass(frozen=True)
class Method:
    name: str  # recipe / command-line id
    display: str  # name in reports
    sources: tuple[str, ...]  # target candidates in order of preference; every method ends with gold
    paraphrase_scope: str  # which examples need a paraphrase: none, failed (own answer not correct), all
    color: str  # plot colour
    paper: str  # where the method comes from
    summary: str  # one line for help texts and docs
    loss: str = "nll"  # TRL's SFTConfig.loss_type: nll (cross-entropy) or dft


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sft", "SFT", ("gold",), "none", "#d62728",
           "supervised fine-tuning", "the gold response"),
    Method("ssr", "SSR", ("self", "gold"), "none", "#9467bd",
           "Selective Self-Rehearsal, arXiv 2409.04787", "own answer if correct, else gold"),
    Method("sdft", "SDFT", ("paraphrase", "gold"), "all", "#ff7f0e",
           "Self-Distillation Fine-Tuning, Yang et al. 2024, arXiv 2402.13669", "validated paraphrase, else gold"),
    Method("s3ft", "S3FT", ("self", "paraphrase", "gold"), "failed", "#2ca02c",
           "Selective Self-to-Supervised Fine-Tuning, arXiv 2502.08130", "own answer, else paraphrase, else gold"),
    Method("dft", "DFT", ("gold",), "none", "#1f77b4",
           "Dynamic Fine-Tuning, Wu et al. 2025, arXiv 2508.05629 (TRL's loss_type dft)",
           "gold, each token's loss weighted by the model's own detached probability of it", loss="dft"),
)}

PAPER_METHODS = ("sft", "ssr", "sdft", "s3ft")  # what S3FT's paper compares (`s3ft compare`'s default)
BASE_COLOR = "#7f7f7f"
SCOPE_ORDER = ("none", "failed", "all")  # each scope paraphrases a superset of the one before


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; one of {', '.join(METHODS)}")
    return METHODS[name]


def paraphrase_scope(methods: list[str] | tuple[str, ...]) -> str:
    """The smallest paraphrase scope that serves every method in `methods` (the `auto` scope):
    one paraphrase pass shared by all of them."""
    needed = [METHODS[m].paraphrase_scope for m in methods if m in METHODS]
    return max(needed, key=SCOPE_ORDER.index, default="none")


def display_name(method: str) -> str:
    """Display name of a method id (`s3ft` -> `S3FT`); base and unknown ids are shown as they are."""
    return METHODS[method].display if method in METHODS else method


def method_help() -> str:
    return ", ".join(f"{m.name} ({m.summary})" for m in METHODS.values())
