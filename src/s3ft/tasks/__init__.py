"""Built-in tasks and user JSONL tasks.

A task is data plus three choices: how to load its splits as `Example`s, which judge decides
correctness, and how long answers may be. `get_task(name, ...)` returns a `Task`; each
built-in task lives in its own module (`squad.py`, `gsm8k.py`, `mbpp.py`, `nq_open.py`,
`jsonl.py` for user data)."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from s3ft.types import Example

BUILTIN_TASKS = ("squad", "gsm8k", "mbpp", "nq_open", "jsonl")


@dataclass
class Task:
    """name: task name; judge: default judge name (see `s3ft.judges`); max_new_tokens: default
    generation length for answers; paraphrase_kind: which paraphrase prompt fits ("generic",
    "math", "code"); splits: split name -> zero-argument loader returning all examples of that
    split in a fixed order."""

    name: str
    judge: str
    max_new_tokens: int
    paraphrase_kind: str
    splits: dict[str, Callable[[], list[Example]]] = field(default_factory=dict)
    judge_options: dict[str, Any] = field(default_factory=dict)
    invalid: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # split -> rows skipped as invalid

    def load(self, split: str, limit: int | None = None, seed: int = 0) -> list[Example]:
        """Examples of `split`; with `limit`, a seeded random subset of that size (the same
        for every run with the same seed), kept in the split's original order."""
        if split not in self.splits:
            raise ValueError(
                f"task {self.name!r} has no split {split!r}; it has: {', '.join(self.splits)}"
            )
        examples = self.splits[split]()
        if limit is not None and limit < len(examples):
            keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
            examples = [examples[i] for i in keep]
        return examples


def get_task(name: str, **options: Any) -> Task:
    """The task called `name`. Options are task-specific (the `jsonl` task takes its file
    paths and field names)."""
    if name == "squad":
        from s3ft.tasks import squad

        return squad.task(**options)
    if name == "gsm8k":
        from s3ft.tasks import gsm8k

        return gsm8k.task(**options)
    if name == "mbpp":
        from s3ft.tasks import mbpp

        return mbpp.task(**options)
    if name == "nq_open":
        from s3ft.tasks import nq_open

        return nq_open.task(**options)
    if name == "jsonl":
        from s3ft.tasks import jsonl

        return jsonl.task(**options)
    raise ValueError(f"unknown task {name!r}; built-in tasks: {', '.join(BUILTIN_TASKS)}")
