"""LoRA dropout that keeps one byte per element for backward instead of eight.

PEFT computes a LoRA layer's update as lora_B(lora_A(dropout(x))) * scaling with nn.Dropout. On
CPU, torch's dropout keeps its float mask for backward and lora_A keeps a float copy of the
dropped-out input: 8 bytes per input element for each adapted projection (7 per Llama layer),
while x itself is shared by q/k/v and by gate/up and already kept. That is why LoRA with the
paper's dropout 0.1 peaked above full fine-tuning on CPU (bench/results/train_speed_float32.md). Here the
dropout is fused into A: the same mask, drawn with the same RNG calls, so the forward pass is
bit-identical and the gradients equal up to float rounding (tests/test_lora_dropout.py).
"""
from __future__ import annotations

import torch


class _DropoutLinear(torch.autograd.Function):
    """linear(dropout(x), weight) that keeps for backward x and a one-byte mask - not, as
    nn.Dropout followed by nn.Linear does, a float mask and a float copy of the dropped-out x.
    The mask is drawn exactly as torch draws it for F.dropout on CPU (same RNG calls, same values),
    so the forward pass is bit-identical to PEFT's and the gradients equal up to float rounding."""

    @staticmethod
    def forward(ctx, x, weight, p: float):
        noise = torch.empty_like(x).bernoulli_(1 - p)
        noise.div_(1 - p)
        ctx.save_for_backward(x, weight, noise != 0)
        ctx.p = p
        # under autocast (bf16 training) linear computes in the autocast dtype; backward, which
        # runs outside autocast, must use the same one
        kind = x.device.type
        ctx.compute_dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
        return torch.nn.functional.linear(x * noise, weight)

    @staticmethod
    def backward(ctx, grad):
        x, weight, mask = ctx.saved_tensors
        noise = mask.to(x.dtype).div_(1 - ctx.p)
        dt = ctx.compute_dtype or x.dtype  # what linear ran in (autocast casts its inputs to it)
        grad = grad.to(dt)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = grad.matmul(weight.to(dt)).to(x.dtype) * noise
        if ctx.needs_input_grad[1]:
            dropped = (x * noise).to(dt)
            grad_w = grad.reshape(-1, grad.shape[-1]).t().mm(dropped.reshape(-1, x.shape[-1])).to(weight.dtype)
        return grad_x, grad_w, None


class _DroppedInputLinear(torch.nn.Linear):
    """A LoRA A matrix that applies its adapter's dropout itself, through _DropoutLinear (same
    parameters and state-dict keys as the nn.Linear it replaces)."""

    dropout_p: float = 0.0

    def forward(self, x):
        if self.training and self.dropout_p > 0:  # also right without grad: the forward draws the same mask
            return _DropoutLinear.apply(x, self.weight, self.dropout_p)
        return super().forward(x)


def memory_efficient_lora_dropout(model) -> int:
    """Fuse each LoRA layer's dropout into its A matrix (see _DropoutLinear); returns how many
    layers changed.

    Why: PEFT computes lora_B(lora_A(dropout(x))) with nn.Dropout, which on CPU keeps a float
    mask and lora_A a float copy of the dropped-out input - 8 bytes per input element for each of
    the 7 adapted projections of a layer, while x itself is shared by q/k/v and by gate/up. On
    SmolLM2-135M (batch 8 x 512 tokens) that is 3.4 GB of the 8.5 GB kept for backward; fused,
    it is one byte per element. Layers with DoRA or another LoRA variant, a bias in A, or no
    dropout are left as they are. The saved adapter is unchanged (same keys, same config)."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return 0
    changed = 0
    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        variants = getattr(module, "lora_variant", {}) or {}
        for name, drop in list(module.lora_dropout.items()):
            a = module.lora_A[name] if name in module.lora_A else None
            if (type(drop) is not torch.nn.Dropout or drop.p <= 0 or type(a) is not torch.nn.Linear
                    or a.bias is not None or name in variants or getattr(module, "use_dora", {}).get(name)):
                continue
            a.__class__ = _DroppedInputLinear
            a.dropout_p = float(drop.p)
            module.lora_dropout[name] = torch.nn.Identity()
            changed += 1
    return changed
