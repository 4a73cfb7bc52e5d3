"""The vllm backend (s3ft.backends.vllm) against a stand-in engine that implements the part of
vLLM's offline API s3ft uses (LLM(...).generate(token prompts, SamplingParams, lora_request=...),
llm_engine.engine_core.shutdown()) by greedy decoding with transformers on the same folder, so the
suite runs without vLLM. What this checks is s3ft's side of the contract: the engine gets exactly
the hf backend's prompt tokens, greedy settings, dtype and stop tokens; a base model and its LoRA
adapters share one engine (adapters through a LoRARequest); at most one engine runs at a time and
none while training or lm-evaluation-harness holds a model; tensor parallelism reaches the engine;
outputs come back in prompt order, chunk by chunk; a missing vLLM fails with an install hint.
bench/vllm_backend.py runs the same paths against a real vLLM (its CPU build on this machine)."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from s3ft.config import S3FTConfig

PROMPTS = [[{"role": "user", "content": c}] for c in ("hi", "What is 2+2?", "Name a colour.", "Tell me a story.", "Why?")]


class _Out:
    """vLLM's RequestOutput as s3ft reads it: finish_reason "length" at max_tokens, else "stop"
    with stop_reason None (an eos / stop token id ended it)."""

    def __init__(self, token_ids, max_tokens, stop_ids):
        ended = any(t in stop_ids for t in token_ids)
        self.outputs = [types.SimpleNamespace(token_ids=token_ids, text="(vLLM's own detokenisation, unused)",
                                              finish_reason="stop" if ended or len(token_ids) < max_tokens else "length",
                                              stop_reason=None)]


def _fake_vllm(monkeypatch, record: dict):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LoRARequest:
        def __init__(self, name, int_id, path):
            self.lora_name, self.lora_int_id, self.lora_path = name, int_id, path

    record.setdefault("events", [])
    record.setdefault("alive", set())

    class LLM:
        def __init__(self, **kw):
            assert not record["alive"], "a second engine started while one runs"
            record["engine"] = kw
            record["calls"] = []
            record["events"].append("start")
            self.model = AutoModelForCausalLM.from_pretrained(kw["model"], dtype=getattr(torch, kw["dtype"]))
            self.tok = AutoTokenizer.from_pretrained(kw["tokenizer"])
            record["alive"].add(id(self))
            me = id(self)

            def shutdown(timeout=None):
                record["alive"].discard(me)
                record["events"].append("shutdown")

            self.llm_engine = types.SimpleNamespace(engine_core=types.SimpleNamespace(shutdown=shutdown))

        def get_tokenizer(self):
            return self.tok

        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            assert id(self) in record["alive"], "generate on a shut-down engine"
            record["calls"].append({"n": len(prompts), "params": params.kw, "lora": lora_request})
            record["events"].append(("generate", lora_request.lora_path if lora_request else None))
            assert params.kw["temperature"] == 0.0  # greedy
            model = self.model
            if lora_request is not None:
                import copy

                from peft import PeftModel

                model = PeftModel.from_pretrained(copy.deepcopy(self.model), lora_request.lora_path)  # base stays as is
            outs = []
            for p in prompts:
                ids = torch.tensor([p["prompt_token_ids"]])
                with torch.inference_mode():
                    new = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                         max_new_tokens=params.kw["max_tokens"], eos_token_id=params.kw["stop_token_ids"],
                                         pad_token_id=self.tok.pad_token_id)[0, ids.shape[1]:].tolist()
                outs.append(_Out(new, params.kw["max_tokens"], params.kw["stop_token_ids"]))
            return outs

    import importlib.machinery

    vllm = types.ModuleType("vllm")
    vllm.__spec__ = importlib.machinery.ModuleSpec("vllm", None)  # libraries probe with find_spec
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    lora = types.ModuleType("vllm.lora")
    req = types.ModuleType("vllm.lora.request")
    req.LoRARequest = LoRARequest
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", req)


@pytest.fixture(autouse=True)
def _no_engine_left():
    """Each test starts and ends with no engine registered (they are stand-ins of one test)."""
    from s3ft.backends.vllm import shutdown_engines

    shutdown_engines()
    yield
    shutdown_engines()


def _adapter(sharp_model_dir, out: Path, seed: int = 0) -> Path:
    """A random (non-zero) LoRA adapter of rank 8 on the sharp model, saved as s3ft saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from s3ft.models import load_tokenizer

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(sharp_model_dir, dtype=torch.float32)
    peft = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(out)
    cfg_path = out / "adapter_config.json"
    c = json.loads(cfg_path.read_text())
    c["base_model_name_or_path"] = str(sharp_model_dir)
    cfg_path.write_text(json.dumps(c))
    load_tokenizer(str(sharp_model_dir)).save_pretrained(out)
    return out


def test_vllm_backend_matches_hf_greedy(monkeypatch, sharp_model_dir):
    from s3ft.backends import make_generator
    from s3ft.backends.hf import HFGenerator

    local = HFGenerator.from_name(str(sharp_model_dir), batch_size=1, dtype="float32", device="cpu")
    want = local.generate(PROMPTS, 6, progress=False)
    want_stop = [s for _, _, s in sorted(local.stream(PROMPTS, 6, progress=False))]
    record: dict = {}
    _fake_vllm(monkeypatch, record)
    cfg = S3FTConfig(model=str(sharp_model_dir), backend="vllm", vllm_tensor_parallel_size=4, vllm_chunk_size=2)
    gen = make_generator(cfg)
    seen = list(gen.stream(PROMPTS, 6, progress=False))
    assert [i for i, _, _ in seen] == list(range(len(PROMPTS)))
    assert len(set(want)) > 1 and all(want), want  # not a vacuous comparison
    assert [t for _, t, _ in seen] == want
    assert [s for _, _, s in seen] == want_stop  # both backends agree
    eng = record["engine"]
    assert eng["tensor_parallel_size"] == 4 and eng["model"] == str(sharp_model_dir) and eng["dtype"] == "float32"
    # ready for the adapters this run trains (LoRA rank 8) on the same engine
    assert eng["enable_lora"] is True and eng["max_lora_rank"] == 8 and "kv_cache_memory_bytes" not in eng
    assert [c["n"] for c in record["calls"]] == [2, 2, 1]  # chunks: rows stream out as each finishes
    assert all(c["lora"] is None and c["params"]["max_tokens"] == 6 for c in record["calls"])


def test_vllm_backend_serves_a_lora_adapter_on_its_base(monkeypatch, sharp_model_dir, tmp_path):
    from s3ft.backends import make_generator
    from s3ft.backends.hf import HFGenerator

    adapter = _adapter(sharp_model_dir, tmp_path / "adapter")
    want = HFGenerator.from_name(str(adapter), batch_size=1, dtype="float32", device="cpu").generate(PROMPTS, 6, progress=False)
    base_want = HFGenerator.from_name(str(sharp_model_dir), batch_size=1, dtype="float32", device="cpu").generate(
        PROMPTS, 6, progress=False)
    assert want != base_want  # the adapter changes answers: a base-model answer cannot pass for it
    record: dict = {}
    _fake_vllm(monkeypatch, record)
    cfg = S3FTConfig(model=str(sharp_model_dir), backend="vllm", vllm_kv_cache_gib=0.5)
    base = make_generator(cfg)
    tuned = make_generator(cfg, str(adapter))
    assert tuned.llm is base.llm and record["events"].count("start") == 1  # one engine for both
    assert tuned.generate(PROMPTS, 6, progress=False) == want
    assert base.generate(PROMPTS, 6, progress=False) == base_want
    eng = record["engine"]
    assert eng["model"] == str(sharp_model_dir) and eng["enable_lora"] is True and eng["max_lora_rank"] == 8
    assert eng["kv_cache_memory_bytes"] == 2**29
    lora = record["calls"][0]["lora"]
    assert lora is not None and Path(lora.lora_path) == adapter and record["calls"][1]["lora"] is None


def test_engine_stops_and_starts_again_and_a_retrained_adapter_gets_a_new_id(monkeypatch, sharp_model_dir, tmp_path):
    import os

    from s3ft.backends import make_generator
    from s3ft.backends.vllm import shutdown_engines

    record: dict = {}
    _fake_vllm(monkeypatch, record)
    adapter = _adapter(sharp_model_dir, tmp_path / "adapter")
    cfg = S3FTConfig(model=str(sharp_model_dir), backend="vllm")
    gen = make_generator(cfg, str(adapter))
    first = gen.generate(PROMPTS[:2], 6, progress=False)
    id1 = record["calls"][-1]["lora"].lora_int_id
    assert shutdown_engines() == 1 and record["alive"] == set()
    assert shutdown_engines() == 0
    assert gen.generate(PROMPTS[:2], 6, progress=False) == first  # started again, same answers
    assert record["events"].count("start") == 2
    # the same folder with new weights (a retrained adapter) must not be served from vLLM's cache
    _adapter(sharp_model_dir, adapter, seed=1)
    w = next(adapter.glob("adapter_model*"))
    os.utime(w, ns=(w.stat().st_atime_ns, w.stat().st_mtime_ns + 10**9))
    gen.generate(PROMPTS[:1], 6, progress=False)
    assert record["calls"][-1]["lora"].lora_int_id != id1
    # another base model: the running engine is stopped before the new one starts
    full = tmp_path / "full"
    import shutil

    shutil.copytree(sharp_model_dir, full)
    make_generator(cfg, str(full)).generate(PROMPTS[:1], 6, progress=False)
    assert record["events"][-3:] == ["shutdown", "start", ("generate", None)]


def test_compare_on_vllm_never_trains_or_scores_beside_a_running_engine(monkeypatch, sharp_model_dir, tmp_path):
    """The whole comparison on the vllm backend: generation, paraphrases, the LLM-free judge,
    training, in-domain and general evaluation, log-prob analysis. vLLM takes most of the device's
    memory, so training, lm-evaluation-harness and log-prob scoring must each find no engine running,
    and fine-tuned adapters must be evaluated through a LoRARequest on the base engine."""
    from s3ft import general, logprob, training
    from s3ft.compare import run_compare

    record: dict = {}
    _fake_vllm(monkeypatch, record)

    def alone(fn, what):
        def wrapped(*a, **kw):
            assert not record["alive"], f"{what} ran beside a running vLLM engine"
            record["events"].append(what)
            return fn(*a, **kw)
        return wrapped

    monkeypatch.setattr(training, "train", alone(training.train, "train"))
    monkeypatch.setattr(general, "evaluate_general", alone(general.evaluate_general, "lm-eval"))
    monkeypatch.setattr(logprob, "sequence_logprobs", alone(logprob.sequence_logprobs, "logprob"))
    cfg = S3FTConfig(model=str(sharp_model_dir), backend="vllm", task="squad", output_dir=str(tmp_path / "cmp"),
                     train_size=4, eval_size=3, max_new_tokens=6, num_train_epochs=1, per_device_train_batch_size=2,
                     max_length=512, learning_rate=1e-3, methods=["base", "sft", "s3ft"], seeds=[1],
                     general_benchmarks=["arc_easy"], general_limit=2)
    res = run_compare(cfg)
    assert set(res["per_seed"]["1"]["in_domain"]) == {"base", "sft", "s3ft"}
    ev = record["events"]
    assert ev.count("train") == 2 and ev.count("lm-eval") == 3 and ev.count("logprob") == 1
    adapters = {p for e in ev if isinstance(e, tuple) and (p := e[1])}
    assert {Path(p).parent.name for p in adapters} == {"sft", "s3ft"}  # evaluated as LoRA requests
def test_vllm_missing_fails_early_with_a_hint(monkeypatch, tmp_path, sharp_model_dir):
    from s3ft.pipeline import preflight
    from s3ft.session import Session

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    cfg = S3FTConfig(model=str(sharp_model_dir), backend="vllm", output_dir=str(tmp_path / "run"), train_size=2, eval_size=2)
    with pytest.raises(RuntimeError, match=r"pip install \"s3ft\[vllm\]\""):
        preflight(Session(cfg))


def test_run_on_vllm_stops_the_engine_before_training(monkeypatch, sharp_model_dir, tmp_path):
    """`s3ft run` without general benchmarks: own answers, paraphrases and the base evaluation on the
    engine, then training - which must not start beside it - then the adapter on a new engine."""
    from s3ft import training
    from s3ft.pipeline import run_all

    record: dict = {}
    _fake_vllm(monkeypatch, record)
    real_train = training.train

    def train(*a, **kw):
        assert not record["alive"], "training ran beside a running vLLM engine"
        record["events"].append("train")
        return real_train(*a, **kw)

    monkeypatch.setattr(training, "train", train)
    cfg = S3FTConfig(model=str(sharp_model_dir), backend="vllm", task="squad", output_dir=str(tmp_path / "run"),
                     train_size=4, eval_size=3, max_new_tokens=6, num_train_epochs=1, per_device_train_batch_size=2,
                     max_length=512, general_benchmarks=[])
    run_all(cfg)
    ev = record["events"]
    i = ev.index("train")
    assert ev[i - 1] == "shutdown" and ev[i + 1] == "start"
    assert all(e[1] is None for e in ev[:i] if isinstance(e, tuple))  # base model only before training
    assert any(isinstance(e, tuple) and e[1] for e in ev[i:])  # the adapter after, as a LoRA request
