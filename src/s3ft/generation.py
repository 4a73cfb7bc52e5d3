"""Generation backends: anything with `generate(prompts, max_new_tokens, ...) -> list[str]`.

`HFGenerator` is the default (transformers, batched): prompts are rendered with the model's
chat template, sorted by length into batches (so little padding is wasted), left-padded and
decoded greedily (or sampled with temperature > 0). `stream` yields `(index, text)` as every
batch finishes, so a stage can write each row to disk the moment it exists.

The same generator object serves the own-answer pass, the paraphrases, the LLM judge and the
in-domain evaluation of one model in a run: the model is loaded once."""
from __future__ import annotations

from typing import Iterator, Protocol, Sequence

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

    def __init__(self, model, tokenizer, batch_size: int = 16):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = max(1, int(batch_size))
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @classmethod
    def from_name(cls, name: str, batch_size: int = 16, dtype: str = "auto", device: str = "auto") -> "HFGenerator":
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
        eos = _stop_ids(tok, self.model)
        gen_kw = dict(max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=tok.pad_token_id)
        if temperature and temperature > 0:
            gen_kw.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            gen_kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        bar = tqdm(total=len(ids), desc=desc or "generate", unit="ex", disable=not progress, dynamic_ncols=True)
        try:
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                width = max(len(ids[i]) for i in batch)
                input_ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    n = len(ids[i])
                    input_ids[row, width - n :] = torch.tensor(ids[i])
                    mask[row, width - n :] = 1
                if seed is not None:
                    torch.manual_seed(seed + start)
                with torch.inference_mode():
                    out = self.model.generate(
                        input_ids=input_ids.to(device), attention_mask=mask.to(device), **gen_kw
                    )
                new = out[:, width:].tolist()
                for row, i in enumerate(batch):
                    yield i, _decode(tok, new[row], eos)
                bar.update(len(batch))
        finally:
            bar.close()


def _stop_ids(tokenizer, model) -> list[int]:
    ids = {tokenizer.eos_token_id}
    cfg_eos = getattr(model.generation_config, "eos_token_id", None)
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
