"""How models load (s3ft.models with S3FTConfig.model_options): the recipe's chat_template (a file
or Jinja text) in generation, training and export; revision and trust_remote_code passed to every
from_pretrained; all three in the model's identity; and the first load of a hub model saying what
it downloads, with the Hub's download bars on and transformers' other bars off."""
from __future__ import annotations

import subprocess
import sys

import pytest

from s3ft.config import ConfigError, load_config
from s3ft.models import ModelError, check_chat_template, load_model, load_tokenizer, model_identity

# ChatML without SmolLM2's default system message: a prompt rendered with it is told apart at once
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
USER = [{"role": "user", "content": "Name a colour."}]
RENDERED = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"


# ---------------------------------------------------------------- chat_template
@pytest.mark.parametrize("as_file", [False, True])
def test_chat_template_renders_the_generators_prompts(tiny_model_dir, tmp_path, as_file):
    from s3ft.backends import make_generator
    from s3ft.backends.base import render_prompt

    value = TEMPLATE
    if as_file:
        (tmp_path / "t.jinja").write_text(TEMPLATE)
        value = str(tmp_path / "t.jinja")
    cfg = load_config(None, {"model": str(tiny_model_dir), "device": "cpu", "chat_template": value})
    assert cfg.chat_template_text() == TEMPLATE
    gen = make_generator(cfg)
    assert render_prompt(gen.tokenizer, USER) == RENDERED
    plain = load_tokenizer(str(tiny_model_dir))
    assert render_prompt(plain, USER) != RENDERED  # (the model's own template adds a system message)
    check_chat_template(str(tiny_model_dir), **cfg.model_options())  # renders: preflight passes


def test_trained_model_and_its_export_keep_the_chat_template(tiny_model_dir, tmp_path):
    """Training renders its rows with the recipe's template and saves it with the model; `s3ft
    export` of that run writes it into the exported folder, which plain transformers loads."""
    from transformers import AutoTokenizer

    from s3ft.export import export
    from s3ft.runs import RunDir
    from s3ft.trained import find_trained
    from s3ft.training import build_trainer, train

    cfg = load_config(None, {"model": str(tiny_model_dir), "device": "cpu", "chat_template": TEMPLATE, "max_length": 128,
                             "per_device_train_batch_size": 2, "output_dir": str(tmp_path / "run"), "method": "sft"})
    rows = [{"id": f"r{i}", "prompt": USER, "completion": f"Blue {i}.", "source": "gold"} for i in range(2)]
    trainer, _ = build_trainer(rows, cfg, tmp_path / "peek")
    tok = trainer.processing_class
    assert tok.decode(trainer.train_dataset["input_ids"][0]) == RENDERED + "Blue 0.<|im_end|>\n"
    run = RunDir(cfg.output_dir)
    run.path.mkdir()
    train(rows, cfg, run / "sft")
    run.update_manifest(config=cfg.to_dict())
    run.set_stage("train.sft", status="done")
    assert AutoTokenizer.from_pretrained(run / "sft" / "model").chat_template == TEMPLATE
    out = export(find_trained(run.path), tmp_path / "exported")
    assert AutoTokenizer.from_pretrained(out).chat_template == TEMPLATE


def test_bad_chat_templates_fail_at_load_or_in_preflight(tiny_model_dir, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: x/y\nchat_template: templates/missing.jinja\n")
    with pytest.raises(ConfigError, match=r"r.yaml line 2: chat_template 'templates/missing.jinja': .*not found"):
        load_config(recipe)
    with pytest.raises(ModelError, match="chat_template: it does not render"):
        check_chat_template(str(tiny_model_dir), chat_template="{% for m in messages %}{{ m.content }")


# ---------------------------------------------------------------- revision, trust_remote_code, identity
def test_identity_changes_with_each_option_and_not_without_them(tiny_model_dir):
    name = str(tiny_model_dir)
    plain = model_identity(name)
    assert model_identity(name, None, False, None) == plain  # fingerprints of earlier runs stay valid
    changed = {model_identity(name, revision="v2"), model_identity(name, trust_remote_code=True),
               model_identity(name, chat_template=TEMPLATE), model_identity(name, chat_template=TEMPLATE + " ")}
    assert plain not in changed and len(changed) == 4
    assert model_identity("org/hub-model") == "org/hub-model" != model_identity("org/hub-model", revision="v2")
    cfg = load_config(None, {"model": name, "chat_template": TEMPLATE, "revision": "v2", "judge": "llm",
                             "judge_model": "org/judge"})
    from s3ft.session import Session

    assert Session(cfg).model_id() == model_identity(name, "v2", False, TEMPLATE)
    assert cfg.model_options("org/judge") == {"revision": None, "trust_remote_code": False, "chat_template": None}
    assert cfg.model_options("runs/x/sft/model") == {"revision": "v2", "trust_remote_code": False, "chat_template": None}


def test_revision_and_trust_remote_code_reach_from_pretrained(monkeypatch, tiny_model_dir):
    """A hub name gets revision and trust_remote_code; a local folder trust_remote_code only."""
    import transformers

    calls = []

    def record(kind):
        def from_pretrained(path, *args, **kw):
            calls.append((kind, str(path), {k: kw[k] for k in ("revision", "trust_remote_code") if k in kw}))
            raise OSError("recorded")
        return from_pretrained

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", record("tokenizer"))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", record("model"))
    for fn in (lambda n, **kw: load_tokenizer(n, **kw), lambda n, **kw: load_model(n, device="cpu", **kw)):
        for name in ("test-org/recorded-model", str(tiny_model_dir)):
            with pytest.raises(OSError, match="recorded"):
                fn(name, revision="abc123", trust_remote_code=True)
    assert calls == [
        ("tokenizer", "test-org/recorded-model", {"revision": "abc123", "trust_remote_code": True}),
        ("tokenizer", str(tiny_model_dir), {"trust_remote_code": True}),
        ("model", "test-org/recorded-model", {"revision": "abc123", "trust_remote_code": True}),
        ("model", str(tiny_model_dir), {"trust_remote_code": True}),
    ]


# ---------------------------------------------------------------- hub downloads
def test_first_load_of_a_hub_model_says_what_it_downloads(monkeypatch, capsys, tmp_path):
    """The message comes before the call that downloads (mocked here), once per process; a model
    already in the Hugging Face cache, or a local folder, gets none."""
    import transformers
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    cached = tmp_path / "hub" / "models--test-org--cached-model"
    (cached / "refs").mkdir(parents=True)
    (cached / "refs" / "main").write_text("0" * 40)
    (cached / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (cached / "snapshots" / ("0" * 40) / "config.json").write_text("{}")
    printed_before = []

    def from_pretrained(path, *args, **kw):
        printed_before.append((path, capsys.readouterr().out))
        return object()

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    with pytest.raises(AttributeError):  # (the mocked model is no model)
        load_model("test-org/fresh-model", device="cpu", revision="v1")
    with pytest.raises(AttributeError):  # (a mocked tokenizer has no pad token)
        load_tokenizer("test-org/fresh-model", revision="v1")
    with pytest.raises(AttributeError):
        load_tokenizer("test-org/cached-model")
    (first, said), (again, said_again), (cached_name, said_cached) = printed_before
    assert first == "test-org/fresh-model" and (
        f"downloading test-org/fresh-model (revision v1) from the Hugging Face Hub into {tmp_path / 'hub'}" in said)
    assert again == "test-org/fresh-model" and "downloading" not in said_again
    assert cached_name == "test-org/cached-model" and "downloading" not in said_cached


def test_offline_hub_model_is_named_with_the_reason(monkeypatch, capsys):
    import transformers
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def from_pretrained(path, *args, **kw):
        raise OSError("offline")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    with pytest.raises(OSError):
        load_tokenizer("test-org/offline-model")
    assert "test-org/offline-model is not in the Hugging Face cache" in capsys.readouterr().out


def test_cli_keeps_download_bars_and_drops_the_others():
    """After the CLI's setup: a bar of the Hub's download group draws, one of any other group
    (and transformers' "Loading weights") does not. A fresh process: the setting is global."""
    code = """
import io, os
os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
from s3ft.cli import main
main(["fields"])
import transformers.utils.logging as tl
from huggingface_hub.utils import tqdm
out = {}
for name in ("huggingface_hub.http_get", "huggingface_hub.xet_get", None):
    buf = io.StringIO()
    for _ in tqdm(range(3), name=name, file=buf, disable=False):
        pass
    out[name] = bool(buf.getvalue())
print("RESULT", out, tl.is_progress_bar_enabled())
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT"))
    assert line == "RESULT {'huggingface_hub.http_get': True, 'huggingface_hub.xet_get': True, None: False} False"


def test_a_gguf_is_identified_by_its_contents_not_its_conversion(tmp_path, monkeypatch):
    """The stages' fingerprints do not change when a GGUF file is converted again (a new cache, a
    new machine) or copied: only when its bytes change."""
    import os
    import shutil

    from s3ft import models

    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    ident = model_identity(str(f))
    assert ident.startswith("gguf:")
    os.utime(f, (1, 1))
    copy = tmp_path / "other" / "m.gguf"
    copy.parent.mkdir()
    shutil.copy(f, copy)
    assert model_identity(str(f)) == model_identity(str(copy)) == ident
    f.write_bytes(b"GGUF" + bytes(range(256)) * 63)
    assert model_identity(str(f)) != ident
    assert model_identity(str(f), revision="v2") != model_identity(str(f))
    monkeypatch.setattr(models, "embedded_gguf_path", lambda: copy)
    assert model_identity("smollm2-135m-instruct") == ident
    with pytest.raises(ModelError, match="does not exist"):
        model_identity(str(tmp_path / "missing.gguf"))
