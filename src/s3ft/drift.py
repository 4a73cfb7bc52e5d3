"""Drift from the base model: how far a fine-tuned model's next-token distributions moved, on
answers the base model itself wrote. Continuous, with no chance floor (unlike multiple-choice
benchmarks), and it sees changes in how a model writes, which log-likelihood benchmarks do not.

For each prompt, the base model's own greedy answer y (from the `ifeval` stage on general prompts
and the `eval` stage on the task's test prompts) is fed to both models (teacher forcing), and at
every answer token t:

    KL_t = sum_v p_base(v | x, y<t) * (log p_base(v | x, y<t) - log p_tuned(v | x, y<t))

The row records the mean of KL_t over the answer's tokens (`kl`, nats per token) and the mean
log-likelihood of the answer's tokens under each model (`logp_tuned`, `logp_base`; their
difference says how much less likely the tuned model finds what the base model said). The
answer's tokens are its text as the chat template continues the prompt (as `logprob.py` scores
targets); the end-of-turn token is not scored.

Base logits come from the same model with its LoRA adapter disabled (peft's
`disable_adapter()`: no second copy in memory) or, for a full fine-tune, from the base model
loaded beside it. The base model against itself gives exactly 0 (the same logits twice), and so
does an adapter whose B matrices are zero (the adapter adds exactly 0)."""
from __future__ import annotations

import contextlib
from typing import Any, Sequence

from s3ft.logprob import encode_pairs, right_padded
from s3ft.types import Messages

TOKENS_PER_BATCH = 2048  # logits are batch tokens x vocabulary floats, twice: this bounds memory


def drift_rows(tuned, tokenizer, prompts: Sequence[Messages], responses: Sequence[str], reference=None,
               tokens_per_batch: int = TOKENS_PER_BATCH, progress: bool = True) -> list[dict[str, Any]]:
    """One row per (prompt, response): tokens, kl (mean per-token KL(base || tuned), nats),
    kl_max (largest per-token KL), logp_tuned and logp_base (mean per-token log-likelihood of the
    response). `reference`: the base model; None when `tuned` is a peft model whose base is the
    same model with its adapter disabled."""
    import torch
    from tqdm.auto import tqdm

    if reference is None and not hasattr(tuned, "disable_adapter"):
        raise ValueError("drift needs the base model: pass reference=, or a peft model whose adapter can be disabled")
    seqs = encode_pairs(tokenizer, prompts, responses)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]) + len(seqs[i][1]), reverse=True)
    batches, cur = [], []
    for i in order:  # longest first; a batch holds at most tokens_per_batch padded tokens (or one sequence)
        width = len(seqs[cur[0]][0]) + len(seqs[cur[0]][1]) if cur else len(seqs[i][0]) + len(seqs[i][1])
        if cur and width * (len(cur) + 1) > tokens_per_batch:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    device = next(tuned.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[dict[str, Any] | None] = [None] * len(seqs)
    bar = tqdm(total=len(seqs), desc="drift", unit="ex", disable=not progress, dynamic_ncols=True)
    for batch in batches:
        ids, mask = right_padded(seqs, batch, pad)
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode():
            tuned_logits = tuned(input_ids=ids, attention_mask=mask).logits
            with (tuned.disable_adapter() if reference is None else contextlib.nullcontext()):
                base_logits = (reference or tuned)(input_ids=ids, attention_mask=mask).logits
            for row, i in enumerate(batch):
                n_prompt, n_resp = len(seqs[i][0]), len(seqs[i][1])
                if not n_resp:
                    out[i] = {"tokens": 0, "kl": 0.0, "kl_max": 0.0, "logp_tuned": None, "logp_base": None}
                    continue
                span = slice(n_prompt - 1, n_prompt - 1 + n_resp)  # logits that predict the response tokens
                lt = torch.log_softmax(tuned_logits[row, span].float(), dim=-1)
                lb = torch.log_softmax(base_logits[row, span].float(), dim=-1)
                kl = (lb.exp() * (lb - lt)).sum(-1).clamp_min(0.0)  # clamp: rounding can give -1e-9
                target = ids[row, n_prompt : n_prompt + n_resp].unsqueeze(-1)
                out[i] = {"tokens": n_resp, "kl": round(float(kl.mean()), 6), "kl_max": round(float(kl.max()), 6),
                          "logp_tuned": round(float(lt.gather(-1, target).mean()), 6),
                          "logp_base": round(float(lb.gather(-1, target).mean()), 6)}
        bar.update(len(batch))
    bar.close()
    return out  # type: ignore[return-value]


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over the answers (each answer weighs the same; `empty` answers have no token to
    score and are counted apart) with 95% intervals: kl, and the drop
    in the answers' mean log-likelihood (logp_base - logp_tuned, nats per token; > 0: the tuned
    model finds the base model's answers less likely)."""
    from s3ft.evaluation import mean_ci

    scored = [r for r in rows if r["tokens"]]
    return {"answers": len(scored), "empty": len(rows) - len(scored), "tokens": sum(r["tokens"] for r in scored),
            "kl": mean_ci([r["kl"] for r in scored]),
            "logp_drop": mean_ci([r["logp_base"] - r["logp_tuned"] for r in scored])}
