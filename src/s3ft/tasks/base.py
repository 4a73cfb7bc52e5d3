"""The `Task` record: a task's data loaders, default judge, answer lengths and paraphrase kind."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from s3ft.types import Example


@dataclass
class Task:
    """name: task name; judge: default judge name (see `s3ft.judges`); max_new_tokens: the length
    limit of the base model's own answers; paraphrase_kind: which paraphrase prompt fits
    ("generic", "math", "code"); splits: split name -> zero-argument loader returning all examples
    of that split in a fixed order; paraphrase_max_new_tokens / eval_max_new_tokens: the limits of
    paraphrases and of evaluation answers (None: max_new_tokens). Built-in tasks size their limits
    from the embedded model's answers (bench/results/answer_lengths.md) so that an answer that
    ends on its own fits with room to spare; one that reaches the limit is recorded as cut off."""

    name: str
    judge: str
    max_new_tokens: int
    paraphrase_kind: str
    splits: dict[str, Callable[[], list[Example]]] = field(default_factory=dict)
    judge_options: dict[str, Any] = field(default_factory=dict)
    invalid: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # split -> rows skipped as invalid
    paraphrase_max_new_tokens: int | None = None
    eval_max_new_tokens: int | None = None

    def __post_init__(self) -> None:
        self.paraphrase_max_new_tokens = self.paraphrase_max_new_tokens or self.max_new_tokens
        self.eval_max_new_tokens = self.eval_max_new_tokens or self.max_new_tokens

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
