"""The hf backend's own greedy decoding loop (KV cache, finished rows leave the batch) and the
prefill helpers it uses: per-prompt prefill on CPU, and one prefill of the token prefix every
prompt of a stream shares. `HFGenerator` (s3ft.backends.hf) uses it whenever greedy decoding
would give what `model.generate(do_sample=False)` gives (`plain_greedy_ok`)."""
from __future__ import annotations

from typing import Any


def text_config(model):
    """The config of the language model itself (a multimodal model nests it)."""
    return model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config


# generation_config fields that make `generate` change the logits before the argmax; a model whose
# config sets one of them is decoded by `generate` itself
LOGIT_PROCESSORS = ("repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size", "bad_words_ids",
                    "suppress_tokens", "begin_suppress_tokens", "forced_bos_token_id", "forced_eos_token_id",
                    "min_new_tokens", "min_length", "sequence_bias", "exponential_decay_length_penalty")


def plain_greedy_ok(model) -> bool:
    """Whether `greedy_decode` gives what `generate(do_sample=False)` gives for this model: a
    decoder-only model whose generation_config sets none of LOGIT_PROCESSORS."""
    if getattr(model.config, "is_encoder_decoder", False):
        return False
    gc = getattr(model, "generation_config", None)
    if gc is None:
        return True
    for k in LOGIT_PROCESSORS:
        v = getattr(gc, k, None)
        if v not in (None, 0, 1.0, [], {}):
            return False
    return True


# Shortest token prefix shared by every prompt of a stream that is prefilled once and reused.
MIN_SHARED_PREFIX = 8


def shared_prefix_len(ids: list[list[int]]) -> int:
    """Length of the token prefix every prompt starts with (the chat template's system turn, a
    task's instruction), short of each prompt's last token so that every prompt has a token left
    to prefill."""
    if not ids:
        return 0
    first = ids[0]
    n = min(len(x) for x in ids) - 1
    for x in ids[1:]:
        k = 0
        while k < n and x[k] == first[k]:
            k += 1
        n = k
    return max(0, n)


def prefill_prefix(model, prefix_ids: list[int], device) -> list[tuple[Any, Any]]:
    """The (keys, values) of every layer for `prefix_ids`, computed once for a whole stream."""
    import torch
    from transformers import DynamicCache

    c = DynamicCache(config=text_config(model))
    model(input_ids=torch.tensor([prefix_ids], device=device), past_key_values=c, use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in c.layers]


def prefill_each_prompt(model, input_ids, mask, cfg, prefix: list[tuple[Any, Any]] | None = None):
    """Prefill every prompt alone (no padding: the causal attention fast path), then stack the
    caches left-padded into one batch cache; returns (cache, last-position logits). On CPU this is
    ~2x faster than a padded batch prefill of SQuAD-length prompts, and each prompt's first token
    comes from the computation a one-by-one `generate` does. `prefix` (prefill_prefix): the cache
    of the prefix every prompt shares, which each prompt starts from instead of recomputing it -
    the same values computed in two pieces (tests check logits to 1e-5 and equal answers;
    bench/generation_speed.py counts identical answers on real prompts). The cache grows by
    concatenation, so the shared tensors are never written. `cfg`: text_config(model)."""
    import torch
    from transformers import DynamicCache

    width = input_ids.shape[1]
    per_layer: list[tuple[list, list]] = []
    logits = []
    for r in range(input_ids.shape[0]):
        x = input_ids[r, mask[r].bool()][None]
        c = DynamicCache(config=cfg)
        if prefix is not None:
            for li, (k, v) in enumerate(prefix):
                c.update(k, v, li)
            x = x[:, prefix[0][0].shape[-2]:]
        logits.append(model(input_ids=x, past_key_values=c, use_cache=True, logits_to_keep=1).logits[:, -1])
        for li, layer in enumerate(c.layers):
            if li == len(per_layer):
                per_layer.append(([], []))
            pad = width - layer.keys.shape[-2]
            per_layer[li][0].append(torch.nn.functional.pad(layer.keys, (0, 0, pad, 0)))
            per_layer[li][1].append(torch.nn.functional.pad(layer.values, (0, 0, pad, 0)))
    cache = DynamicCache(config=cfg)
    for li, (ks, vs) in enumerate(per_layer):
        cache.update(torch.cat(ks), torch.cat(vs), li)
    return cache, torch.cat(logits)


def prefill_each_ok(model) -> bool:
    """Per-prompt prefill: CPU only (a GPU runs a padded batch in parallel), and only for models
    without sliding-window layers (whose caches keep a window, not the whole prompt)."""
    p = next(model.parameters())
    if p.device.type != "cpu":
        return False
    cfg = text_config(model)
    return not (getattr(cfg, "sliding_window", None) or "sliding_attention" in (getattr(cfg, "layer_types", None) or []))


def greedy_decode(model, input_ids, attention_mask, max_new_tokens: int, stop: list[int],
                  prefill_each: bool = False, prefix: list[tuple[Any, Any]] | None = None) -> list[list[int]]:
    """Greedy decoding of a left-padded batch with the KV cache, dropping every sequence from the
    batch (and from the cache) the moment it emits a stop token.

    `model.generate` keeps finished sequences in the batch until the longest one ends, so on a
    batch whose answers vary in length (GSM8K: 60 to 320 tokens) a large share of every decode
    step is spent on padding. Here a step costs only the rows still running. Same model calls,
    same argmax as `generate(do_sample=False)`: the answers are the same (up to the rare near-tie
    that any change of batch shape can flip in float arithmetic - bench/generation_speed.py counts
    identical answers). `prefill_each`: prefill with prefill_each_prompt (from `prefix`, if given).
    Returns the new tokens of each row, stop token included when emitted."""
    import torch
    from transformers import DynamicCache

    n = input_ids.shape[0]
    out: list[list[int]] = [[] for _ in range(n)]
    rows = torch.arange(n, device=input_ids.device)  # batch position -> original row
    stop_t = torch.tensor(sorted(set(stop)), device=input_ids.device)
    cfg = text_config(model)
    mask = attention_mask
    if prefill_each:
        cache, logits = prefill_each_prompt(model, input_ids, mask, cfg, prefix)
    else:
        cache = DynamicCache(config=cfg)  # sliding-window layers where the model has them, like generate
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, past_key_values=cache,
                       use_cache=True, logits_to_keep=1).logits[:, -1]
    for step in range(max_new_tokens):
        nxt = logits.argmax(-1)
        done = torch.isin(nxt, stop_t)
        for r, t in zip(rows.tolist(), nxt.tolist()):
            out[r].append(t)
        if step == max_new_tokens - 1:
            break
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(-1)
            if keep.numel() == 0:
                break
            cache.batch_select_indices(keep)
            rows, nxt, mask = rows[keep], nxt[keep], mask[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        position_ids = (mask.sum(-1, keepdim=True) - 1)
        logits = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=position_ids, past_key_values=cache,
                       use_cache=True, logits_to_keep=1).logits[:, -1]
    return out
