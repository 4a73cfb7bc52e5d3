"""How close a response is to what the model already says: its sequence log-probability under
the base model, log p(y | x), total and per token (the paper's Figure 2: gold answers sit far
lower than the model's own correct answers and its paraphrases)."""
from __future__ import annotations

from typing import Any, Sequence

from s3ft.backends.base import render_prompt
from s3ft.types import Messages


def encode_pairs(tokenizer, prompts: Sequence[Messages], completions: Sequence[str]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids) per pair: the chat-rendered prompt, then the completion's text."""
    return [(tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"],
             tokenizer(c, add_special_tokens=False)["input_ids"]) for p, c in zip(prompts, completions, strict=True)]


def right_padded(seqs: Sequence[tuple[list[int], list[int]]], batch: Sequence[int], pad: int):
    """input_ids and attention_mask of the prompt+completion sequences `batch` (indices into seqs),
    right-padded: positions stay those of an unpadded pass."""
    import torch

    width = max(len(seqs[i][0]) + len(seqs[i][1]) for i in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, i in enumerate(batch):
        full = seqs[i][0] + seqs[i][1]
        ids[row, : len(full)] = torch.tensor(full)
        mask[row, : len(full)] = 1
    return ids, mask


def sequence_logprobs(model, tokenizer, prompts: Sequence[Messages], completions: Sequence[str],
                      batch_size: int = 8, progress: bool = True) -> list[dict[str, Any]]:
    """For each (prompt, completion): {"total", "per_token", "tokens"} - the sum and mean of the
    completion tokens' log-probabilities given the chat-rendered prompt (teacher forcing)."""
    import torch
    from tqdm.auto import tqdm

    seqs = encode_pairs(tokenizer, prompts, completions)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]) + len(seqs[i][1]), reverse=True)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[dict[str, Any] | None] = [None] * len(seqs)
    for start in tqdm(range(0, len(order), batch_size), desc="log-probs", disable=not progress, dynamic_ncols=True):
        batch = order[start : start + batch_size]
        ids, mask = right_padded(seqs, batch, pad)
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        for row, i in enumerate(batch):
            n_prompt, n_comp = len(seqs[i][0]), len(seqs[i][1])
            vals = logp[row, n_prompt - 1 : n_prompt - 1 + n_comp]
            total = float(vals.sum())
            out[i] = {"total": round(total, 4), "per_token": round(total / max(n_comp, 1), 4), "tokens": n_comp}
    return out  # type: ignore[return-value]
