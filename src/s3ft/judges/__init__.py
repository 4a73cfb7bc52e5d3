"""Judges decide whether a response is correct for an example.

The interface, for every judge: a callable `judge(examples, responses) -> list[Verdict]`
(batch-level, so the code judge can run programs in parallel and the LLM judge can batch its
generation). Per-example judges are small pure functions `fn(example, response) -> Verdict`
that never raise on a model's output: they return `Verdict(None, reason)` when they cannot
judge. `get_judge(name, **options)` builds the batch callable; a name `FILE.py:FUNCTION` or
`package.module:FUNCTION` is the user's own per-example judge (`s3ft.judges.custom`)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from s3ft.types import Example, Verdict

Judge = Callable[[Sequence[Example], Sequence[str]], list[Verdict]]

JUDGES = ("squad", "squad_sentence", "qa", "math", "code", "llm", "exact")


def per_example(fn: Callable[..., Verdict], **options: Any) -> Judge:
    """Lift a per-example judge function into the batch interface. An exception inside `fn`
    becomes a "cannot judge" verdict rather than crashing a long run."""

    def judge(examples: Sequence[Example], responses: Sequence[str]) -> list[Verdict]:
        out = []
        for ex, resp in zip(examples, responses, strict=True):
            try:
                out.append(fn(ex, resp, **options))
            except Exception as e:  # a judge must never take a run down
                out.append(Verdict(None, f"judge error: {type(e).__name__}: {e}"))
        return out

    return judge


def get_judge(name: str, **options: Any) -> Judge:
    """Build the judge called `name` with its options (see each module for the options)."""
    from s3ft.judges.custom import is_custom, make_custom_judge

    if is_custom(name):
        return make_custom_judge(name, **options)  # options: timeout (judge_timeout)
    if name == "qa":
        from s3ft.judges.qa import judge_qa

        return per_example(judge_qa, **options)
    if name == "squad":
        from s3ft.judges.qa import judge_squad

        return per_example(judge_squad, **options)
    if name == "squad_sentence":
        from s3ft.judges.qa import judge_squad_sentence

        return per_example(judge_squad_sentence, **options)
    if name == "math":
        from s3ft.judges.math import judge_math

        return per_example(judge_math, **options)
    if name == "exact":
        from s3ft.judges.qa import judge_exact

        return per_example(judge_exact, **options)
    if name == "code":
        from s3ft.judges.code import make_code_judge

        return make_code_judge(**options)
    if name == "llm":
        from s3ft.judges.llm import make_llm_judge

        return make_llm_judge(**options)
    raise ValueError(f"unknown judge {name!r}; available: {', '.join(JUDGES)}, or FILE.py:FUNCTION")
