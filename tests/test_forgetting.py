"""The forgetting instruments react: each is checked on something that must score well and on
something that must score badly (IFEval scorer: GPT-4's published answers vs mutated and empty
ones; drift: the base model against itself vs a damaged copy; style; the honest reading of
multiple-choice benchmarks on hand-made cases)."""
import gzip
import json
from importlib import resources

import pytest
from cli_here import cli_here

from s3ft import forgetting, ifeval
from s3ft.drift import drift_rows
from s3ft.style import repetition, style


def reference_responses():
    with (resources.files("s3ft") / "data" / "ifeval" / "gpt4_reference_responses.jsonl.gz").open("rb") as raw:
        return [json.loads(line)["response"] for line in gzip.open(raw, "rt")]


def figures(responses, rows=None):
    rows = rows or ifeval.prompts()
    s = ifeval.summarize(ifeval.score(rows, responses))
    return {m: s[m]["mean"] for m in ifeval.METRICS}


def test_ifeval_scorer_reproduces_the_paper_and_fails_what_it_should():
    rows = ifeval.prompts()
    assert len(rows) == 541 and sum(len(r["instruction_id_list"]) for r in rows) == 834
    gpt4 = figures(reference_responses())
    # the paper: GPT-4 76.89 prompt-level / 83.57 instruction-level strict
    assert abs(gpt4["prompt_strict"] - 76.89) < 0.6 and abs(gpt4["inst_strict"] - 83.57) < 0.6
    assert gpt4["prompt_loose"] >= gpt4["prompt_strict"]
    assert figures([""] * len(rows)) == {m: 0.0 for m in ifeval.METRICS}
    echo = figures([r["prompt"] for r in rows])
    assert 20 < echo["prompt_strict"] < 30
    # mutated: the same answers cut to their first five words fail most length/format instructions
    cut = figures([" ".join(t.split()[:5]) for t in reference_responses()])
    assert cut["prompt_strict"] < gpt4["prompt_strict"] - 30


def test_ifeval_scoring_is_reproducible_and_independent_of_the_subset():
    rows = ifeval.prompts()
    idx = ifeval.select(40, 0)
    assert idx == ifeval.select(40, 0) and idx != ifeval.select(40, 1) and len(idx) == 40
    ref = reference_responses()
    alone = ifeval.score([rows[i] for i in idx], [ref[i] for i in idx])
    together = ifeval.score(list(rows), ref)
    assert alone == [together[i] for i in idx]


def test_style_statistics_on_hand_made_answers():
    assert repetition("a b c d a b c d a b c d") == pytest.approx(5 / 9)
    assert repetition("one two three") == 0.0
    s = style([("yes", False), ("", False), ("a long answer that goes on and on", True), ("four words right here", False)])
    assert s["answers"] == 4 and s["short_pct"] == 50.0 and s["empty_pct"] == 25.0 and s["cut_off_pct"] == 25.0
    assert s["words_median"] == 4


def test_flips_chance_and_the_informative_rule():
    base = {1: 1.0, 2: 1.0, 3: 0.0, 4: 0.0}
    model = {1: 1.0, 2: 0.0, 3: 1.0, 4: 1.0}
    c = forgetting.paired_change(model, base)
    assert (c["forgotten"], c["gained"]) == (1, 2) and c["mean"] == pytest.approx(25.0) and c["n"] == 4
    assert c["ci95"][0] < 25 < c["ci95"][1] and c["mde"] > 0
    assert forgetting.chance_adjusted(25.0, 25.0) == 0.0 and forgetting.chance_adjusted(100.0, 25.0) == 100.0
    four = [0.0, 0.0, 0.0, 0.0]
    at_chance = [{"row": i, "score": float(i % 4 == 0), "loglikelihoods": four} for i in range(200)]
    above = [{"row": i, "score": float(i % 4 != 0), "loglikelihoods": four} for i in range(200)]
    r0, r1 = forgetting.benchmark_reading("hellaswag", at_chance), forgetting.benchmark_reading("hellaswag", above)
    assert r0["chance"] == 25.0 and not r0["informative"] and r1["informative"] and r1["chance_adjusted"] == 66.67
    changes = {"a": {"mean": -2.0, "se": 1.0, "n": 100}, "b": {"mean": 10.0, "se": 1.0, "n": 100}}
    avg = forgetting.informative_average(changes, {"a": {"informative": True}, "b": {"informative": False}}, {}, {})
    assert avg["benchmarks"] == ["a"] and avg["mean"] == -2.0


def test_truthfulqa_mc2_chance_is_the_share_of_true_answers():
    from s3ft.general import chance_levels

    assert chance_levels("truthfulqa_mc2", [{"row": 0}]) == [0.25]  # 1 true of 4 choices
    assert chance_levels("arc_easy", [{"loglikelihoods": [0, 0, 0]}]) == [pytest.approx(1 / 3)]


# ---------------------------------------------------------------------------------------------
# drift on the tiny model


def prompts_and_answers(tok, model, n=4):
    from s3ft.backends.hf import HFGenerator

    prompts = [[{"role": "user", "content": f"Write a short poem about the number {i}."}] for i in range(n)]
    return prompts, HFGenerator(model, tok).generate(prompts, 12, progress=False)


def test_drift_is_exactly_zero_for_the_base_model_and_a_zero_adapter(sharp_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sharp_model_dir)
    base = AutoModelForCausalLM.from_pretrained(sharp_model_dir).eval()
    copy = AutoModelForCausalLM.from_pretrained(sharp_model_dir).eval()
    prompts, answers = prompts_and_answers(tok, base)
    assert all(answers)
    rows = drift_rows(copy, tok, prompts, answers, reference=base, progress=False)
    assert all(r["tokens"] > 0 and r["kl"] == 0.0 and r["logp_tuned"] == r["logp_base"] for r in rows)
    peft = get_peft_model(copy, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])).eval()
    rows = drift_rows(peft, tok, prompts, answers, progress=False)  # fresh LoRA: B = 0, adds exactly 0
    assert all(r["kl"] == 0.0 and r["kl_max"] == 0.0 for r in rows)


def test_drift_grows_with_the_damage(sharp_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sharp_model_dir)
    base = AutoModelForCausalLM.from_pretrained(sharp_model_dir).eval()
    prompts, answers = prompts_and_answers(tok, base)
    kls = []
    for scale in (0.01, 1.0):
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(sharp_model_dir),
                               LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"]))
        torch.manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, scale)
        rows = drift_rows(model.eval(), tok, prompts, answers, progress=False)
        kls.append(sum(r["kl"] for r in rows) / len(rows))
        if scale == 1.0:  # the damaged model finds the base model's answers much less likely
            assert all(r["logp_tuned"] < r["logp_base"] for r in rows)
    assert 0 < kls[0] < kls[1] and kls[1] > 100 * kls[0]
    with pytest.raises(ValueError, match="needs the base model"):
        drift_rows(base, tok, prompts, answers, progress=False)


def test_run_measures_a_model_trained_to_answer_in_one_word(tmp_path, sharp_model_dir, capsys):
    """`s3ft run` with ifeval and drift: SFT on one-word answers at a high learning rate leaves the
    random model answering IFEval's prompts with "yes" over and over (it does not learn to stop
    after it): shorter answers in words, a large KL from the base and a lower likelihood of the
    base model's answers, all recorded; a rerun does nothing. (The same probe on the embedded
    model, which does learn to stop: bench/forgetting_probe.py.)"""
    import subprocess
    import sys

    rows = [{"id": f"q{i}", "prompt": f"Tell me about topic number {i}.", "response": "yes"} for i in range(16)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {sharp_model_dir}\ntask: jsonl\ndata_files: {{train: {data}, test: {data}}}\nid_field: id\n"
        f"judge: qa\nmethod: sft\noutput_dir: {tmp_path / 'run'}\neval_size: 4\nmax_new_tokens: 12\nbatch_size: 8\n"
        "num_train_epochs: 12\nper_device_train_batch_size: 4\nlearning_rate: 3.0e-2\nmax_length: 256\n"
        "ifeval: true\nifeval_limit: 6\nifeval_max_new_tokens: 16\ndrift: true\n"
        "general_benchmarks: [arc_easy]\ngeneral_limit: 8\n")
    r = subprocess.run([sys.executable, "-m", "s3ft.cli", "run", str(recipe)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]
    base, sft = man["ifeval.base"], man["ifeval.sft"]
    assert base["ifeval"]["prompts"] == sft["ifeval"]["prompts"] == 6
    assert sft["style"]["words_mean"] < 0.8 * base["style"]["words_mean"]
    answers = read_rows(tmp_path / "run" / "ifeval" / "sft.jsonl")
    assert all(a["response"].startswith("yes") for a in answers)
    d = man["drift.sft"]["drift"]
    assert d["general"]["answers"] == 6 and d["task"]["answers"] == 4
    assert d["general"]["kl"]["mean"] > 0.5 and d["general"]["logp_drop"]["mean"] > 0
    assert len(read_rows(tmp_path / "run" / "drift" / "sft.jsonl")) == 10
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())  # the run's summary has them too
    assert set(metrics["ifeval"]) == {"base", "sft"} and metrics["drift"]["general"]["kl"]["mean"] == d["general"]["kl"]["mean"]
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "## IFEval and output style" in summary and "## Drift of sft from the base model" in summary
    reading = metrics["general_reading"]  # multiple choice read against chance, with flips
    assert reading["benchmarks"]["arc_easy"]["chance"] > 20 and reading["general"]["arc_easy"]["n"] == 8
    assert "Read against chance" in summary and "Flips (right -> wrong / wrong -> right): arc_easy" in summary
    rc, stdout, stderr = cli_here(capsys, "run", recipe)  # in this process: no second interpreter to start
    assert rc == 0, stderr[-3000:]
    assert "drift.sft: up to date" in stdout and "ifeval.base: up to date" in stdout and "train (" not in stdout


def read_rows(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_the_report_opens_with_an_answer_naming_the_best_and_its_costs():
    from s3ft.report.forgetting import answer
    from s3ft.report.summary import summarize

    acc = lambda k: {"k": k, "n": 40, "accuracy": 100 * k / 40, "ci95": [0, 100]}  # noqa: E731
    compare = {"methods": ["base", "sft", "s3ft"], "per_seed": {"1": {
        "in_domain": {"base": acc(14), "sft": acc(20), "s3ft": acc(16)},
        "drift": {"sft": {"general": {"kl": {"mean": 0.2}}}, "s3ft": {"general": {"kl": {"mean": 0.05}}}},
        "forgetting": {"sft": {"ifeval": {"prompt_strict": {"mean": -7.5, "mde": 12.0}}},
                       "s3ft": {"ifeval": {"prompt_strict": {"mean": 2.5, "mde": 11.0}}}}}}}
    text = answer(compare, summarize(compare))
    assert text.startswith("Best in-domain: **SFT** at 50.0%") and "(base 35.0%)" in text
    assert "least S3FT 0.0500, most SFT 0.2000" in text
    assert "from -7.5 points (SFT) to +2.5" in text and "under about 12.0 points" in text
