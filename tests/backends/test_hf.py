"""s3ft.backends.hf and s3ft.backends.hf_decode: the hf backend's own greedy loop and the automatic batch size."""
from __future__ import annotations

import torch

PROMPTS = [[{"role": "user", "content": c}] for c in
           ("hi", "What is 2+2?", "Name a colour, please, and say why you like it.", "Tell me a story.", "Why?",
            "Translate 'hello' to French and to German, then to Spanish.")]


def _load(model_dir):
    from s3ft.models import load_model, load_tokenizer

    return load_model(str(model_dir), dtype="float32", device="cpu"), load_tokenizer(str(model_dir))


def _alone(model, tok, x: list[int], stop: list[int], n: int) -> list[int]:
    """The new tokens model.generate gives greedily for prompt ids `x` on their own."""
    t = torch.tensor([x])
    with torch.inference_mode():
        out = model.generate(t, attention_mask=torch.ones_like(t), max_new_tokens=n, do_sample=False, temperature=None,
                             top_p=None, top_k=None, eos_token_id=stop, pad_token_id=tok.pad_token_id)
    return out[0, len(x):].tolist()


def test_greedy_decode_drops_finished_rows_and_matches_generate(sharp_model_dir):
    """A left-padded batch decoded by greedy_decode gives, row by row, what model.generate gives
    for that prompt alone - including rows that stop early (and leave the batch) at different steps."""
    from s3ft.backends.base import render_prompt
    from s3ft.backends.hf import left_pad
    from s3ft.backends.hf_decode import greedy_decode

    model, tok = _load(sharp_model_dir)
    ids = [tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in PROMPTS]
    free = [_alone(model, tok, x, [tok.eos_token_id], 10) for x in ids]
    # stop tokens that end some answers early, at different steps: the 3rd token of answer 0, the 6th of answer 3
    stop = sorted({tok.eos_token_id, free[0][2], free[3][5]})
    want = [_alone(model, tok, x, stop, 10) for x in ids]
    lengths = {len(w) for w in want}
    assert len(lengths) > 1 and min(lengths) < 10, want  # rows really leave the batch at different times

    input_ids, mask = left_pad(ids, tok.pad_token_id)
    with torch.inference_mode():
        got = greedy_decode(model, input_ids, mask, 10, stop)
    assert got == want


def test_hf_generator_auto_batch_equals_one_by_one(sharp_model_dir):
    from s3ft.backends.hf import HFGenerator

    model, tok = _load(sharp_model_dir)
    auto = HFGenerator(model, tok, batch_size=0).generate(PROMPTS, 8, progress=False)
    one = HFGenerator(model, tok, batch_size=1).generate(PROMPTS, 8, progress=False)
    assert len(set(one)) > 1 and auto == one


def test_auto_batch_size_follows_memory(sharp_model_dir, monkeypatch):
    import os

    from s3ft.backends.hf import auto_batch_size

    model, _ = _load(sharp_model_dir)
    assert auto_batch_size(model, 100, 32) == 64  # a tiny model: the CPU cap
    page = os.sysconf("SC_PAGE_SIZE")
    real = os.sysconf
    # 64 MiB of free RAM: the budget (a quarter) decides, and longer rows get fewer per batch
    monkeypatch.setattr(os, "sysconf", lambda k: (64 << 20) // page if k == "SC_AVPHYS_PAGES" else real(k))
    short, long = auto_batch_size(model, 50, 16), auto_batch_size(model, 2000, 512)
    assert 1 <= long < short <= 64


def test_shared_prefix_len():
    from s3ft.backends.hf_decode import shared_prefix_len

    assert shared_prefix_len([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert shared_prefix_len([[1, 2, 3], [1, 2, 3, 4]]) == 2  # every prompt keeps a token to prefill
    assert shared_prefix_len([[7, 8]]) == 1 and shared_prefix_len([[5], [6]]) == 0 and shared_prefix_len([]) == 0


def test_shared_prefix_is_prefilled_once_with_the_same_answers(sharp_model_dir, monkeypatch):
    """Prompts that start alike (the chat template's system turn, a task's instruction) share
    one prefill of that prefix; every prompt's answer and first-token logits are those of a
    prefill from scratch, and what model.generate gives for the prompt alone."""
    from s3ft.backends import hf_decode
    from s3ft.backends.base import render_prompt
    from s3ft.backends.hf import HFGenerator, left_pad
    from s3ft.backends.hf_decode import shared_prefix_len

    model, tok = _load(sharp_model_dir)
    prompts = [[{"role": "system", "content": "Answer the question using the context. Reply briefly."},
                {"role": "user", "content": p[0]["content"]}] for p in PROMPTS]
    ids = [tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in prompts]
    n = shared_prefix_len(ids)
    assert n >= hf_decode.MIN_SHARED_PREFIX

    calls = []
    real_prefill = hf_decode.prefill_prefix
    monkeypatch.setattr(hf_decode, "prefill_prefix", lambda *a: calls.append(a) or real_prefill(*a))
    shared = HFGenerator(model, tok, batch_size=4).generate(prompts, 8, progress=False)
    assert len(calls) == 1 and len(calls[0][1]) == n  # one prefill of the prefix for two batches
    monkeypatch.setattr(hf_decode, "MIN_SHARED_PREFIX", 10**9)
    alone = HFGenerator(model, tok, batch_size=4).generate(prompts, 8, progress=False)
    assert len(set(alone)) > 1 and shared == alone
    want = [tok.decode(_alone(model, tok, x, [tok.eos_token_id], 8), skip_special_tokens=True).strip() for x in ids]
    assert shared == want

    # first-token logits: prefix cache + the rest vs the whole prompt
    cfg = hf_decode.text_config(model)
    input_ids, mask = left_pad(ids, tok.pad_token_id)
    with torch.inference_mode():
        prefix = real_prefill(model, ids[0][:n], "cpu")
        before = [(k.clone(), v.clone()) for k, v in prefix]
        c1, l1 = hf_decode.prefill_each_prompt(model, input_ids, mask, cfg, prefix)
        greedy_rows = hf_decode.greedy_decode(model, input_ids, mask, 8, [tok.eos_token_id], prefill_each=True, prefix=prefix)
        c0, l0 = hf_decode.prefill_each_prompt(model, input_ids, mask, cfg)
    torch.testing.assert_close(l1, l0, atol=1e-5, rtol=1e-5)
    for a, b in zip(c1.layers, c0.layers):
        torch.testing.assert_close(a.keys, b.keys, atol=1e-5, rtol=1e-5)
    assert len(greedy_rows) == len(ids)
    for (k, v), (k0, v0) in zip(prefix, before):  # shared by every prompt, never written to
        assert k.shape[-2] == n and torch.equal(k, k0) and torch.equal(v, v0)


def test_gpu_share_from_the_environment(monkeypatch):
    """S3FT_GPU_SHARE scales the GPU memory budget of auto_batch_size (compare_parallel.py sets
    1/processes); a bad value is refused with the variable named."""
    import importlib.util
    from pathlib import Path

    import pytest

    from s3ft.backends.hf import gpu_share

    monkeypatch.delenv("S3FT_GPU_SHARE", raising=False)
    assert gpu_share() == 1.0
    monkeypatch.setenv("S3FT_GPU_SHARE", "0.3333")
    assert gpu_share() == 0.3333
    for bad in ("0", "1.5", "half"):
        monkeypatch.setenv("S3FT_GPU_SHARE", bad)
        with pytest.raises(ValueError, match="S3FT_GPU_SHARE"):
            gpu_share()
    # compare_parallel.py gives each seed process its share
    path = Path(__file__).resolve().parents[2] / "scripts" / "compare_parallel.py"
    spec = importlib.util.spec_from_file_location("compare_parallel", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    seen = []
    monkeypatch.setattr(mod.subprocess, "Popen", lambda cmd, **kw: seen.append(kw.get("env")))
    mod._compare("r.yaml", [], ["--seeds", "[2]"], None, share=1 / 3)
    mod._compare("r.yaml", [], [], None)
    assert seen[0]["S3FT_GPU_SHARE"] == "0.3333" and seen[1] is None
