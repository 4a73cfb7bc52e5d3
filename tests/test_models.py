"""s3ft.models: which dtype `auto` stands for, and loading in it."""
from __future__ import annotations

import pytest
import torch

from s3ft.config import S3FTConfig
from s3ft.models import cpu_has_native_bf16, load_model, resolve_dtype


@pytest.mark.parametrize("native", ["1", "0"])
def test_auto_on_cpu_is_float32_except_full_training_on_native_bf16(monkeypatch, native):
    """auto on CPU: float32 for generation, evaluation and LoRA (reproducible answers and scores,
    adapter updates kept); bf16 for full fine-tuning only, and only where the CPU has native bf16."""
    monkeypatch.setenv("S3FT_CPU_BF16", native)
    assert cpu_has_native_bf16() is (native == "1")
    full = "bfloat16" if native == "1" else "float32"
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("auto", "cpu", full_training=True) == full
    assert S3FTConfig(device="cpu").resolved_dtype() == "float32"
    assert S3FTConfig(device="cpu", use_peft=True).resolved_dtype(training=True) == "float32"
    assert S3FTConfig(device="cpu", use_peft=False).resolved_dtype(training=True) == full
    for explicit in ("float32", "bfloat16"):  # an explicit dtype is never second-guessed
        assert resolve_dtype(explicit, "cpu") == resolve_dtype(explicit, "cpu", full_training=True) == explicit


def test_detection_without_override(monkeypatch):
    monkeypatch.delenv("S3FT_CPU_BF16", raising=False)
    native = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert cpu_has_native_bf16() is native


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype must be"):
        resolve_dtype("fp8", "cpu")


@pytest.mark.parametrize("dtype, want", [("auto", torch.float32), ("bfloat16", torch.bfloat16)])
def test_load_model_dtype(monkeypatch, tiny_model_dir, dtype, want):
    monkeypatch.setenv("S3FT_CPU_BF16", "1")  # auto loads float32 on CPU even with native bf16
    model = load_model(str(tiny_model_dir), dtype=dtype, device="cpu")
    assert next(model.parameters()).dtype == want
    assert not model.training


@pytest.mark.parametrize("dtype, merged", [("float32", True), ("bfloat16", False)])
def test_adapter_merged_in_float32_only(tmp_path, tiny_model_dir, dtype, merged):
    """A LoRA update is the size of bf16's rounding step: merged into bf16 weights much of it would
    vanish, so in bf16 the adapter stays a separate float32 branch (as in training)."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=1e-3)  # a small update, as after fine-tuning
    peft.save_pretrained(tmp_path / "adapter")
    model = load_model(str(tmp_path / "adapter"), dtype=dtype, device="cpu")
    assert isinstance(model, PeftModel) is not merged
    lora = {p.dtype for n, p in model.named_parameters() if "lora_" in n}
    assert lora == (set() if merged else {torch.float32})
    ids = torch.randint(0, 1000, (2, 16))
    with torch.no_grad():
        got = model(input_ids=ids).logits
        base_out = load_model(str(tiny_model_dir), dtype=dtype, device="cpu")(input_ids=ids).logits
    assert (got - base_out).abs().max() > 0  # the adapter is applied


def _small_adapter(tmp_path, tiny_model_dir, std: float):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                          LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=std)
    peft.save_pretrained(tmp_path / "adapter")
    return str(tmp_path / "adapter")


def test_adapter_runs_in_float32_under_auto_on_a_bf16_cpu(tmp_path, tiny_model_dir, monkeypatch):
    """auto on a CPU with native bf16 loads base + adapter in float32 (merged): in bf16 the
    adapter's delta is added to an output already rounded to bf16 and rounded again, so a small
    one is dropped - the explicit-bf16 model below shows it."""
    monkeypatch.setenv("S3FT_CPU_BF16", "1")
    adapter = _small_adapter(tmp_path, tiny_model_dir, std=1e-5)  # an update early in training
    ids = torch.randint(0, 1000, (2, 16))
    auto = load_model(adapter, device="cpu")
    assert {p.dtype for p in auto.parameters()} == {torch.float32}
    with torch.no_grad():
        want = load_model(adapter, dtype="float32", device="cpu")(input_ids=ids).logits
        base32 = load_model(str(tiny_model_dir), dtype="float32", device="cpu")(input_ids=ids).logits
        assert torch.equal(auto(input_ids=ids).logits, want)
        delta = (want - base32).norm()
        assert delta > 0
        # why: in bf16 the same adapter's effect is lost in rounding (off by most of its size)
        got16 = load_model(adapter, dtype="bfloat16", device="cpu")(input_ids=ids).logits.float()
        base16 = load_model(str(tiny_model_dir), dtype="bfloat16", device="cpu")(input_ids=ids).logits.float()
        assert ((got16 - base16) - (want - base32)).norm() > 0.5 * delta


def test_model_without_chat_template_or_tokenizer_is_refused_before_any_work(tmp_path, tiny_model_dir, capsys):
    """s3ft prompts the model as a chat: a tokenizer without a template (a base model) or a folder
    without a tokenizer fails in the preflight - here the folders have no weights at all, so
    getting as far as loading the model would fail differently - and a template file fixes it."""
    import json
    import shutil

    from s3ft.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "Capital of France?", "response": "Paris"}) + "\n")
    no_template = tmp_path / "base-model"
    no_template.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / f, no_template / f)
    assert not (no_template / "chat_template.jinja").exists()
    cfg = json.loads((no_template / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(cfg))
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    shutil.copy(tiny_model_dir / "config.json", no_tokenizer / "config.json")

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"task: jsonl\ndata_files: {{train: {data}, test: {data}}}\noutput_dir: {tmp_path / 'run'}\n")

    def run(model):
        return main(["generate", str(recipe), "--model", str(model)])

    assert run(no_template) == 2
    err = capsys.readouterr().err
    assert "its tokenizer has no chat template" in err and "chat_template.jinja" in err
    assert run(no_tokenizer) == 2
    assert "has no tokenizer files (tokenizer.json" in capsys.readouterr().err
    assert not (tmp_path / "run" / "own.jsonl").exists()
    shutil.copy(tiny_model_dir / "chat_template.jinja", no_template / "chat_template.jinja")
    from s3ft.models import check_chat_template

    check_chat_template(str(no_template))  # the fix the message names


def test_model_identity_follows_the_chat_template(tmp_path, tiny_model_dir):
    """Prompts are rendered by the template file: editing it must make the model a new one for
    the stages' fingerprints."""
    import shutil

    from s3ft.models import model_identity

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    before = model_identity(str(folder))
    template = folder / "chat_template.jinja"
    template.write_text(template.read_text() + "{# edited #}\n")
    assert model_identity(str(folder)) != before
