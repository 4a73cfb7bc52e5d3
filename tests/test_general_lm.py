"""s3ft.general_lm: context-sharing log-likelihoods equal lm-eval's own HFLM, request by request,
on every bundled benchmark (the sharp tiny model, whose choices are confidently ranked, so the
greedy flags are not all False)."""
from __future__ import annotations

import pytest

pytest.importorskip("lm_eval")

import torch  # noqa: E402

from s3ft import general  # noqa: E402
from s3ft.general_lm import PrefixSharingHFLM, score_continuations  # noqa: E402


def _full_forward(model, ctx, cont):
    ids = torch.tensor([ctx + cont[:-1]])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, len(ctx) - 1:].float(), -1)
    t = torch.tensor(cont)
    return float(logp.gather(1, t[:, None]).sum()), bool((logp.argmax(-1) == t).all())


@pytest.mark.parametrize("max_rows", [32, 2])  # 2: several chunks, each on a copy of the context's cache
def test_score_continuations_equals_one_forward_per_choice(sharp_model_dir, max_rows):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(sharp_model_dir).eval()
    ctx = list(range(100, 140))
    conts = [[7], [300, 301, 302, 303, 304], [9, 10], [500], [11, 12, 13], [42, 43, 44, 45, 46, 47, 48, 49]]
    # a continuation equal to the model's own greedy tokens, so that one greedy flag must be True
    ids = torch.tensor([ctx])
    greedy = []
    with torch.no_grad():
        for _ in range(4):
            nxt = int(model(torch.cat([ids, torch.tensor([greedy], dtype=torch.long)], 1)).logits[0, -1].argmax())
            greedy.append(nxt)
    conts.append(greedy)
    got = score_continuations(model, ctx, conts, max_rows=max_rows)
    for cont, (lp, is_greedy) in zip(conts, got):
        want_lp, want_greedy = _full_forward(model, ctx, cont)
        assert lp == pytest.approx(want_lp, abs=1e-4)
        assert is_greedy == want_greedy
    assert got[-1][1] is True


def test_same_results_as_hflm_on_every_benchmark(sharp_model_dir, tmp_path):
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    names = ["mmlu", "truthfulqa_mc2", "hellaswag", "arc_easy", "winogrande"]
    general.prepare_tasks(names, 3, 0, tmp_path)
    tm = general.task_manager(tmp_path)
    args = {"pretrained": str(sharp_model_dir), "device": "cpu", "dtype": "float32", "batch_size": 4}
    ours, theirs = PrefixSharingHFLM.create_from_arg_obj(dict(args)), HFLM.create_from_arg_obj(dict(args))
    compared = 0
    for name in names:
        task = general.BENCHMARKS[name].task
        a, b = (lm_eval.simple_evaluate(model=m, tasks=[task], task_manager=tm, log_samples=True)["samples"][task]
                for m in (ours, theirs))
        for sa, sb in zip(sorted(a, key=lambda s: s["doc_id"]), sorted(b, key=lambda s: s["doc_id"]), strict=True):
            assert len(sa["resps"]) == len(sb["resps"]) > 1
            for (ra,), (rb,) in zip(sa["resps"], sb["resps"], strict=True):
                assert ra[0] == pytest.approx(rb[0], abs=1e-3), name
                assert ra[1] == rb[1], name
                compared += 1
    assert compared > 40
