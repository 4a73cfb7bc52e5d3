"""The two records every stage passes around: an `Example` (what a task yields) and a
`Verdict` (what a judge says about a response). Plain dataclasses, JSON-friendly."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Messages = list[dict[str, str]]  # chat messages: [{"role": "user", "content": "..."}]


@dataclass
class Example:
    """One task example.

    id:     stable string id (e.g. SQuAD id, "gsm8k-train-17", MBPP "601").
    prompt: chat messages sent to the model (without the answer); usually one user turn.
    gold:   the gold response text the SFT baseline trains on.
    meta:   task-specific extras the judge needs (all gold answers, test asserts, the
            question without context for the paraphrase prompt, ...). Must be JSON-serialisable.
    """

    id: str
    prompt: Messages
    gold: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Example":
        return cls(id=str(d["id"]), prompt=d["prompt"], gold=d["gold"], meta=d.get("meta") or {})


@dataclass
class Verdict:
    """A judge's decision. `correct` is True / False, or None when the judge cannot decide
    (e.g. the gold itself cannot be parsed). `reason` is a short human-readable explanation,
    `extracted` what the judge pulled out of the response (final number, code, span)."""

    correct: bool | None
    reason: str = ""
    extracted: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "reason": self.reason, "extracted": self.extracted}
