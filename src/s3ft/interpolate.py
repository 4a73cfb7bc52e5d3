"""Post-hoc interpolation toward the base model (WiSE-FT, Wortsman et al. 2022): the models
between the base and a fine-tuned one, at no training cost.

- A LoRA adapter: a copy whose update is alpha times the original - every lora_B weight scaled
  by alpha (the update is B @ A * scaling, so this scales it exactly). peft's
  `add_weighted_adapter` does not: it multiplies both A and B by sqrt(weight * scaling), which
  rounds, so alpha = 1 would not give back the trained adapter bit for bit.
- A full fine-tune: every floating-point weight (1 - alpha) * base + alpha * tuned, in float32.

alpha = 0 gives the base model's weights, alpha = 1 the tuned model's, exactly."""
from __future__ import annotations

import shutil
from pathlib import Path

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def is_adapter(path: str | Path) -> bool:
    p = Path(path)
    return (p / "adapter_config.json").exists() and not (p / "config.json").exists()


def scale_adapter(src: str | Path, dst: str | Path, alpha: float) -> Path:
    """Copy the LoRA adapter folder `src` to `dst` with its update scaled by `alpha`."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    weights = src / ADAPTER_WEIGHTS
    if not weights.exists():
        raise ValueError(f"{src}: no {ADAPTER_WEIGHTS} (only safetensors adapters can be interpolated)")
    shutil.copytree(src, dst, dirs_exist_ok=True)
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    scaled = 0
    for k, t in tensors.items():
        if ".lora_B." in k or "lora_embedding_B" in k:
            tensors[k] = t * alpha
            scaled += 1
    if not scaled:
        raise ValueError(f"{src}: no lora_B weights in {ADAPTER_WEIGHTS}; not a LoRA adapter")
    save_file(tensors, str(dst / ADAPTER_WEIGHTS), metadata=meta)
    return dst


def interpolate_full(base: str | Path, tuned: str | Path, dst: str | Path, alpha: float,
                     revision: str | None = None, trust_remote_code: bool = False) -> Path:
    """Save (1 - alpha) * base + alpha * tuned (every floating-point weight, float32) to `dst`,
    with the tuned folder's tokenizer and config."""
    import torch
    from transformers import AutoModelForCausalLM

    from s3ft.models import pretrained_kwargs, resolve_model

    base_path = resolve_model(str(base))
    ref = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32,
                                               **pretrained_kwargs(base_path, revision, trust_remote_code))
    model = AutoModelForCausalLM.from_pretrained(str(tuned), dtype=torch.float32,
                                                 **pretrained_kwargs(str(tuned), None, trust_remote_code))
    ref_params = dict(ref.named_parameters())
    with torch.no_grad():  # (named_parameters lists a tied weight once: it is interpolated once)
        for name, t in model.named_parameters():
            if t.is_floating_point():
                t.copy_((1.0 - alpha) * ref_params[name] + alpha * t)
    dst = Path(dst)
    shutil.copytree(tuned, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.index.json"))
    model.save_pretrained(dst)
    return dst


def interpolate(base: str | Path, tuned: str | Path, dst: str | Path, alpha: float,
                revision: str | None = None, trust_remote_code: bool = False) -> Path:
    """The model alpha of the way from `base` to `tuned` (an adapter folder or a full model), saved to `dst`."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    from s3ft.models import resolve_model

    resolve_model(str(tuned))  # a tuned model that exists and still has its weights
    if is_adapter(tuned):
        return scale_adapter(tuned, dst, alpha)
    return interpolate_full(base, tuned, dst, alpha, revision, trust_remote_code)
