"""Generation backends: anything with `generate(prompts, max_new_tokens, ...) -> list[str]`
(s3ft.backends.base.Generator); `stream(...)` yields `(index, text)` as answers finish.

- `hf` (s3ft.backends.hf.HFGenerator): transformers, batched, s3ft's own greedy KV-cache loop
  (s3ft.backends.hf_decode). The default.
- `vllm` (s3ft.backends.vllm.VLLMGenerator): vLLM's offline engine (optional extra, GPU).
- `openai` (s3ft.backends.openai.OpenAIGenerator): any OpenAI-compatible chat-completions server,
  through the `openai` SDK.

`make_generator(cfg, model_name)` builds the one a config asks for. The backend modules are
imported there, not here: importing this package loads neither torch, vLLM nor the SDK."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from s3ft.backends.base import Generator


def make_generator(cfg, model_name: str | None = None) -> Generator:
    """The generation backend the config asks for, for `model_name` (default: cfg.model)."""
    name = model_name or cfg.model
    if cfg.backend == "hf":
        from s3ft.backends.hf import HFGenerator

        return HFGenerator.from_name(name, batch_size=cfg.batch_size, dtype=cfg.dtype, device=cfg.device,
                                     **cfg.model_options(name))
    if cfg.backend == "openai":
        from s3ft.backends.openai import OpenAIGenerator

        return OpenAIGenerator.from_config(cfg, model_name)
    if cfg.backend == "vllm":
        from s3ft.backends.vllm import VLLMGenerator

        return VLLMGenerator.from_config(cfg, model_name)
    raise ValueError(f"unknown backend {cfg.backend!r}; use backend: hf, vllm or openai")
