"""The one table of training methods: which target sources each may use (in order of
preference), which examples need a paraphrase for it, how the report names and colours it, and
the paper it comes from, and the training loss. Config choices, training-set selection, the
train stage, `s3ft compare` and the report all read this table; a new method is one entry here
(plus its loss or data stage, if new: docs/contributing.md).

Target sources:
  self       - the base model's own (greedy) answer, if the judge said correct
  sampled    - the distinct ones of k sampled answers of the base model that the judge said correct
  paraphrase - the base model's paraphrase of the gold, if it passed the filter and the judge
  gold       - the dataset's response

What a method needs (`Method.needs`: own answers, k samples, paraphrases, log-likelihoods of the
candidates under the base model) follows from its entry; `s3ft compare` computes each once for
all its methods."""
from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("self", "sampled", "paraphrase", "gold")
BASE = "base"  # `s3ft compare`'s name for the untrained model


@dataclass(frozen=True)
class Method:
    name: str  # recipe / command-line id
    display: str  # name in reports
    sources: tuple[str, ...]  # target candidates in order of preference; every method ends with gold
    paraphrase_scope: str  # which examples need a paraphrase: none, failed (no correct own answer), all
    color: str  # plot colour
    paper: str  # where the method comes from
    summary: str  # one line for help texts and docs
    loss: str = "nll"  # TRL's SFTConfig.loss_type: nll (cross-entropy) or dft
    kl_weight_key: str | None = None  # config field weighting KL(base || model), added to the loss (kl_anchor.py); None: no KL term
    pick: str = "first"  # first: the first source the example has; likelihood: the likeliest candidate of all
    samples: str = "likeliest"  # of several correct samples: likeliest (one target) or all (one row each)

    @property
    def scored(self) -> tuple[str, ...]:
        """The sources whose candidates are scored by their length-normalised log-likelihood under
        the base model: all of them when the method picks by likelihood, else the samples when it
        takes the likeliest correct one."""
        if self.pick == "likelihood":
            return self.sources
        return ("sampled",) if "sampled" in self.sources and self.samples == "likeliest" else ()

    @property
    def needs(self) -> frozenset[str]:
        """The data the method's training set is built from besides the gold: own (the greedy
        answers, judged), samples (k sampled answers, judged), paraphrases, likelihood (the
        candidates' log-likelihoods under the base model)."""
        wants = {"own": "self" in self.sources, "samples": "sampled" in self.sources,
                 "paraphrases": "paraphrase" in self.sources, "likelihood": bool(self.scored)}
        return frozenset(k for k, v in wants.items() if v)


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
    Method("rft", "RFT", ("sampled", "gold"), "none", "#8c564b",
           "Rejection-sampling Fine-Tuning, Yuan et al. 2023, arXiv 2308.01825 (STaR's filtering step)",
           "every distinct correct one of k sampled answers, one row each; the gold as rft_gold says", samples="all"),
    Method("grape", "GRAPE", ("sampled", "paraphrase", "gold"), "all", "#e377c2",
           "GRAPE-style selection, arXiv 2502.04194",
           "the likeliest under the base model (per token) of gold, paraphrase and correct samples", pick="likelihood"),
    Method("s3ft_k", "S3FT-k", ("sampled", "paraphrase", "gold"), "failed", "#17becf",
           "S3FT with k samples (beyond arXiv 2502.08130)",
           "the likeliest correct of k sampled answers, else paraphrase, else gold"),
    Method("asft", "ASFT", ("gold",), "none", "#bcbd22",
           "Anchored Supervised Fine-Tuning, Zhu et al. 2025, arXiv 2509.23753",
           "gold, DFT's loss + asft_kl_weight * KL(base || model) per token", loss="dft", kl_weight_key="asft_kl_weight"),
    Method("klsft", "KL-SFT", ("gold",), "none", "#ff9896",
           "KL-regularised SFT, the ablation of ASFT in arXiv 2509.23753",
           "gold, cross-entropy + klsft_beta * KL(base || model) per token", kl_weight_key="klsft_beta"),
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


def failure_sources(methods: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Under paraphrase scope `failed`: the own-answer passes whose failure (no correct, uncut
    answer) gets an example a paraphrase - the k samples for the methods in `methods` that fall
    back from them to a paraphrase (s3ft_k), the greedy answers for the others (s3ft); an example
    that failed either pass gets one."""
    users = [METHODS[m] for m in methods if m in METHODS and "paraphrase" in METHODS[m].sources]
    sampled = any("sampled" in m.sources for m in users)
    greedy = not sampled or any("self" in m.sources for m in users)
    return tuple(s for s, used in (("self", greedy), ("sampled", sampled)) if used)


def scored_sources(methods: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The candidate sources one likelihood pass scores for every method in `methods`."""
    kinds = {k for m in methods if m in METHODS for k in METHODS[m].scored}
    return tuple(s for s in SOURCES if s in kinds)


def display_name(method: str) -> str:
    """Display name of a method id (`s3ft` -> `S3FT`); base and unknown ids are shown as they are."""
    return METHODS[method].display if method in METHODS else method


def method_help() -> str:
    return ", ".join(f"{m.name} ({m.summary})" for m in METHODS.values())
