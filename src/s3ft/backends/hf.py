"""The hf generation backend (the default): transformers, batched.

Prompts are rendered with the model's chat template, sorted by length into batches (so little
padding is wasted), left-padded and decoded greedily with s3ft's own KV-cache loop
(s3ft.backends.hf_decode), or sampled by `model.generate` with temperature > 0 (`n` > 1: that many
samples per prompt, `num_return_sequences`; each batch seeded with `seed` + its position, so the
same prompts, seed and batch size give the same samples). `stream` yields `(index, text)` as
every batch finishes, so a stage can write each row to disk the moment it exists.

The same generator object serves the own-answer pass, the paraphrases, the LLM judge and the
in-domain evaluation of one model in a run: the model is loaded once."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from s3ft.backends import hf_decode
from s3ft.backends.base import StreamingGenerator, decode, render_prompt, stop_ids, stop_reason
from s3ft.types import Messages


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
    def from_name(cls, name: str, batch_size: int = 0, dtype: str = "auto", device: str = "auto",
                  revision: str | None = None, trust_remote_code: bool = False,
                  chat_template: str | None = None) -> HFGenerator:
        """`name` loaded (models.load_model / load_tokenizer): revision, trust_remote_code and
        chat_template as S3FTConfig.model_options gives them."""
        from s3ft.models import load_model, load_tokenizer

        return cls(load_model(name, dtype=dtype, device=device, revision=revision, trust_remote_code=trust_remote_code),
                   load_tokenizer(name, revision, trust_remote_code, chat_template), batch_size=batch_size)

    def stream(
        self,
        prompts: Sequence[Messages],
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        desc: str | None = None,
        progress: bool = True,
        n: int = 1,
    ) -> Iterator[tuple[int, Any, Any]]:
        """Yields (index, text, stop reason) as each batch finishes; with n > 1 (sampling only),
        (index, [n texts], [n stop reasons]), n sequences per prompt (a batch of b prompts
        generates b * n sequences: the batch size counts sequences)."""
        import torch
        from tqdm.auto import tqdm

        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")

        tok = self.tokenizer
        texts = [render_prompt(tok, p) for p in prompts]
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        device = next(self.model.parameters()).device
        eos = stop_ids(tok, self.model.generation_config)
        sampled = bool(temperature and temperature > 0)
        gen_kw = {"max_new_tokens": max_new_tokens, "eos_token_id": eos, "pad_token_id": tok.pad_token_id}
        if n > 1 and not sampled:
            raise ValueError(f"{n} answers per prompt need sampling (temperature > 0): greedy answers are all the same")
        if sampled:
            gen_kw.update(do_sample=True, temperature=temperature, top_p=top_p)
            if n > 1:
                gen_kw["num_return_sequences"] = n
        else:
            gen_kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        greedy = not sampled and hf_decode.plain_greedy_ok(self.model)
        prefill_each = greedy and hf_decode.prefill_each_ok(self.model)
        prefix = None
        if prefill_each and (shared := hf_decode.shared_prefix_len(ids)) >= hf_decode.MIN_SHARED_PREFIX:
            with torch.inference_mode():
                prefix = hf_decode.prefill_prefix(self.model, ids[0][:shared], device)
        bar = tqdm(total=len(ids), desc=desc or "generate", unit="ex", disable=not progress, dynamic_ncols=True)
        try:
            start = 0
            while start < len(order):
                size = self.batch_size or auto_batch_size(self.model, len(ids[order[start]]), max_new_tokens)
                size = max(1, size // n)  # prompts per batch: n sequences each
                batch = order[start : start + size]
                input_ids, mask = left_pad([ids[i] for i in batch], tok.pad_token_id)
                if seed is not None:
                    torch.manual_seed(seed + start)
                with torch.inference_mode():
                    if greedy:
                        new = hf_decode.greedy_decode(self.model, input_ids.to(device), mask.to(device), max_new_tokens,
                                                      eos, prefill_each=prefill_each, prefix=prefix)
                    else:
                        out = self.model.generate(
                            input_ids=input_ids.to(device), attention_mask=mask.to(device), **gen_kw
                        )
                        new = out[:, input_ids.shape[1]:].tolist()
                for row, i in enumerate(batch):
                    if n == 1:
                        yield i, decode(tok, new[row], eos), stop_reason(new[row], eos, max_new_tokens)
                    else:  # generate returns each prompt's n sequences one after another
                        seqs = new[row * n : (row + 1) * n]
                        yield i, [decode(tok, x, eos) for x in seqs], [stop_reason(x, eos, max_new_tokens) for x in seqs]
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

    c = hf_decode.text_config(model)
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
