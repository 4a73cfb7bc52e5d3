"""What every generation backend shares: the `Generator` protocol, `StreamingGenerator` (`generate`
in terms of `stream`), and the prompt rendering, stop tokens and answer decoding that the hf and
vllm backends apply alike (so both see the same tokens and cut answers the same way)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from s3ft.types import Messages


class Generator(Protocol):
    def generate(self, prompts: Sequence[Messages], max_new_tokens: int, **kw) -> list[str]: ...


# Why generation stopped, recorded with every generated row: the model ended its turn (an end-of-turn
# or eos token), a stop string matched, or the answer reached max_new_tokens (cut off).
END_OF_TURN, STOP_STRING, LENGTH = "end_of_turn", "stop_string", "length"
STOP_REASONS = (END_OF_TURN, STOP_STRING, LENGTH)


class StreamingGenerator:
    """`generate` in terms of `stream`: a backend implements `stream(prompts, max_new_tokens, ...)`
    yielding (index, text, stop reason) in any order, and gets `generate` (texts in prompt order)
    from here."""

    def generate(self, prompts: Sequence[Messages], max_new_tokens: int, **kw) -> list[str]:
        out: list[str | None] = [None] * len(prompts)
        for i, text, _ in self.stream(prompts, max_new_tokens, **kw):  # type: ignore[attr-defined]
            out[i] = text
        return out  # type: ignore[return-value]


def render_prompt(tokenizer, messages: Messages) -> str:
    """The exact text the model sees for `messages`, ending with the assistant header.
    Training (TRL) renders prompts with the same template call, so both sides agree."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def stop_ids(tokenizer, generation_config) -> list[int]:
    """Token ids that end an answer: the tokenizer's eos, the model folder's generation_config
    eos (None: no generation config) and the usual end-of-turn tokens the vocabulary has."""
    ids = {tokenizer.eos_token_id}
    cfg_eos = getattr(generation_config, "eos_token_id", None)
    if isinstance(cfg_eos, int):
        ids.add(cfg_eos)
    elif isinstance(cfg_eos, (list, tuple)):
        ids.update(cfg_eos)
    for t in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        tid = tokenizer.convert_tokens_to_ids(t) if t in tokenizer.get_vocab() else None
        if tid is not None:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


def stop_reason(new_ids: list[int], stop: list[int], max_new_tokens: int) -> str:
    """Why generating `new_ids` ended: a stop token among them (end of turn), else the length limit."""
    if any(t in stop for t in new_ids):
        return END_OF_TURN
    return LENGTH if len(new_ids) >= max_new_tokens else END_OF_TURN


def decode(tokenizer, new_ids: list[int], stop: list[int]) -> str:
    """The answer text of generated token ids: cut at the first stop token, special tokens dropped,
    whitespace stripped."""
    for j, t in enumerate(new_ids):
        if t in stop:
            new_ids = new_ids[:j]
            break
    return tokenizer.decode(new_ids, skip_special_tokens=True).strip()
