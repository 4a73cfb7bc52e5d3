import math

import torch

from s3ft.backends.base import render_prompt
from s3ft.evaluation import accuracy, paired
from s3ft.logprob import sequence_logprobs
from s3ft.models import load_model, load_tokenizer


def test_sequence_logprobs_match_unbatched_manual(tiny_model_dir):
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    prompts = [[{"role": "user", "content": "What is 2+2?"}], [{"role": "user", "content": "Name a colour, any colour you like."}]]
    comps = ["4", "Blue is a colour."]
    got = sequence_logprobs(model, tok, prompts, comps, batch_size=2, progress=False)
    for p, c, g in zip(prompts, comps, got):
        pid = tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"]
        cid = tok(c, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([pid + cid])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        want = sum(lp[len(pid) - 1 + j, t].item() for j, t in enumerate(cid))
        assert g["tokens"] == len(cid)
        assert math.isclose(g["total"], want, abs_tol=1e-3)
        assert math.isclose(g["per_token"], want / len(cid), abs_tol=1e-3)
        assert g["total"] < 0


def test_accuracy_and_bootstrap():
    rows = [{"correct": True}] * 30 + [{"correct": False}] * 60 + [{"correct": None}] * 10
    a = accuracy(rows)
    assert (a["k"], a["n"], a["accuracy"], a["cannot_judge"]) == (30, 100, 30.0, 10)
    lo, hi = a["ci95"]
    assert 20 < lo < 30 < hi < 40


def test_paired_table_and_mcnemar():
    a = [{"id": str(i), "correct": i < 60} for i in range(100)]
    b = [{"id": str(i), "correct": 10 <= i < 60 or i >= 95} for i in range(100)]
    p = paired(a, b)
    assert (p["both"], p["only_a"], p["only_b"], p["neither"]) == (50, 10, 5, 35)
    assert p["diff"] == 5.0
    # exact binomial two-sided p for 10 vs 5 discordant: 2 * P(X <= 5 | n=15) = 0.3018
    assert abs(p["p_value"] - 0.3018) < 1e-3
    assert p["ci95"][0] < 5.0 < p["ci95"][1]
    assert paired(a, a)["p_value"] == 1.0
