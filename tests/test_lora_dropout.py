"""s3ft.lora_dropout: fusing LoRA's dropout into A gives PEFT's numbers with less kept for backward."""
from __future__ import annotations

import copy

import pytest
import torch

from s3ft.lora_dropout import _DroppedInputLinear, memory_efficient_lora_dropout


def _lora(tiny_model_dir, dropout=0.1, **kw):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM", **kw)
    model = get_peft_model(model, cfg)
    for name, p in model.named_parameters():  # B starts at zero; make the adapters matter
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    return model.train()


def _loss_and_grads(model, ids, autocast: torch.dtype | None = None):
    torch.manual_seed(123)
    with torch.autocast("cpu", dtype=autocast or torch.float32, enabled=autocast is not None):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()  # outside autocast, as the Trainer calls it
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _saved_bytes(model, ids) -> int:
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    torch.manual_seed(0)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return sum(seen.values())


def test_same_loss_and_gradients_as_peft(tiny_model_dir):
    ref = _lora(tiny_model_dir)
    fused = copy.deepcopy(ref)
    n = memory_efficient_lora_dropout(fused)
    assert n == 2 * 7  # every adapted projection of both layers
    assert sum(isinstance(m, _DroppedInputLinear) for m in fused.modules()) == n
    ids = torch.randint(0, 1000, (3, 40))
    loss_ref, g_ref = _loss_and_grads(ref, ids)
    loss_fused, g_fused = _loss_and_grads(fused, ids)
    assert torch.equal(loss_ref, loss_fused)  # the same masks: bit-identical forward
    assert g_ref.keys() == g_fused.keys() and len(g_ref) == 2 * n
    for k in g_ref:
        torch.testing.assert_close(g_fused[k], g_ref[k], rtol=1e-5, atol=1e-6, msg=k)
    # dropout is really applied: another RNG state gives another loss
    torch.manual_seed(7)
    assert not torch.equal(fused(input_ids=ids, labels=ids).loss.detach(), loss_fused)
    # evaluation: no dropout, same outputs as PEFT's
    ref.eval(), fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(input_ids=ids).logits, ref(input_ids=ids).logits, rtol=0, atol=0)


def test_keeps_less_for_backward(tiny_model_dir):
    ids = torch.randint(0, 1000, (4, 64))
    peft_bytes = _saved_bytes(_lora(tiny_model_dir), ids)
    no_dropout = _saved_bytes(_lora(tiny_model_dir, dropout=0.0), ids)
    fused = _lora(tiny_model_dir)
    memory_efficient_lora_dropout(fused)
    fused_bytes = _saved_bytes(fused, ids)
    # per adapted projection: a one-byte mask instead of a float mask and a float input copy
    assert fused_bytes < peft_bytes
    assert fused_bytes - no_dropout < 0.2 * (peft_bytes - no_dropout)


def test_saved_adapter_is_unchanged(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ref = _lora(tiny_model_dir)
    fused = copy.deepcopy(ref)
    memory_efficient_lora_dropout(fused)
    assert ref.state_dict().keys() == fused.state_dict().keys()
    fused.save_pretrained(tmp_path / "a")
    back = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "a").eval()
    assert back.peft_config["default"].lora_dropout == 0.1
    ids = torch.randint(0, 1000, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=ids).logits, ref.eval()(input_ids=ids).logits)


@pytest.mark.parametrize("kw", [{"use_dora": True}, {"dropout": 0.0}])
def test_left_alone_where_it_does_not_apply(tiny_model_dir, kw):
    model = _lora(tiny_model_dir, **kw)
    assert memory_efficient_lora_dropout(model) == 0


def test_training_uses_it(tiny_model_dir, tmp_path):
    from s3ft.config import S3FTConfig
    from s3ft.training import build_trainer

    rows = [{"id": f"r{i}", "prompt": [{"role": "user", "content": f"{i}+{i}?"}], "completion": f"{2 * i}",
             "source": "gold"} for i in range(4)]
    cfg = S3FTConfig(model=str(tiny_model_dir), use_peft=True, lora_dropout=0.1, output_dir=str(tmp_path))
    trainer, _ = build_trainer(rows, cfg, tmp_path / "t")
    assert sum(isinstance(m, _DroppedInputLinear) for m in trainer.model.modules()) == 2 * 7


def test_same_gradients_as_peft_under_bf16_autocast(tiny_model_dir):
    """bf16 training (dtype auto on a CPU with native bf16, or on a GPU) autocasts: backward,
    which runs outside autocast, must compute in the dtype the forward's linear ran in."""
    ref = _lora(tiny_model_dir)
    fused = copy.deepcopy(ref)
    memory_efficient_lora_dropout(fused)
    ids = torch.randint(0, 1000, (3, 40))
    loss_ref, g_ref = _loss_and_grads(ref, ids, autocast=torch.bfloat16)
    loss_fused, g_fused = _loss_and_grads(fused, ids, autocast=torch.bfloat16)
    assert torch.equal(loss_ref, loss_fused)
    for k in g_ref:
        assert g_fused[k].dtype == torch.float32  # the adapter's own dtype
        torch.testing.assert_close(g_fused[k], g_ref[k], rtol=2e-2, atol=1e-3, msg=k)
