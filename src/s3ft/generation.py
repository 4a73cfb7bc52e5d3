"""Generation backends: anything with `generate(prompts, max_new_tokens, ...) -> list[str]`.

`HFGenerator` is the default (transformers, batched): prompts are rendered with the model's
chat template, sorted by length into batches (so little padding is wasted), left-padded and
decoded greedily (or sampled with temperature > 0). `stream` yields `(index, text)` as every
batch finishes, so a stage can write each row to disk the moment it exists.

The same generator object serves the own-answer pass, the paraphrases, the LLM judge and the
in-domain evaluation of one model in a run: the model is loaded once."""
from __future__ import annotations

from typing import Any, Iterator, Protocol, Sequence

from s3ft.types import Messages


class Generator(Protocol):
    def generate(self, prompts: Sequence[Messages], max_new_tokens: int, **kw) -> list[str]: ...


def render_prompt(tokenizer, messages: Messages) -> str:
    """The exact text the model sees for `messages`, ending with the assistant header.
    Training (TRL) renders prompts with the same template call, so both sides agree."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class StreamingGenerator:
    """`generate` in terms of `stream`: a backend implements `stream(prompts, max_new_tokens, ...)`
    yielding (index, text) in any order, and gets `generate` (texts in prompt order) from here."""

    def generate(self, prompts: Sequence[Messages], max_new_tokens: int, **kw) -> list[str]:
        out: list[str | None] = [None] * len(prompts)
        for i, text in self.stream(prompts, max_new_tokens, **kw):  # type: ignore[attr-defined]
            out[i] = text
        return out  # type: ignore[return-value]


class HFGenerator(StreamingGenerator):
    """Batched transformers generation. `batch_size` prompts per forward pass; prompts are
    length-sorted, so a batch holds prompts of similar length."""

    def __init__(self, model, tokenizer, batch_size: int = 0):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = max(0, int(batch_size))  # 0: auto_batch_size per batch
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @classmethod
    def from_name(cls, name: str, batch_size: int = 0, dtype: str = "auto", device: str = "auto") -> "HFGenerator":
        from s3ft.models import load_model, load_tokenizer

        return cls(load_model(name, dtype=dtype, device=device), load_tokenizer(name), batch_size=batch_size)

    def stream(
        self,
        prompts: Sequence[Messages],
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        desc: str | None = None,
        progress: bool = True,
    ) -> Iterator[tuple[int, str]]:
        import torch
        from tqdm.auto import tqdm

        tok = self.tokenizer
        texts = [render_prompt(tok, p) for p in prompts]
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        device = next(self.model.parameters()).device
        eos = _stop_ids(tok, self.model.generation_config)
        sampled = bool(temperature and temperature > 0)
        gen_kw = dict(max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=tok.pad_token_id)
        if sampled:
            gen_kw.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            gen_kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        greedy = not sampled and plain_greedy_ok(self.model)
        prefill_each = greedy and prefill_each_ok(self.model)
        prefix = None
        if prefill_each and (n := shared_prefix_len(ids)) >= MIN_SHARED_PREFIX:
            with torch.inference_mode():
                prefix = prefill_prefix(self.model, ids[0][:n], device)
        bar = tqdm(total=len(ids), desc=desc or "generate", unit="ex", disable=not progress, dynamic_ncols=True)
        try:
            start = 0
            while start < len(order):
                size = self.batch_size or auto_batch_size(self.model, len(ids[order[start]]), max_new_tokens)
                batch = order[start : start + size]
                input_ids, mask = left_pad([ids[i] for i in batch], tok.pad_token_id)
                if seed is not None:
                    torch.manual_seed(seed + start)
                with torch.inference_mode():
                    if greedy:
                        new = greedy_decode(self.model, input_ids.to(device), mask.to(device), max_new_tokens, eos,
                                            prefill_each=prefill_each, prefix=prefix)
                    else:
                        out = self.model.generate(
                            input_ids=input_ids.to(device), attention_mask=mask.to(device), **gen_kw
                        )
                        new = out[:, input_ids.shape[1]:].tolist()
                for row, i in enumerate(batch):
                    yield i, _decode(tok, new[row], eos)
                bar.update(len(batch))
                start += len(batch)
        finally:
            bar.close()


def left_pad(rows: list[list[int]], pad_id: int):
    """(input_ids, attention_mask) of `rows` left-padded to the longest, as long tensors."""
    import torch

    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, x in enumerate(rows):
        input_ids[r, width - len(x):] = torch.tensor(x)
        mask[r, width - len(x):] = 1
    return input_ids, mask


def _text_config(model):
    """The config of the language model itself (a multimodal model nests it)."""
    return model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config


def gpu_share() -> float:
    """The fraction of a GPU's free memory this process may size its batches from: 1, or
    $S3FT_GPU_SHARE (scripts/compare_parallel.py sets 1/processes, so that processes sizing their
    batches at the same moment do not each take 60% of the same free memory)."""
    import os

    raw = os.environ.get("S3FT_GPU_SHARE", "").strip()
    if not raw:
        return 1.0
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"S3FT_GPU_SHARE={raw!r}: expected a number in (0, 1]") from None
    if not 0 < v <= 1:
        raise ValueError(f"S3FT_GPU_SHARE={raw!r}: expected a number in (0, 1]")
    return v


def auto_batch_size(model, prompt_tokens: int, max_new_tokens: int) -> int:
    """Rows per batch from memory: what one row needs (its KV cache at full length, the prefill
    activations of its prompt, a row of logits) against a budget - 60% of the free GPU memory
    (times gpu_share()), or
    on CPU a quarter of the available RAM and at most 64 rows (the batch bench/generation_speed.py
    measures with)."""
    import os

    import torch

    c = _text_config(model)
    p = next(model.parameters())
    nbytes = p.element_size()
    heads = c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    kv_per_token = 2 * c.num_hidden_layers * kv_heads * head_dim * nbytes
    inter = getattr(c, "intermediate_size", 4 * c.hidden_size)
    act_per_token = (4 * c.hidden_size + 3 * inter + heads * prompt_tokens) * nbytes
    per_row = kv_per_token * (prompt_tokens + max_new_tokens) + act_per_token * prompt_tokens + 2 * c.vocab_size * 4
    if p.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(p.device)
        budget, cap = 0.6 * free * gpu_share(), 512
    else:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 8 << 30
        budget, cap = 0.25 * avail, 64
    return int(max(1, min(cap, budget // per_row)))


# generation_config fields that make `generate` change the logits before the argmax; a model whose
# config sets one of them is decoded by `generate` itself
_LOGIT_PROCESSORS = ("repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size", "bad_words_ids",
                     "suppress_tokens", "begin_suppress_tokens", "forced_bos_token_id", "forced_eos_token_id",
                     "min_new_tokens", "min_length", "sequence_bias", "exponential_decay_length_penalty")


def plain_greedy_ok(model) -> bool:
    if getattr(model.config, "is_encoder_decoder", False):
        return False
    gc = getattr(model, "generation_config", None)
    if gc is None:
        return True
    for k in _LOGIT_PROCESSORS:
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

    c = DynamicCache(config=_text_config(model))
    model(input_ids=torch.tensor([prefix_ids], device=device), past_key_values=c, use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in c.layers]


def _prefill_each(model, input_ids, mask, cfg, prefix: list[tuple[Any, Any]] | None = None):
    """Prefill every prompt alone (no padding: the causal attention fast path), then stack the
    caches left-padded into one batch cache. On CPU this is ~2x faster than a padded batch
    prefill of SQuAD-length prompts, and each prompt's first token comes from the computation a
    one-by-one `generate` does. `prefix` (prefill_prefix): the cache of the prefix every prompt
    shares, which each prompt starts from instead of recomputing it - the same values computed in
    two pieces (tests check logits to 1e-5 and equal answers; bench/generation_speed.py counts
    identical answers on real prompts). The cache grows by concatenation, so the shared tensors
    are never written."""
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
    cfg = _text_config(model)
    if getattr(cfg, "sliding_window", None) or "sliding_attention" in (getattr(cfg, "layer_types", None) or []):
        return False
    return True


def greedy_decode(model, input_ids, attention_mask, max_new_tokens: int, stop: list[int],
                  prefill_each: bool = False, prefix: list[tuple[Any, Any]] | None = None) -> list[list[int]]:
    """Greedy decoding of a left-padded batch with the KV cache, dropping every sequence from the
    batch (and from the cache) the moment it emits a stop token.

    `model.generate` keeps finished sequences in the batch until the longest one ends, so on a
    batch whose answers vary in length (GSM8K: 60 to 320 tokens) a large share of every decode
    step is spent on padding. Here a step costs only the rows still running. Same model calls,
    same argmax as `generate(do_sample=False)`: the answers are the same (up to the rare near-tie
    that any change of batch shape can flip in float arithmetic - bench/generation_speed.py counts
    identical answers). Returns the new tokens of each row, stop token included when emitted."""
    import torch
    from transformers import DynamicCache

    n = input_ids.shape[0]
    out: list[list[int]] = [[] for _ in range(n)]
    rows = torch.arange(n, device=input_ids.device)  # batch position -> original row
    stop_t = torch.tensor(sorted(set(stop)), device=input_ids.device)
    cfg = _text_config(model)
    mask = attention_mask
    if prefill_each:
        cache, logits = _prefill_each(model, input_ids, mask, cfg, prefix)
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


def _stop_ids(tokenizer, generation_config) -> list[int]:
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


def _decode(tokenizer, new_ids: list[int], stop: list[int]) -> str:
    for j, t in enumerate(new_ids):
        if t in stop:
            new_ids = new_ids[:j]
            break
    return tokenizer.decode(new_ids, skip_special_tokens=True).strip()


def make_generator(cfg, model_name: str | None = None) -> Generator:
    """The generation backend the config asks for, for `model_name` (default: cfg.model)."""
    name = model_name or cfg.model
    if cfg.backend == "hf":
        return HFGenerator.from_name(name, batch_size=cfg.batch_size, dtype=cfg.dtype, device=cfg.device)
    if cfg.backend == "openai":
        from s3ft.backends_openai import OpenAIGenerator

        return OpenAIGenerator.from_config(cfg, model_name)
    if cfg.backend == "vllm":
        from s3ft.backends_vllm import VLLMGenerator

        return VLLMGenerator.from_config(cfg, model_name)
    raise ValueError(f"unknown backend {cfg.backend!r}; use backend: hf, vllm or openai")
