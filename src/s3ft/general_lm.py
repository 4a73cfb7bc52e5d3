"""The lm-evaluation-harness model s3ft scores general benchmarks with: lm-eval's own `HFLM`
(same tokenization, same requests, same metrics) whose log-likelihoods run each distinct context
once on CPU.

Multiple-choice benchmarks ask for log p(choice | context) for every choice of a question, and
every choice shares the question's context: TruthfulQA MC2 scores ~8 answers after the same
~450-token six-shot prompt, HellaSwag 4 endings, ARC 3-5 answers. `HFLM` runs context + choice
once per choice, padded into batches. Here the context runs once (one row, no padding: the fast
causal path on CPU), its KV cache is repeated for the choices, and only the choices' tokens run
on top of it. Same log-likelihoods up to float rounding (tests/test_general_lm.py); on 2 CPU
cores TruthfulQA MC2 scores 4.55x faster, MMLU 1.8x, the six benchmarks together 2.25x
(bench/results/eval_speed.md). Contexts with a single continuation (WinoGrande) and GPUs keep
HFLM's own batched path.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

MAX_SHARED_CONTINUATION = 256  # longer continuations (rolling perplexity windows) take HFLM's path
MAX_ROWS = 32  # choices of one context scored per forward pass


@torch.inference_mode()
def score_continuations(model, context: list[int], continuations: list[list[int]], device: torch.device | str = "cpu",
                        max_rows: int = MAX_ROWS) -> list[tuple[float, bool]]:
    """(sum of log p(continuation tokens | context), whether greedy decoding would produce the
    continuation) for each continuation, running `context` once and its KV cache for every
    continuation. Continuations are right-padded: with causal attention padding that comes after
    a row's real tokens cannot change them, so no attention mask is needed."""
    out = model(input_ids=torch.tensor([context], device=device), use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # predicts every continuation's first token
    cache = out.past_key_values
    results: list[tuple[float, bool] | None] = [None] * len(continuations)
    rest = []
    for i, cont in enumerate(continuations):
        if len(cont) == 1:
            results[i] = (float(first[cont[0]]), bool(int(first.argmax()) == cont[0]))
        else:
            rest.append(i)
    chunks = [rest[k:k + max_rows] for k in range(0, len(rest), max_rows)]
    for n, chunk in enumerate(chunks):
        rows = [continuations[i] for i in chunk]
        width = max(len(c) for c in rows) - 1
        ids = torch.tensor([c[:-1] + [c[-1]] * (width - len(c) + 1) for c in rows], device=device)
        c = cache if n == len(chunks) - 1 else copy.deepcopy(cache)
        c.batch_repeat_interleave(len(rows))
        logp = torch.log_softmax(model(input_ids=ids, past_key_values=c, use_cache=True).logits.float(), dim=-1)
        for j, (i, cont) in enumerate(zip(chunk, rows)):
            steps = logp[j, : len(cont) - 1]
            targets = torch.tensor(cont[1:], device=steps.device)
            total = float(first[cont[0]]) + float(steps.gather(1, targets[:, None]).sum())
            greedy = int(first.argmax()) == cont[0] and bool((steps.argmax(-1) == targets).all())
            results[i] = (total, greedy)
    return results  # type: ignore[return-value]


class PrefixSharingHFLM(HFLM):
    """`HFLM` with `_loglikelihood_tokens` grouped by context on CPU (see the module docstring)."""

    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str], list[int], list[int]]],
                              disable_tqdm: bool = False, override_bs: int | None = None) -> list[tuple[float, bool]]:
        if self.backend != "causal" or self.device.type != "cpu":
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (_, ctx, cont) in enumerate(requests):
            groups.setdefault(tuple(ctx), []).append(i)
        # HFLM's own batched path for what sharing cannot speed up: a context with one continuation
        # (WinoGrande), sequences longer than the window, long continuations (rolling windows)
        other = sorted(i for idx in groups.values() for i in idx
                       if len(idx) == 1 or len(requests[i][1]) + len(requests[i][2]) > self.max_length + 1
                       or len(requests[i][2]) > MAX_SHARED_CONTINUATION)
        taken = set(other)
        groups = {ctx: [i for i in idx if i not in taken] for ctx, idx in groups.items()}
        groups = {ctx: idx for ctx, idx in groups.items() if idx}
        res: list[Any] = [None] * len(requests)
        if other:
            for i, r in zip(other, super()._loglikelihood_tokens([requests[i] for i in other], disable_tqdm=disable_tqdm,
                                                                 override_bs=override_bs)):
                res[i] = r
        # longest contexts first: memory problems show at once, and the bar's estimate is pessimistic
        order = sorted(groups, key=lambda ctx: -len(ctx))
        bar = tqdm(total=len(requests) - len(other), disable=disable_tqdm or self.rank != 0,
                   desc="Running loglikelihood requests (shared contexts)")
        for ctx in order:
            idx = groups[ctx]
            scores = score_continuations(self.model, list(ctx), [requests[i][2] for i in idx], self.device)
            for i, answer in zip(idx, scores):
                res[i] = answer
                if requests[i][0] is not None:  # rolling windows have no cache key
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
            bar.update(len(idx))
        bar.close()
        return res
