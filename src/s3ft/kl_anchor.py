"""The KL term of ASFT and KL-SFT: TRL's SFT loss plus a weight times the KL divergence from the
frozen base model to the model being trained, over the supervised (completion) tokens.

    loss = main + w * sum_t KL(p_base(. | x_<t) || p_model(. | x_<t)) / N

`main` is TRL's own loss, unchanged (`SFTConfig.loss_type`: `dft` for ASFT, `nll` for KL-SFT);
t runs over the supervised tokens and N is the count TRL divides its loss by (the batch's
supervised tokens, or `num_items_in_batch` under gradient accumulation), so the KL is averaged
per token exactly like the main loss. The direction, KL(base || model) = sum_v p_base(v)
(log p_base(v) - log p_model(v)), is the one of the ASFT authors' released code
(github.com/zhuchichi56/ASFT, train.py / train_v2.py: `F.kl_div(log_softmax(model_logits),
softmax(base_logits))` per token, averaged over the response tokens with the token loss; weight
`kl_weight`, 0.1 by default there). Zhu et al., "Anchored Supervised Fine-Tuning", arXiv
2509.23753.

Where the base model's distribution comes from: with LoRA, the same model with its adapter
disabled (`PeftModel.disable_adapter()`, no second copy in memory); with full fine-tuning, a
frozen copy of the base made before training, in the trained weights' dtype (float32: 4 bytes a
parameter more), so that under the same autocast it computes exactly what the model computed
before its first update. Both run under `torch.no_grad()`, in eval mode, under the trainer's
autocast.

The model's own hidden states are not recomputed: a forward hook on the backbone keeps the last
hidden state of TRL's fused forward, and TRL's `ChunkedDivergenceFunction` (the kernel of its
DistillationTrainer; beta 0.0 = forward KL(teacher || student)) projects both models' hidden
states through their LM heads in tiles, only at the supervised positions, without building
either model's full logits. The mean KL per supervised token is logged as `kl`.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from trl import SFTTrainer
from trl.kernels.chunked_divergence import ChunkedDivergenceFunction

IGNORE = -100


def causal_lm(model):
    """The transformers causal LM inside `model` (a PeftModel's base model, or the model)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def logit_transform(model) -> tuple[float, float | None]:
    """(scale, softcap) the model applies to its LM head's output, read from its config as TRL's
    fused head reads them (`logit_scale`, `output_multiplier`, `lm_head_multiplier`,
    `logits_scaling`; `final_logit_softcapping`). (1.0, None) for Llama-like models."""
    config = causal_lm(model).config.get_text_config()
    scale = getattr(config, "logit_scale", None)
    if scale is None:
        scale = getattr(config, "output_multiplier", None)
    if scale is None:
        scale = getattr(config, "lm_head_multiplier", None)
    if scale is None and getattr(config, "logits_scaling", None) is not None:
        scale = config.logits_scaling if config.model_type == "hyperclovax" else 1 / config.logits_scaling
    return (1.0 if scale is None else scale), getattr(config, "final_logit_softcapping", None)


def per_token_kl(policy_hidden, policy_model, base_hidden, base_model):
    """KL(base || policy) of each row's next-token distributions, from the two models' last
    hidden states ([N, H] each) and their LM heads; the gradient flows to the policy side."""
    p_head, b_head = causal_lm(policy_model).get_output_embeddings(), causal_lm(base_model).get_output_embeddings()
    p_scale, p_cap = logit_transform(policy_model)
    b_scale, b_cap = logit_transform(base_model)
    kl, _entropy = ChunkedDivergenceFunction.apply(
        policy_hidden.to(p_head.weight.device), p_head.weight, p_head.bias,
        base_hidden.to(b_head.weight.device), b_head.weight, b_head.bias,
        0.0, 1.0, p_scale, p_cap, b_scale, b_cap)
    return kl


@contextmanager
def evaluating(model):
    """`model` in eval mode inside the block (no dropout), its previous mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class AnchoredSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer whose loss gains `kl_weight` * the mean KL(base || model) per supervised
    token (module docstring). `ref_model`: the frozen base for full fine-tuning; None with LoRA
    (the adapter is disabled instead)."""

    def __init__(self, *args, kl_weight: float, ref_model=None, **kwargs):
        super().__init__(*args, **kwargs)
        if kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        self.kl_weight = float(kl_weight)
        peft = hasattr(self.model, "disable_adapter")
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            raise ValueError("the KL-to-base losses (asft, klsft) do not support DeepSpeed or FSDP training: "
                             "use LoRA or full fine-tuning with DDP")
        if peft:
            from peft.tuners.tuners_utils import BaseTunerLayer

            if isinstance(causal_lm(self.model).get_output_embeddings(), BaseTunerLayer):
                raise ValueError("the KL-to-base losses (asft, klsft) read the LM head's weight directly: an adapter "
                                 "on lm_head is not supported; leave lm_head out of lora_target_modules")
            if ref_model is not None:
                raise ValueError("with LoRA the base model is the model with its adapter disabled: no ref_model")
        elif ref_model is None:
            raise ValueError("full fine-tuning with a KL-to-base loss needs ref_model, a frozen copy of the base")
        if ref_model is not None:
            ref_model.requires_grad_(False)
            ref_model.eval()
            ref_model.to(self.args.device)
        self.ref_model = ref_model
        self.capturing = False
        self.policy_hidden = None
        causal_lm(self.model).base_model.register_forward_hook(self.keep_hidden)

    def keep_hidden(self, module, args, output) -> None:
        if self.capturing:
            self.policy_hidden = output[0]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.capturing, self.policy_hidden = True, None
        try:
            result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                          num_items_in_batch=num_items_in_batch)
        finally:
            self.capturing = False
        hidden, self.policy_hidden = self.policy_hidden, None
        if hidden is None:
            raise RuntimeError("the KL term found no hidden states of the model's forward pass")
        loss = result[0] if return_outputs else result
        loss = loss + self.kl_weight * self.kl_to_base(model, inputs, hidden, num_items_in_batch)
        return (loss, result[1]) if return_outputs else loss

    def base_hidden_states(self, model, inputs):
        """The frozen base model's last hidden states for the batch (no gradient, eval mode)."""
        kwargs = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels")} | {"use_cache": False}
        unwrapped = self.accelerator.unwrap_model(model)
        base = self.ref_model if self.ref_model is not None else unwrapped
        adapter_off = unwrapped.disable_adapter() if self.ref_model is None else nullcontext()
        with torch.no_grad(), adapter_off, evaluating(base), self.accelerator.autocast():
            return causal_lm(base).base_model(**kwargs)[0]

    def kl_to_base(self, model, inputs, hidden, num_items_in_batch=None):
        """Sum of KL(base || model) over the supervised positions of the batch, divided like TRL's
        loss; logs the mean per supervised token as `kl`."""
        mask = inputs["labels"][:, 1:] != IGNORE
        unwrapped = self.accelerator.unwrap_model(model)
        base_hidden = self.base_hidden_states(model, inputs)
        mask = mask.to(hidden.device)
        with self.accelerator.autocast():
            per_token = per_token_kl(hidden[:, :-1][mask], unwrapped, base_hidden[:, :-1][mask.to(base_hidden.device)],
                                     self.ref_model if self.ref_model is not None else unwrapped)
        total = per_token.sum()
        count = mask.sum() if num_items_in_batch is None else num_items_in_batch
        kl = total / torch.as_tensor(count, device=total.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            kl = kl * (self.accelerator.num_processes // self.get_tp_size())  # as TRL scales its loss
        mode = "train" if self.model.training else "eval"
        n = self.accelerator.gather_for_metrics(mask.sum()).sum()
        s = self.accelerator.gather_for_metrics(total.detach()).sum()
        self._metrics[mode]["kl"].append((s / n).item() if n > 0 else 0.0)
        return kl
