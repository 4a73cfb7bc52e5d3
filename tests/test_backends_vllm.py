"""The vllm backend (s3ft.backends_vllm) without a GPU: vLLM itself cannot run on this CPU
machine, so `vllm` is replaced by a stand-in engine that implements the part of its offline API
s3ft uses (LLM(...).generate(token prompts, SamplingParams, lora_request=...)) by greedy decoding
with transformers on the same folder. What this checks is s3ft's side of the contract: the
engine gets exactly the hf backend's prompt tokens, greedy settings and stop tokens, LoRA adapters
go through a LoRARequest on their base model, tensor parallelism reaches the engine, outputs come
back in prompt order, chunk by chunk; and a missing vLLM fails with an install hint."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from s3ft.config import S3FTConfig

PROMPTS = [[{"role": "user", "content": c}] for c in ("hi", "What is 2+2?", "Name a colour.", "Tell me a story.", "Why?")]


class _Out:
    def __init__(self, token_ids):
        self.outputs = [types.SimpleNamespace(token_ids=token_ids, text="(vLLM's own detokenisation, unused)")]


def _fake_vllm(monkeypatch, record: dict):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LoRARequest:
        def __init__(self, name, int_id, path):
            self.lora_name, self.lora_int_id, self.lora_path = name, int_id, path

    class LLM:
        def __init__(self, **kw):
            record["engine"] = kw
            record["calls"] = []
            self.model = AutoModelForCausalLM.from_pretrained(kw["model"], dtype=torch.float32)
            self.tok = AutoTokenizer.from_pretrained(kw["tokenizer"])

        def get_tokenizer(self):
            return self.tok

        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            record["calls"].append({"n": len(prompts), "params": params.kw, "lora": lora_request})
            assert params.kw["temperature"] == 0.0  # greedy
            model = self.model
            if lora_request is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(self.model, lora_request.lora_path)
            outs = []
            for p in prompts:
                ids = torch.tensor([p["prompt_token_ids"]])
                with torch.inference_mode():
                    new = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                         max_new_tokens=params.kw["max_tokens"], eos_token_id=params.kw["stop_token_ids"],
                                         pad_token_id=self.tok.pad_token_id)[0, ids.shape[1]:].tolist()
                outs.append(_Out(new))
            return outs

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    lora = types.ModuleType("vllm.lora")
    req = types.ModuleType("vllm.lora.request")
    req.LoRARequest = LoRARequest
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", req)


def test_vllm_backend_matches_hf_greedy(monkeypatch, sharp_model_dir):
    from s3ft.generation import HFGenerator, make_generator

    want = HFGenerator.from_name(str(sharp_model_dir), batch_size=1, dtype="float32", device="cpu").generate(
        PROMPTS, 6, progress=False)
    record: dict = {}
    _fake_vllm(monkeypatch, record)
    cfg = S3FTConfig(model=str(sharp_model_dir), backend="vllm", vllm_tensor_parallel_size=4, vllm_chunk_size=2)
    gen = make_generator(cfg)
    seen = list(gen.stream(PROMPTS, 6, progress=False))
    assert [i for i, _ in seen] == list(range(len(PROMPTS)))
    assert len(set(want)) > 1 and all(want), want  # not a vacuous comparison
    assert [t for _, t in seen] == want
    eng = record["engine"]
    assert eng["tensor_parallel_size"] == 4 and eng["model"] == str(sharp_model_dir) and "enable_lora" not in eng
    assert [c["n"] for c in record["calls"]] == [2, 2, 1]  # chunks: rows stream out as each finishes
    assert all(c["lora"] is None and c["params"]["max_tokens"] == 6 for c in record["calls"])


def test_vllm_backend_serves_a_lora_adapter_on_its_base(monkeypatch, sharp_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from s3ft.generation import HFGenerator, make_generator

    base = AutoModelForCausalLM.from_pretrained(sharp_model_dir, dtype=torch.float32)
    peft = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft.save_pretrained(adapter)
    cfg_path = adapter / "adapter_config.json"
    c = json.loads(cfg_path.read_text())
    c["base_model_name_or_path"] = str(sharp_model_dir)
    cfg_path.write_text(json.dumps(c))
    from s3ft.models import load_tokenizer

    load_tokenizer(str(sharp_model_dir)).save_pretrained(adapter)

    want = HFGenerator.from_name(str(adapter), batch_size=1, dtype="float32", device="cpu").generate(PROMPTS, 6, progress=False)
    record: dict = {}
    _fake_vllm(monkeypatch, record)
    gen = make_generator(S3FTConfig(model=str(sharp_model_dir), backend="vllm"), str(adapter))
    got = gen.generate(PROMPTS, 6, progress=False)
    assert got == want
    eng = record["engine"]
    assert eng["model"] == str(sharp_model_dir) and eng["enable_lora"] is True and eng["max_lora_rank"] == 8
    lora = record["calls"][0]["lora"]
    assert lora is not None and Path(lora.lora_path) == adapter


def test_vllm_missing_fails_early_with_a_hint(monkeypatch, tmp_path, sharp_model_dir):
    from s3ft.pipeline import Session, preflight

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    cfg = S3FTConfig(model=str(sharp_model_dir), backend="vllm", output_dir=str(tmp_path / "run"), train_size=2, eval_size=2)
    with pytest.raises(RuntimeError, match=r"pip install \"s3ft\[vllm\]\""):
        preflight(Session(cfg))
