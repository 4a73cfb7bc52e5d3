"""Build the training set: the heart of the paper, as pure functions (no I/O).

For every training example the target is chosen from these candidates:
  self       - the base model's own (greedy) answer, if the judge said correct
  sampled    - the distinct (after normalising whitespace) ones of its k sampled answers that the
               judge said correct
  paraphrase - the base model's paraphrase of the gold, if it passed the filter and the judge
  gold       - the dataset's response
Methods differ in which candidates they may use, in which order of preference, and how they pick
(`s3ft.methods.METHODS`): most take the first source an example has (sft gold; ssr self, gold;
sdft paraphrase, gold; s3ft self, paraphrase, gold); of several correct samples s3ft_k takes the
one with the highest length-normalised log-likelihood under the base model; grape takes the
likeliest candidate of all its sources; rft makes one row of every correct sample (and of the
gold as `rft_gold` says). A verdict of None ("cannot judge") never counts as correct, and an
answer whose generation hit the length limit (`stop: length`, cut off mid-answer) is never a
target: the example falls back to the next candidate, ending at gold. Each training row records
its source, the candidates it passed over because they were cut off (`cut_off`), which sample it
is (`sample`), and, when it was picked by likelihood among several candidates, its score and how
many there were (`likelihood`)."""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from s3ft.backends.base import LENGTH
from s3ft.methods import SOURCES, get_method
from s3ft.types import Example

__all__ = ["SOURCES", "accepted_own", "accepted_paraphrase", "accepted_samples", "build_training_set", "choose",
           "choose_with_rejections", "cut_off", "mix", "needs_paraphrase", "normalized", "targets"]

# the sources every mix lists (others - sampled - only for the methods that use them), and their names in logs
MIX_SOURCES = ("self", "paraphrase", "gold")
MIX_NAMES = {"self": "own", "sampled": "sampled", "paraphrase": "paraphrase", "gold": "gold"}

# Scores = {(example id, candidate text): its length-normalised log-likelihood under the base model}
Scores = Mapping[tuple[str, str], float]


def cut_off(row: Mapping[str, Any] | None) -> bool:
    """Whether the row's generation stopped at the length limit (its text is cut off)."""
    return bool(row) and row.get("stop") == LENGTH


def as_messages(completion: str) -> list[dict[str, str]]:
    """A target text as TRL's conversational completion: one assistant message (what the build
    stage writes to train.<method>.jsonl, so that `trl sft` reads the file as it is)."""
    return [{"role": "assistant", "content": completion}]


def completion_text(row: Mapping[str, Any]) -> str:
    """The target text of a training row: its `completion` - one assistant message (the file the
    build stage writes) or, in rows built in memory and in run directories written before the
    build stage wrote messages, the text itself. ValueError for anything else."""
    c = row.get("completion")
    if isinstance(c, str):
        return c
    if (isinstance(c, list) and len(c) == 1 and isinstance(c[0], Mapping) and c[0].get("role") == "assistant"
            and isinstance(c[0].get("content"), str)):
        return c[0]["content"]
    raise ValueError(f"training row {row.get('id')!r}: completion must be a string or one assistant message, got {c!r:.120}")


def normalized(text: str) -> str:
    """`text` with its whitespace runs collapsed to one space and trimmed (what makes two samples the same)."""
    return " ".join(text.split())


def accepted_own(row: Mapping[str, Any] | None) -> str | None:
    """The own answer if its judge verdict is exactly True and it was not cut off."""
    if row and row.get("correct") is True and row.get("response") and not cut_off(row):
        return row["response"]
    return None


def accepted_paraphrase(row: Mapping[str, Any] | None) -> str | None:
    """The paraphrase if it passed the leak filter, the judge said exactly True and it was not cut off."""
    if row and not row.get("filtered") and row.get("correct") is True and row.get("response") and not cut_off(row):
        return row["response"]
    return None


def accepted_samples(row: Mapping[str, Any] | None) -> list[tuple[int, str]]:
    """(index, text) of the sampled answers in `row` ({samples: [{response, correct, stop}]}) that
    the judge said exactly True and that were not cut off, the first of each group equal after
    normalising whitespace, in sample order."""
    out, seen = [], set()
    for j, smp in enumerate((row or {}).get("samples") or []):
        if (text := accepted_own(smp)) is None or not (key := normalized(text)) or key in seen:
            continue
        seen.add(key)
        out.append((j, text))
    return out


def candidates(source: str, example: Example, own: Mapping[str, Any] | None, para: Mapping[str, Any] | None,
               samples: Mapping[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """The (text, row fields) candidates `source` offers for `example`."""
    if source == "self":
        return [(t, {})] if (t := accepted_own(own)) is not None else []
    if source == "sampled":
        return [(t, {"sample": j}) for j, t in accepted_samples(samples)]
    if source == "paraphrase":
        return [(t, {})] if (t := accepted_paraphrase(para)) is not None else []
    if source == "gold":
        return [(example.gold, {})]
    raise ValueError(f"unknown target source {source!r}; one of {', '.join(SOURCES)}")


def passed_over(source: str, own: Mapping[str, Any] | None, para: Mapping[str, Any] | None,
                samples: Mapping[str, Any] | None) -> bool:
    """Whether `source` had a candidate that was cut off: an own answer (or sample) judged correct
    as far as it goes, a paraphrase the filter rejected for its length."""
    if source == "self":
        return cut_off(own) and own.get("correct") is True
    if source == "sampled":
        return any(cut_off(x) and x.get("correct") is True for x in (samples or {}).get("samples") or [])
    if source == "paraphrase":
        return cut_off(para)  # (cut-off paraphrases are filtered before judging)
    return False


def likeliest(example: Example, pool: Sequence[tuple[str, str, dict[str, Any]]], scores: Scores | None) -> int:
    """The index in `pool` ((source, text, fields) candidates) of the one with the highest score;
    ties go to the earlier (preferred) candidate."""
    vals = []
    for _, text, _ in pool:
        if not scores or (example.id, text) not in scores:
            raise ValueError(f"example {example.id!r}: no log-likelihood for the candidate {text[:60]!r}; "
                             "the likelihood stage scores every candidate before the build stage picks one")
        vals.append(scores[(example.id, text)])
    return max(range(len(pool)), key=lambda i: (vals[i], -i))


def picked(example: Example, pool: list[tuple[str, str, dict[str, Any]]], scores: Scores | None) -> tuple[str, str, dict[str, Any]]:
    """The likeliest of several candidates, its fields recording its score and how many there were."""
    if len(pool) == 1:
        return pool[0]
    i = likeliest(example, pool, scores)
    source, text, fields = pool[i]
    return source, text, {**fields, "likelihood": {"per_token": scores[(example.id, text)], "candidates": len(pool)}}


def targets(method: str, example: Example, own: Mapping[str, Any] | None, para: Mapping[str, Any] | None,
            samples: Mapping[str, Any] | None = None, scores: Scores | None = None,
            gold: str = "fallback") -> tuple[list[tuple[str, str, dict[str, Any]]], list[str]]:
    """The (source, completion, row fields) targets of one example under `method` - one, or for a
    method that keeps every correct sample (rft) one per sample - and the sources passed over
    because their answer was cut off. `samples`: the judged k samples ({samples: [...]});
    `scores`: log-likelihoods of the candidates (methods that pick by likelihood); `gold`: the
    gold's place for rft (fallback, never, always)."""
    m = get_method(method)
    passed: list[str] = []
    if m.pick == "likelihood" or m.samples == "all":
        pool = []
        for source in m.sources:
            found = candidates(source, example, own, para, samples)
            if not found and passed_over(source, own, para, samples):
                passed.append(source)
            pool += [(source, t, f) for t, f in found]
        if m.pick == "likelihood":  # a text two sources offer is one candidate, of the preferred source
            texts = [t for _, t, _ in pool]
            return [picked(example, [c for j, c in enumerate(pool) if c[1] not in texts[:j]], scores)], passed
        kept = [c for c in pool if c[0] != "gold"]
        if gold == "always" or (gold == "fallback" and not kept):
            if normalized(example.gold) not in {normalized(t) for _, t, _ in kept}:
                kept.append(("gold", example.gold, {}))
        elif gold not in ("fallback", "never", "always"):
            raise ValueError(f"gold must be fallback, never or always, got {gold!r}")
        return kept, passed
    for source in m.sources:
        found = candidates(source, example, own, para, samples)
        if found:
            return [picked(example, [(source, t, f) for t, f in found], scores)], passed
        if passed_over(source, own, para, samples):
            passed.append(source)
    raise AssertionError("unreachable: every method ends with gold")


def choose(method: str, example: Example, own: Mapping[str, Any] | None, para: Mapping[str, Any] | None,
           samples: Mapping[str, Any] | None = None, scores: Scores | None = None) -> tuple[str, str]:
    """(source, completion) for one example under `method` (its first target)."""
    source, text, _ = choose_with_rejections(method, example, own, para, samples, scores)
    return source, text


def choose_with_rejections(method: str, example: Example, own: Mapping[str, Any] | None,
                           para: Mapping[str, Any] | None, samples: Mapping[str, Any] | None = None,
                           scores: Scores | None = None) -> tuple[str, str, list[str]]:
    """(source, completion, sources passed over because their answer was cut off: an own answer
    judged correct as far as it goes, a paraphrase the filter rejected for its length) - the
    first target of `targets`."""
    found, passed = targets(method, example, own, para, samples, scores)
    source, text, _ = found[0]
    return source, text, passed


def build_training_set(
    method: str,
    examples: Sequence[Example],
    own: Mapping[str, Mapping[str, Any]],
    paraphrases: Mapping[str, Mapping[str, Any]],
    samples: Mapping[str, Mapping[str, Any]] | None = None,
    scores: Scores | None = None,
    gold: str = "fallback",
) -> list[dict[str, Any]]:
    """Training rows {id, prompt, completion, source[, cut_off, sample, likelihood]} for `method`,
    in example order: one per example, or (rft) one per kept target. `own`, `paraphrases` and
    `samples` map example id -> judged row ({response, correct, filtered?, stop?}; samples:
    {samples: [such rows]}); `scores` and `gold` as in `targets`. `cut_off` (on an example's first
    row) lists the sources passed over because their answer was cut off."""
    rows = []
    for ex in examples:
        found, passed = targets(method, ex, own.get(ex.id), paraphrases.get(ex.id), (samples or {}).get(ex.id),
                                scores, gold)
        for k, (source, completion, fields) in enumerate(found):
            row = {"id": ex.id, "prompt": ex.prompt, "completion": completion, "source": source, **fields}
            if passed and k == 0:
                row["cut_off"] = passed
            rows.append(row)
    return rows


def mix(rows: Sequence[Mapping[str, Any]], sources: Sequence[str] = ()) -> dict[str, Any]:
    """Counts and percentages of each source (the paper's Table 3) - self, paraphrase and gold
    always, the other sources when in `sources` (a method's) or present - how many inputs the rows
    come from, and how many candidates of each source were passed over because they were cut off
    at the length limit."""
    counts = Counter(r["source"] for r in rows)
    passed = Counter(s for r in rows for s in r.get("cut_off", ()))
    kinds = [s for s in SOURCES if s in MIX_SOURCES or s in sources or counts.get(s)]
    n = len(rows)
    return {
        "n": n,
        "inputs": len({r["id"] for r in rows}),
        "counts": {s: counts.get(s, 0) for s in kinds},
        "percent": {s: round(100.0 * counts.get(s, 0) / n, 1) if n else 0.0 for s in kinds},
        "cut_off": {s: passed.get(s, 0) for s in kinds if s != "gold"},
    }


def needs_paraphrase(scope: str, own_row: Mapping[str, Any] | None, samples_row: Mapping[str, Any] | None = None,
                     failure: Sequence[str] = ("self",)) -> bool:
    """Whether an example gets a paraphrase under `scope` (failed / all / none). Under failed:
    when a pass in `failure` (methods.failure_sources: self, the greedy answer; sampled, the k
    samples) has no accepted answer."""
    if scope == "all":
        return True
    if scope == "failed":
        return (("self" in failure and accepted_own(own_row) is None)
                or ("sampled" in failure and not accepted_samples(samples_row)))
    return False
