"""s3ft.training on the tiny random Llama (real SmolLM2 ChatML tokenizer), on CPU.

Training runs are shared through module-scoped fixtures to keep the file fast: one LoRA run
(reused by the adapter, determinism and resume tests) and one full fine-tuning run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from s3ft.config import S3FTConfig

SYSTEM = [{"role": "system", "content": "Be brief."}]  # short: keeps the sequences (and the tests) small


def _rows(n: int = 8) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "prompt": SYSTEM + [{"role": "user", "content": f"{i}+{i}?"}],
            "completion": f"Answer: {2 * i}",  # a shared first token: learnable even by LoRA on a random model
            "source": ("self", "paraphrase", "gold")[i % 3],
        }
        for i in range(n)
    ]


def _cfg(model_dir: Path, **kw) -> S3FTConfig:
    base = dict(
        model=str(model_dir),
        use_peft=True,
        learning_rate=1e-2,
        num_train_epochs=4,  # 8 rows / batch 4 -> 8 steps
        per_device_train_batch_size=4,
        max_length=256,
        logging_steps=1,
        save_steps=2,
        seed=123,
        device="cpu",
    )
    base.update(kw)
    return S3FTConfig(**base)


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    from s3ft.training import train

    out = tmp_path_factory.mktemp("lora-run")
    return out, train(_rows(), _cfg(tiny_model_dir), out)


@pytest.fixture(scope="module")
def full_run(tiny_model_dir, tmp_path_factory):
    from s3ft.training import train

    out = tmp_path_factory.mktemp("full-run")
    cfg = _cfg(tiny_model_dir, use_peft=False, learning_rate=5e-3, lr_scheduler_type="constant", save_steps=100)
    return out, train(_rows(), cfg, out)


def _losses(out: Path) -> dict[int, float]:
    lines = (out / "train_log.jsonl").read_text().splitlines()
    return {e["step"]: e["loss"] for e in map(json.loads, lines) if "loss" in e}


def test_labels_supervise_completion_and_end_of_turn_only(tiny_model_dir, tmp_path):
    """A collated batch: the supervised tokens decode to exactly the completion + `<|im_end|>\\n`,
    and the rest of each sequence is the prompt exactly as built at inference."""
    from s3ft.models import load_tokenizer
    from s3ft.training import build_trainer

    rows = _rows(3)
    rows.append({"id": "nosys", "prompt": [{"role": "user", "content": "Name a colour."}],
                 "completion": "Blue, like the sky.", "source": "self"})
    trainer, info = build_trainer(rows, _cfg(tiny_model_dir, per_device_train_batch_size=4), tmp_path)
    tok = load_tokenizer(str(tiny_model_dir))
    assert info["truncated_rows"] == 0
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 4
    expected = {}
    for r in rows:
        prompt_ids = tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        expected[r["completion"] + "<|im_end|>\n"] = prompt_ids
    seen = set()
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        ids, labels, mask = ids.tolist(), labels.tolist(), mask.tolist()
        supervised = [t for t, lab in zip(ids, labels) if lab != -100]
        assert [lab for lab in labels if lab != -100] == supervised  # labels are the input ids (the model shifts)
        text = tok.decode(supervised)
        assert text in expected, text
        seen.add(text)
        n_real = sum(mask)
        first_sup = next(i for i, lab in enumerate(labels) if lab != -100)
        # prompt = everything before the first supervised token, token-identical to the inference prompt
        assert ids[:first_sup] == expected[text]
        # supervised tokens are contiguous up to the last real token; padding is never supervised
        assert all(lab != -100 for lab in labels[first_sup:n_real])
        assert all(lab == -100 for lab in labels[n_real:])
    assert seen == set(expected)
    assert "You are a helpful AI assistant" in tok.decode(expected["Blue, like the sky.<|im_end|>\n"])


def test_lora_loss_decreases_and_metrics(lora_run, tiny_model_dir):
    from s3ft.models import load_tokenizer

    out, m = lora_run
    assert m["global_step"] == 8 and m["max_steps"] == 8
    assert m["last_loss"] < m["first_loss"] - 0.3, m
    for key in ("train_loss", "train_runtime", "tokens_per_second", "peak_rss_mb"):
        assert m[key] > 0
    assert m["train_samples"] == 8 and m["truncated_rows"] == 0 and m["dropped_rows"] == 0
    tok = load_tokenizer(str(tiny_model_dir))
    n_sup = sum(len(tok(r["completion"] + "<|im_end|>\n", add_special_tokens=False)["input_ids"]) for r in _rows())
    assert m["supervised_tokens"] == n_sup
    assert json.loads((out / "train_metrics.json").read_text())["last_loss"] == m["last_loss"]
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("train_runtime" in e for e in log) and sum("loss" in e for e in log) == 8


def test_full_finetune_overfits_and_writes_model(full_run):
    out, m = full_run
    assert m["last_loss"] < m["first_loss"] - 2.0, m
    model_dir = Path(m["model_path"])
    assert model_dir == out / "model"
    assert (model_dir / "config.json").exists() and (model_dir / "model.safetensors").exists()
    assert (model_dir / "tokenizer_config.json").exists()
    assert not (model_dir / "adapter_config.json").exists()
    from s3ft.models import load_model

    assert load_model(str(model_dir)) is not None


def test_lora_adapter_loads_offline_and_changes_output(lora_run, tiny_model_dir):
    import torch

    from s3ft.models import load_model, load_tokenizer

    out, m = lora_run
    model_dir = out / "model"
    acfg = json.loads((model_dir / "adapter_config.json").read_text())
    assert acfg["base_model_name_or_path"] == str(Path(tiny_model_dir).resolve())
    assert acfg["r"] == 8 and acfg["lora_alpha"] == 16
    assert (model_dir / "adapter_model.safetensors").exists()
    assert not (model_dir / "model.safetensors").exists()
    tok = load_tokenizer(str(model_dir))
    prompt = _rows()[3]["prompt"]
    enc = tok.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    outs = []
    for path in (str(tiny_model_dir), str(model_dir)):
        model = load_model(path)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=6, do_sample=False)
        outs.append(tok.decode(gen[0, enc["input_ids"].shape[1]:]))
    assert outs[0] != outs[1]
    assert outs[1].startswith("Answer:"), outs  # the trained answer style


def test_same_seed_same_result(lora_run, tiny_model_dir, tmp_path):
    from s3ft.training import train

    out, m = lora_run
    m2 = train(_rows(), _cfg(tiny_model_dir), tmp_path)
    assert m2["global_step"] == m["global_step"]
    assert abs(m2["train_loss"] - m["train_loss"]) < 1e-6
    assert abs(m2["last_loss"] - m["last_loss"]) < 1e-6


def test_over_long_rows_are_counted(tiny_model_dir, tmp_path):
    from s3ft.training import train

    long = " ".join(["word"] * 80)
    rows = _rows(1) + [
        {"id": "long-completion", "prompt": SYSTEM + [{"role": "user", "content": "Say word."}],
         "completion": long, "source": "gold"},  # truncated: the end of its completion is cut
        {"id": "long-prompt", "prompt": SYSTEM + [{"role": "user", "content": long}],
         "completion": "ok", "source": "gold"},  # the prompt alone fills max_length: TRL drops it
    ]
    m = train(rows, _cfg(tiny_model_dir, max_length=48, num_train_epochs=1, save_steps=100), tmp_path)
    assert m["truncated_rows"] == 2 and m["dropped_rows"] == 1
    assert set(m["truncated_ids"]) == {"long-completion", "long-prompt"}
    assert m["train_samples"] == 2 and m["rows"] == 3
    assert m["longest_row_tokens"] > 48 and m["truncated_tokens"] > 0


def test_resume_from_checkpoint_matches_uninterrupted(lora_run, tiny_model_dir, tmp_path):
    from s3ft.training import train

    out, m = lora_run
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"))
    assert [p.name for p in ckpts] == ["checkpoint-6", "checkpoint-8"]  # save_total_limit=2
    # simulate a crash after step 6: no final model, no checkpoint-8, no logs
    crashed = tmp_path / "run"
    (crashed / "checkpoints").mkdir(parents=True)
    shutil.copytree(out / "checkpoints" / "checkpoint-6", crashed / "checkpoints" / "checkpoint-6")
    m2 = train(_rows(), _cfg(tiny_model_dir), crashed)
    assert m2["resumed_from"].endswith("checkpoint-6")
    assert m2["global_step"] == m["global_step"] == 8
    assert (crashed / "model" / "adapter_config.json").exists()
    full, resumed = _losses(out), _losses(crashed)
    assert sorted(resumed) == sorted(full)  # the log history carries over from the checkpoint
    for step in (7, 8):  # the steps trained after resuming
        assert abs(resumed[step] - full[step]) < 1e-4, (step, resumed[step], full[step])
    assert abs(m2["last_loss"] - m["last_loss"]) < 1e-4
    assert abs(m2["train_loss"] - m["train_loss"]) < 1e-4  # whole-run average, rebuilt across the resume

    # a crash after the last checkpoint but before the model was saved: nothing left to train
    done = tmp_path / "done"
    (done / "checkpoints").mkdir(parents=True)
    shutil.copytree(out / "checkpoints" / "checkpoint-8", done / "checkpoints" / "checkpoint-8")
    m3 = train(_rows(), _cfg(tiny_model_dir), done)
    assert m3["global_step"] == 8 and m3["resumed_from"].endswith("checkpoint-8")
    assert abs(m3["train_loss"] - m["train_loss"]) < 1e-4
    assert (done / "model" / "adapter_model.safetensors").exists()


def test_scoring_only_supervised_positions_keeps_loss_and_gradients(tiny_model_dir, tmp_path, monkeypatch):
    """s3ft makes TRL's fused LM head project only the labelled positions on CPU: the loss and
    every LoRA gradient must equal TRL's own all-positions computation on the same batch."""
    import torch
    import trl.trainer.utils as tu

    from s3ft.training import build_trainer, score_only_supervised_positions

    assert score_only_supervised_positions()
    compact = tu._use_triton
    assert compact(torch.device("cpu")) is True and getattr(compact, "_s3ft_compact", False)
    rows = _rows(6)
    rows[0]["completion"] = "A much longer answer, so that rows supervise different numbers of tokens."
    trainer, _ = build_trainer(rows, _cfg(tiny_model_dir, per_device_train_batch_size=6, lora_dropout=0.0), tmp_path)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model = trainer.model
    model.train()

    def loss_and_grads():
        model.zero_grad()
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        return loss.detach().clone(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    l_compact, g_compact = loss_and_grads()
    monkeypatch.setattr(tu, "_use_triton", lambda device: False)  # TRL's own CPU behaviour: every position
    l_all, g_all = loss_and_grads()
    assert torch.isfinite(l_all) and abs(l_compact.item() - l_all.item()) < 1e-5
    assert g_compact.keys() == g_all.keys() and len(g_all) > 0
    for n in g_all:
        assert torch.allclose(g_compact[n], g_all[n], atol=1e-6, rtol=1e-4), n
    assert any(g.abs().sum() > 0 for g in g_all.values())


@pytest.mark.parametrize("use_peft, dtype", [(True, "bfloat16"), (False, "auto")])
def test_bf16_autocasts_with_float32_master_weights(tiny_model_dir, tmp_path, monkeypatch, use_peft, dtype):
    """bf16 on a CPU with native bf16 (what auto gives full fine-tuning; LoRA only when asked): the
    Trainer autocasts to bf16; LoRA loads the frozen base in bf16 and keeps its adapter in
    float32, full fine-tuning keeps float32 weights."""
    import torch

    from s3ft.training import build_trainer

    monkeypatch.setenv("S3FT_CPU_BF16", "1")
    trainer, info = build_trainer(_rows(), _cfg(tiny_model_dir, use_peft=use_peft, dtype=dtype), tmp_path)
    assert trainer.args.bf16 and info["dtype"] == "bfloat16"
    trainable = {p.dtype for p in trainer.model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in trainer.model.parameters() if not p.requires_grad}
    assert trainable == {torch.float32}
    assert frozen == ({torch.bfloat16} if use_peft else set())
    assert info["weights_dtype"] == ("bfloat16" if use_peft else "float32")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert trainer.accelerator.mixed_precision == "bf16" and trainer.accelerator.native_amp
    with trainer.accelerator.autocast():  # what accelerate wraps the model's forward in at train()
        out = trainer.model(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")})
    assert out.logits.dtype == torch.bfloat16  # computed in bf16
    out.loss.backward()  # outside autocast, as the Trainer does: the fused LoRA dropout copes
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trainer.model.parameters() if p.requires_grad)

    if not use_peft:  # an explicit bfloat16 keeps float32 master weights too (pure-bf16 AdamW drops updates)
        _, info = build_trainer(_rows(), _cfg(tiny_model_dir, use_peft=False, dtype="bfloat16"), tmp_path / "explicit")
        assert info["dtype"] == "bfloat16" and info["weights_dtype"] == "float32"

    monkeypatch.setenv("S3FT_CPU_BF16", "0")
    trainer, info = build_trainer(_rows(), _cfg(tiny_model_dir, use_peft=use_peft, dtype=dtype.replace("bfloat16", "auto")),
                                  tmp_path / "fp32")
    assert not trainer.args.bf16 and info["dtype"] == info["weights_dtype"] == "float32"


def test_lora_trains_in_float32_under_auto_on_a_bf16_cpu(tiny_model_dir, tmp_path, monkeypatch):
    """auto on a CPU with native bf16 trains LoRA in float32: bf16 autocast drops adapter deltas
    below half a bf16 step (models.resolve_dtype; bench/lora_bf16.py measures the loss)."""
    import torch

    from s3ft.training import build_trainer

    monkeypatch.setenv("S3FT_CPU_BF16", "1")
    trainer, info = build_trainer(_rows(), _cfg(tiny_model_dir, use_peft=True), tmp_path)
    assert not trainer.args.bf16 and info["dtype"] == info["weights_dtype"] == "float32"
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    # the train stage's fingerprint records what was used
    assert S3FTConfig(device="cpu", use_peft=True).train_knobs()["dtype"] == "float32"
    assert S3FTConfig(device="cpu", use_peft=False).train_knobs()["dtype"] == "bfloat16"


def test_saved_activations_resolution(monkeypatch):
    """auto packs saved activations into bf16 only where training computes in float32 on CPU
    without gradient checkpointing; the fingerprint knob appears only when they are packed."""
    monkeypatch.setenv("S3FT_CPU_BF16", "1")
    lora, full = S3FTConfig(device="cpu", use_peft=True), S3FTConfig(device="cpu", use_peft=False)
    assert lora.resolved_saved_activations() == "bfloat16" and lora.train_knobs()["saved_activations"] == "bfloat16"
    assert full.resolved_saved_activations() is None  # bf16 autocast: saved in bf16 already
    assert "saved_activations" not in full.train_knobs()
    assert S3FTConfig(device="cpu", gradient_checkpointing=True).resolved_saved_activations() is None
    assert S3FTConfig(device="cpu", saved_activations="float32").resolved_saved_activations() is None
    assert "saved_activations" not in S3FTConfig(device="cpu", saved_activations="float32").train_knobs()
    monkeypatch.setenv("S3FT_CPU_BF16", "0")
    assert full.resolved_saved_activations() == "bfloat16"  # float32 full fine-tuning packs too


@pytest.mark.parametrize("gc", [False, True])
def test_saved_activations_in_bf16_keep_the_gradients(tiny_model_dir, tmp_path, gc):
    """One training step with the activations saved in bf16 gives the loss of the float32 step
    exactly (the forward is untouched) and its gradients up to bf16 rounding; many saves are
    packed, shared inputs (q, k, v) once."""
    import torch

    from s3ft.training import SavedActivationsInBf16, build_trainer

    rows = _rows(4)
    grads, losses = {}, {}
    for mode in ("float32", "bfloat16"):
        cfg = _cfg(tiny_model_dir, dtype="float32", saved_activations=mode, lora_dropout=0.0,
                   per_device_train_batch_size=4, gradient_checkpointing=gc)
        trainer, info = build_trainer(rows, cfg, tmp_path / mode)
        assert info["saved_activations"] == ("bfloat16" if mode == "bfloat16" else "float32")
        batch = next(iter(trainer.get_train_dataloader()))
        model = trainer.model
        model.train()
        model.zero_grad()
        trainer.current_gradient_accumulation_steps = 1  # set by the Trainer's loop
        if mode == "bfloat16":
            packs = []
            orig = SavedActivationsInBf16.pack

            def counting(self, t):
                out = orig(self, t)
                packs.append(out[1] and out[0].dtype == torch.bfloat16)
                return out

            SavedActivationsInBf16.pack = counting
            try:
                losses[mode] = trainer.training_step(model, batch)
            finally:
                SavedActivationsInBf16.pack = orig
            assert sum(packs) >= 10
        else:
            losses[mode] = trainer.training_step(model, batch)
        grads[mode] = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert torch.equal(losses["float32"], losses["bfloat16"])
    num = sum((grads["bfloat16"][n] - g).norm() ** 2 for n, g in grads["float32"].items()) ** 0.5
    den = sum(g.norm() ** 2 for g in grads["float32"].values()) ** 0.5
    assert den > 0 and num / den < 0.02, float(num / den)


def test_dft_loss_is_the_probability_weighted_nll(tiny_model_dir, tmp_path):
    """The dft method trains with TRL's loss_type="dft": on a fixed batch the loss equals the hand
    computation - each supervised token's -log p weighted by its detached p, averaged over the
    supervised tokens - and differs from the plain cross-entropy of the same batch."""
    import torch

    from s3ft.methods import METHODS
    from s3ft.training import build_trainer

    assert METHODS["dft"].loss == "dft" and METHODS["sft"].loss == "nll"
    rows = _rows(4)
    cfg = _cfg(tiny_model_dir, per_device_train_batch_size=4, lora_dropout=0.0)
    trainer, _ = build_trainer(rows, cfg, tmp_path / "dft", loss="dft")
    assert trainer.args.loss_type == "dft"
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model = trainer.model
    model.eval()
    with torch.no_grad():
        got = trainer.compute_loss(model, dict(batch)).item()
        logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits.float()
    labels = batch["labels"]
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    target = labels[:, 1:]
    mask = target != -100
    tok_logp = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)[mask]
    dft = (-tok_logp * tok_logp.exp()).sum() / mask.sum()
    nll = (-tok_logp).sum() / mask.sum()
    assert abs(got - dft.item()) < 1e-4 * max(1.0, abs(dft.item()))
    assert abs(dft.item() - nll.item()) > 1e-3  # the weighting changes the loss


# ---------------------------------------------------------------------------------------------
# ASFT and KL-SFT: TRL's loss + weight * KL(base || model) over the supervised tokens
# ---------------------------------------------------------------------------------------------
def _batch(trainer):
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def _perturb_lora(model, seed: int = 7) -> None:
    """Give every LoRA B matrix (zero at initialisation) random values: the adapter now changes the model."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            p.data.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def _hand_loss_parts(policy_logits, base_logits, labels):
    """By hand from full logits: (cross-entropy, DFT, KL(base || policy)), each the mean over the
    supervised tokens (label != -100, shifted by one)."""
    import torch

    logp = torch.log_softmax(policy_logits[:, :-1].float(), dim=-1)
    base_logp = torch.log_softmax(base_logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    mask = target != -100
    tok_logp = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)[mask]
    kl = (base_logp.exp() * (base_logp - logp)).sum(-1)[mask]
    n = mask.sum()
    return (-tok_logp).sum() / n, (-tok_logp * tok_logp.exp()).sum() / n, kl.sum() / n


def test_kl_methods_in_the_table_and_config():
    """asft is DFT's loss + asft_kl_weight * KL, klsft cross-entropy + klsft_beta * KL; both weights
    are recipe keys with defaults, checked >= 0 at load (the error names the field)."""
    from s3ft.config import FIELDS, ConfigError, S3FTConfig, load_config
    from s3ft.methods import METHODS

    assert (METHODS["asft"].loss, METHODS["asft"].kl_weight_key) == ("dft", "asft_kl_weight")
    assert (METHODS["klsft"].loss, METHODS["klsft"].kl_weight_key) == ("nll", "klsft_beta")
    assert all(m.kl_weight_key is None for k, m in METHODS.items() if k not in ("asft", "klsft"))
    assert S3FTConfig().asft_kl_weight == 0.1 and S3FTConfig().klsft_beta == 0.1
    for key in ("asft_kl_weight", "klsft_beta"):
        assert FIELDS[key].metadata["ge"] == 0 and "KL(base || model)" in FIELDS[key].metadata["help"]
        assert getattr(load_config(None, {key: 0}), key) == 0
        with pytest.raises(ConfigError, match=f"{key} must be >= 0, got -0.5"):
            load_config(None, {key: -0.5})


@pytest.mark.parametrize("loss, weight", [("nll", 0.7), ("dft", 0.1)])
def test_kl_loss_is_the_main_loss_plus_weight_times_hand_kl(sharp_model_dir, tmp_path, loss, weight):
    """KL-SFT (nll) and ASFT (dft) with LoRA, on a fixed batch, adapter perturbed: the trainer's loss
    equals cross-entropy (resp. DFT) + weight * KL(base || model), all computed by hand from the
    full logits of the model and of the same model with its adapter disabled. (The sharp model:
    the tiny one's next-token distributions are so flat that KL(base || model) and KL(model ||
    base) agree to 1e-5 and a test could not tell the directions apart.)"""
    import torch

    from s3ft.kl_anchor import AnchoredSFTTrainer
    from s3ft.training import build_trainer

    cfg = _cfg(sharp_model_dir, per_device_train_batch_size=4, lora_dropout=0.0)
    trainer, _ = build_trainer(_rows(4), cfg, tmp_path / loss, loss=loss, kl_weight=weight)
    assert isinstance(trainer, AnchoredSFTTrainer) and trainer.ref_model is None  # LoRA: no second copy
    batch = _batch(trainer)
    model = trainer.model
    _perturb_lora(model)
    model.eval()
    with torch.no_grad():
        got = trainer.compute_loss(model, dict(batch)).item()
        kw = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        policy = model(**kw).logits
        with model.disable_adapter():
            base = model(**kw).logits
    ce, dft, kl = _hand_loss_parts(policy, base, batch["labels"])
    _, _, reverse = _hand_loss_parts(base, policy, batch["labels"])
    main = ce if loss == "nll" else dft
    want = main + weight * kl
    assert kl.item() > 1e-3 and abs(main.item() - want.item()) > 1e-4  # the KL term matters here
    tol = 1e-5 * max(1.0, abs(want.item()))
    assert abs(weight * (kl - reverse).item()) > 10 * tol  # and so does its direction
    assert abs(got - want.item()) < tol, (got, want.item())
    assert abs(trainer._metrics["eval"]["kl"][-1] - kl.item()) < 1e-5 * max(1.0, kl.item())


def test_klsft_with_beta_zero_is_sft(tiny_model_dir, tmp_path):
    """beta = 0: the same loss value and the same gradients as SFT, bit for bit, on a batch where
    the KL is not zero (the adapter perturbed the same way in both) - and the KL is still logged."""
    import torch

    from s3ft.training import build_trainer

    cfg = _cfg(tiny_model_dir, per_device_train_batch_size=4, lora_dropout=0.0)
    results = {}
    for name, kl_weight in (("sft", None), ("klsft", 0.0)):
        trainer, _ = build_trainer(_rows(4), cfg, tmp_path / name, kl_weight=kl_weight)
        model = trainer.model
        _perturb_lora(model)
        model.train()
        model.zero_grad()
        loss = trainer.compute_loss(model, dict(_batch(trainer)))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results[name] = (loss.detach(), grads, trainer)
    (l_sft, g_sft, _), (l_kl, g_kl, kl_trainer) = results["sft"], results["klsft"]
    assert torch.equal(l_sft, l_kl)
    assert g_sft.keys() == g_kl.keys() and len(g_sft) > 0
    assert all(torch.equal(g_sft[n], g_kl[n]) for n in g_sft)
    assert any(g.abs().sum() > 0 for g in g_sft.values())
    assert kl_trainer._metrics["train"]["kl"][-1] > 1e-3


def test_kl_is_zero_for_a_zero_adapter_and_positive_once_it_moves(tiny_model_dir, tmp_path):
    """A fresh LoRA adapter (B = 0) leaves the model equal to its base: the KL term is exactly zero,
    with LoRA dropout on and in training mode; after the adapter is perturbed it is positive, and
    its gradient reaches the adapter."""
    from s3ft.training import build_trainer

    trainer, _ = build_trainer(_rows(4), _cfg(tiny_model_dir, per_device_train_batch_size=4), tmp_path, loss="dft",
                               kl_weight=1.0)
    model = trainer.model
    assert all((p == 0).all() for n, p in model.named_parameters() if "lora_B" in n)
    batch = _batch(trainer)
    model.train()
    trainer.compute_loss(model, dict(batch))
    assert trainer._metrics["train"]["kl"][-1] == 0.0
    _perturb_lora(model)
    model.zero_grad()
    trainer.kl_weight = 1.0
    with_kl = trainer.compute_loss(model, dict(batch))
    kl = trainer._metrics["train"]["kl"][-1]
    assert kl > 1e-3
    with_kl.backward()
    g_with = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    trainer.kl_weight = 0.0
    trainer.compute_loss(model, dict(batch)).backward()
    diff = sum((g_with[n] - p.grad).abs().sum() for n, p in model.named_parameters() if p.requires_grad)
    assert diff > 0  # the KL term adds its own gradient


def test_full_finetuning_anchors_to_a_frozen_reference(sharp_model_dir, tmp_path):
    """Full fine-tuning: the base is a frozen copy (no gradients, eval mode, not the trained
    model); the KL is zero at step 0, and after the model moves the loss is cross-entropy + beta *
    KL computed by hand against the reference's logits, while the reference stays the base."""
    import torch

    from s3ft.training import build_trainer

    cfg = _cfg(sharp_model_dir, use_peft=False, dtype="float32", per_device_train_batch_size=4)
    trainer, _ = build_trainer(_rows(4), cfg, tmp_path, kl_weight=2.0)
    ref, model = trainer.ref_model, trainer.model
    assert ref is not None and ref is not model and not ref.training
    assert not any(p.requires_grad for p in ref.parameters())
    assert {p.data_ptr() for p in ref.parameters()}.isdisjoint(p.data_ptr() for p in model.parameters())
    batch = _batch(trainer)
    model.train()
    trainer.compute_loss(model, dict(batch))
    assert trainer._metrics["train"]["kl"][-1] == 0.0
    before = {n: p.clone() for n, p in ref.named_parameters()}
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    model.eval()
    with torch.no_grad():
        got = trainer.compute_loss(model, dict(batch)).item()
        kw = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        policy, base = model(**kw).logits, ref(**kw).logits
    ce, _, kl = _hand_loss_parts(policy, base, batch["labels"])
    _, _, reverse = _hand_loss_parts(base, policy, batch["labels"])
    tol = 1e-5 * max(1.0, got)
    assert kl.item() > 1e-3 and abs(2.0 * (kl - reverse).item()) > 10 * tol  # the direction matters here
    assert abs(got - (ce + 2.0 * kl).item()) < tol
    assert all(torch.equal(before[n], p) for n, p in ref.named_parameters())


@pytest.mark.parametrize("method, use_peft, dtype", [("asft", True, "float32"), ("klsft", False, "bfloat16")])
def test_kl_methods_train_end_to_end(tiny_model_dir, tmp_path, method, use_peft, dtype):
    """train() with ASFT (LoRA) and KL-SFT (full fine-tuning, bf16 autocast): the KL is logged every
    step, zero at the first (the model is still the base; the reference computes under the same
    autocast as the model), positive once it has moved; the model is saved."""
    from s3ft.config import S3FTConfig
    from s3ft.methods import METHODS
    from s3ft.training import train

    m = METHODS[method]
    cfg = _cfg(tiny_model_dir, use_peft=use_peft, dtype=dtype, per_device_train_batch_size=2, num_train_epochs=2,
               learning_rate=1e-2 if use_peft else 5e-3, save_steps=100)
    weight = getattr(cfg, m.kl_weight_key)
    assert weight == getattr(S3FTConfig(), m.kl_weight_key)  # the default
    metrics = train(_rows(4), cfg, tmp_path, loss=m.loss, kl_weight=weight)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    kls = [e["kl"] for e in log if "kl" in e]
    assert metrics["global_step"] == 4 and len(kls) == 4
    assert kls[0] == 0.0 and kls[-1] > 0
    assert metrics["kl_weight"] == weight and metrics["last_kl"] == kls[-1] and metrics["loss_type"] == m.loss
    assert (tmp_path / "model" / ("adapter_model.safetensors" if use_peft else "model.safetensors")).exists()


def test_train_stage_passes_the_weight_and_fingerprints_it(tmp_path, monkeypatch):
    """The train stage gives training the method's loss and KL weight; the weight is part of the
    stage's fingerprint (a changed klsft_beta re-trains klsft), and klsft is not sft."""
    import s3ft.training
    from s3ft.runs import RunDir
    from s3ft.stages.common import Stages
    from s3ft.stages.train import train as train_stage

    calls = []

    def fake_train(rows, cfg, out_dir, loss="nll", kl_weight=None, **kw):
        calls.append((out_dir.name, loss, kl_weight))
        (out_dir / "model").mkdir(parents=True, exist_ok=True)
        return {"global_step": 1}

    monkeypatch.setattr(s3ft.training, "train", fake_train)
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps(_rows(1)[0]) + "\n")
    run = RunDir(tmp_path / "run")

    def stage(method, **kw):
        cfg = S3FTConfig(**kw)
        train_stage(Stages(run, frozenset(), set()), method, data, cfg, "model-id")

    stage("klsft", klsft_beta=0.3)
    stage("klsft", klsft_beta=0.3)  # up to date
    stage("klsft", klsft_beta=0.0)
    stage("asft")
    stage("sft", klsft_beta=0.0)
    assert calls == [("klsft", "nll", 0.3), ("klsft", "nll", 0.0), ("asft", "dft", 0.1), ("sft", "nll", None)]
