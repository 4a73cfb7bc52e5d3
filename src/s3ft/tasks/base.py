"""The `Task` record: a task's data loaders, default judge, answer lengths and paraphrase kind."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from s3ft.types import Example


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
