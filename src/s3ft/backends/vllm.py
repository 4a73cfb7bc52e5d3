"""vLLM backend (optional extra, GPU): `pip install "s3ft[vllm]"`, then `backend: vllm`.

vLLM's offline engine (`vllm.LLM`) generates the own answers, the paraphrases, the LLM judge's
verdicts and the evaluations. Prompts are rendered with the model's chat template and tokenised
by the model's tokenizer exactly as the hf backend does, then handed to vLLM as token ids, so both
backends see the same tokens; greedy decoding is `temperature=0`.

- A fine-tuned LoRA adapter is not merged: the engine loads the base model named in the adapter's
  config with `enable_lora=True` and every request carries a `LoRARequest` for the adapter.
- `vllm_tensor_parallel_size` shards one model over that many GPUs (`vllm_pipeline_parallel_size`
  and `vllm_distributed_executor_backend: ray` span nodes).
- Data parallelism over many GPUs or nodes: serve the model with vLLM itself
  (`vllm serve MODEL --data-parallel-size N`, `--data-parallel-backend ray` across nodes) and use
  the openai backend with `max_concurrency` high enough to keep every replica busy: vLLM balances
  the requests. s3ft does not run its own scheduler.
- Prompts go to the engine in chunks of `vllm_chunk_size`, and each chunk's rows are yielded (and
  written by the stage) as soon as it finishes, so an interrupted run keeps what was done.
- One engine per process: vLLM takes `vllm_gpu_memory_utilization` of the device's memory (on a
  CPU build: of RAM) when it starts, so two engines, or an engine and training, do not fit side by
  side. The base model and its adapters share one LoRA-enabled engine (base requests carry no
  LoRARequest); asking for another base shuts the current engine down first; and the pipeline
  calls `shutdown_engines()` before anything that loads a model outside the engine (training,
  lm-evaluation-harness, log-prob scoring). A generator whose engine was shut down starts it again
  at its next call.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from s3ft.backends.base import LENGTH, STOP_STRING, StreamingGenerator, decode, render_prompt, stop_ids, stop_reason
from s3ft.types import Messages

INSTALL_HINT = ('the vllm backend needs vLLM (a GPU build): pip install "s3ft[vllm]" - or use backend: hf, '
                'or backend: openai against a running `vllm serve`')


def import_vllm():
    """(LLM, SamplingParams, LoRARequest) from vLLM, or a RuntimeError with the install hint."""
    try:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError as e:  # the extra is not installed, or this machine has no vLLM build
        raise RuntimeError(f"{INSTALL_HINT} ({e})") from None
    return LLM, SamplingParams, LoRARequest


def adapter_info(path: str | Path) -> dict[str, Any] | None:
    """The adapter_config.json of a PEFT adapter folder, or None if `path` is not one."""
    cfg = Path(path) / "adapter_config.json"
    if not cfg.is_file():
        return None
    return json.loads(cfg.read_text())


_ENGINES: dict[tuple, Any] = {}  # engine key -> the running vllm.LLM (at most one)
_LORA_IDS: dict[tuple, int] = {}  # (adapter folder, its weights' mtime) -> LoRARequest int id


def engine(key: tuple, kwargs: dict[str, Any]):
    """The running engine for `key`, started with `kwargs` if it is not the one running (any other
    engine is shut down first: each takes most of the device's memory)."""
    if key not in _ENGINES:
        shutdown_engines()
        LLM, _, _ = import_vllm()
        _ENGINES[key] = LLM(**kwargs)
    return _ENGINES[key]


def shutdown_engines() -> int:
    """Stop every running vLLM engine and free its memory; returns how many were running."""
    n = len(_ENGINES)
    while _ENGINES:
        _, llm = _ENGINES.popitem()
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()  # the engine-core process (and, on a GPU, its memory) goes away here
        del llm
    _LORA_IDS.clear()  # a new engine has no adapters loaded
    if n:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return n


def _lora_request(LoRARequest, adapter_path: str):
    """A LoRARequest whose int id is new for every adapter folder - and for the same folder once its
    weights change (vLLM caches adapters by id, so a retrained adapter must not reuse one)."""
    folder = Path(adapter_path)
    weights = [f for f in folder.iterdir() if f.name.startswith("adapter_model")]
    key = (str(folder.resolve()), max((f.stat().st_mtime_ns for f in weights), default=0))
    if key not in _LORA_IDS:
        _LORA_IDS[key] = len(_LORA_IDS) + 1
    return LoRARequest(f"s3ft-adapter-{_LORA_IDS[key]}", _LORA_IDS[key], str(adapter_path))


class VLLMGenerator(StreamingGenerator):
    def __init__(self, model_path: str, tokenizer, adapter_path: str | None = None, lora_rank: int | None = None,
                 tensor_parallel_size: int = 1, pipeline_parallel_size: int = 1,
                 distributed_executor_backend: str | None = None, gpu_memory_utilization: float = 0.85,
                 kv_cache_gib: float | None = None, dtype: str = "auto", max_model_len: int | None = None,
                 seed: int = 0, chunk_size: int = 512, revision: str | None = None, trust_remote_code: bool = False):
        """`lora_rank`: the largest adapter rank the engine must serve (None and no adapter: an
        engine without LoRA). The base model's generator and its adapters' share one engine when
        they ask for the same rank."""
        _, self._SamplingParams, self._LoRARequest = import_vllm()
        self.tokenizer = tokenizer
        self.chunk_size = max(1, int(chunk_size))
        self.adapter_path = str(adapter_path) if adapter_path else None
        kw: dict[str, Any] = {
            "model": model_path, "tokenizer": model_path, "dtype": dtype, "seed": seed,
            "tensor_parallel_size": tensor_parallel_size, "pipeline_parallel_size": pipeline_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
        }
        if kv_cache_gib:
            kw["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
        if max_model_len:
            kw["max_model_len"] = max_model_len
        if distributed_executor_backend:
            kw["distributed_executor_backend"] = distributed_executor_backend
        if revision and not Path(model_path).exists():  # a hub base model at a branch, tag or commit
            kw.update(revision=revision, tokenizer_revision=revision)
        if trust_remote_code:
            kw["trust_remote_code"] = True
        if lora_rank or adapter_path:
            # vLLM's smallest supported max_lora_rank is 8; round the rank up to a supported one
            kw.update(enable_lora=True, max_loras=1, max_lora_rank=_supported_rank(lora_rank or 8))
        self._engine_kwargs = kw
        self._engine_key = tuple(sorted((k, repr(v)) for k, v in kw.items()))
        self.llm = engine(self._engine_key, kw)
        self._stop = stop_ids(tokenizer, _generation_config(model_path))

    @classmethod
    def from_config(cfg_cls, cfg, model_name: str | None = None) -> VLLMGenerator:
        """The generator for `model_name` (default cfg.model): a PEFT adapter folder is served on its
        base model through a LoRARequest. Computes in cfg.resolved_dtype(), as the hf backend."""
        from s3ft.models import load_tokenizer, resolve_model

        name = model_name or cfg.model
        opts = cfg.model_options(name)
        path = resolve_model(name)
        info = adapter_info(path)
        base, adapter = path, None
        rank = cfg.lora_r if cfg.use_peft else None  # the adapters this run trains are served on this engine
        if info is not None:
            base = resolve_model(info["base_model_name_or_path"])
            adapter, rank = path, max(int(info.get("r", 8)), rank or 0)
        return cfg_cls(
            # (an adapter's own tokenizer: training saved it with the chat template it used)
            str(base), load_tokenizer(str(path), **opts), adapter_path=adapter, lora_rank=rank,
            tensor_parallel_size=cfg.vllm_tensor_parallel_size, pipeline_parallel_size=cfg.vllm_pipeline_parallel_size,
            distributed_executor_backend=cfg.vllm_distributed_executor_backend,
            gpu_memory_utilization=cfg.vllm_gpu_memory_utilization, kv_cache_gib=cfg.vllm_kv_cache_gib,
            dtype=cfg.resolved_dtype(), max_model_len=cfg.vllm_max_model_len,
            seed=cfg.seed, chunk_size=cfg.vllm_chunk_size, revision=opts["revision"],
            trust_remote_code=opts["trust_remote_code"],
        )

    def stream(self, prompts: Sequence[Messages], max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
               seed: int | None = None, desc: str | None = None, progress: bool = True,
               n: int = 1) -> Iterator[tuple[int, Any, Any]]:
        """Yields (index, text, stop reason) as each chunk of prompts finishes; with n > 1
        (sampling only), (index, [n texts], [n stop reasons]): vLLM's `n` samples per request, each
        request seeded with `seed` (its samples do not depend on the other prompts)."""
        tok = self.tokenizer
        ids = [tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in prompts]
        greedy = not (temperature and temperature > 0)
        if n < 1 or (n > 1 and greedy):
            raise ValueError(f"n must be >= 1, and n > 1 needs sampling (temperature > 0); got n={n}")
        params = self._SamplingParams(
            n=n, max_tokens=max_new_tokens, temperature=0.0 if greedy else temperature, top_p=1.0 if greedy else top_p,
            seed=None if greedy else seed, stop_token_ids=list(self._stop), skip_special_tokens=True,
        )
        for start in range(0, len(ids), self.chunk_size):
            # the engine again if something shut it down since (training, lm-eval)
            self.llm = engine(self._engine_key, self._engine_kwargs)
            lora = _lora_request(self._LoRARequest, self.adapter_path) if self.adapter_path else None
            chunk = [{"prompt_token_ids": x} for x in ids[start : start + self.chunk_size]]
            outs = self.llm.generate(chunk, params, lora_request=lora, use_tqdm=progress)
            for j, out in enumerate(outs):  # vLLM returns outputs in the order of the inputs
                texts, whys = [], []
                for o in out.outputs[:n]:
                    new = list(o.token_ids)
                    whys.append(LENGTH if o.finish_reason == "length" else STOP_STRING if isinstance(o.stop_reason, str)
                                else stop_reason(new, self._stop, max_new_tokens))
                    texts.append(decode(tok, new, self._stop))  # the text as the hf backend cuts it
                yield (start + j, texts, whys) if n > 1 else (start + j, texts[0], whys[0])


def _generation_config(model_path: str):
    """The folder's generation_config (the hf backend's stop tokens come from it too), or None."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model_path)
    except OSError:  # no generation_config.json: the tokenizer's eos and end-of-turn tokens still apply
        return None


def _supported_rank(r: int) -> int:
    for ok in (8, 16, 32, 64, 128, 256, 320, 512):
        if r <= ok:
            return ok
    return r
