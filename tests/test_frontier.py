"""Learning-forgetting frontiers: Pareto fronts, matched comparisons and the recommendation on
hand-made points; WiSE-FT interpolation toward the base on the tiny model."""
import pytest

from s3ft import frontier


def P(method, f, s, lr=1e-4, epoch=1, alpha=1.0, peft=True, **kw):
    return {"method": method, "learning_rate": lr, "epoch": epoch, "peft": peft, "alpha": alpha,
            "in_domain": s, "kl_task": f, **kw}


def test_pareto_front_drops_dominated_points_and_keeps_one_of_a_tie():
    pts = [P("sft", 1.0, 50, epoch=1), P("sft", 2.0, 60, epoch=2), P("sft", 1.5, 45, epoch=3),  # dominated by epoch 1
           P("sft", 3.0, 60, epoch=4),  # same score, more forgetting: dominated
           P("sft", 1.0, 40, epoch=5),  # same forgetting, lower score: dominated
           P("sft", 2.0, 60, lr=2e-4),  # an exact tie with epoch 2: the first is kept
           P("sft", 0.5, 30, alpha=0.5), P("sft", None, 99)]  # not measured: left out
    front = frontier.pareto_front(pts, "kl_task")
    assert [(p["kl_task"], p["in_domain"]) for p in front] == [(0.5, 30), (1.0, 50), (2.0, 60)]
    assert front[2]["learning_rate"] == 1e-4 and front[0]["alpha"] == 0.5


def test_matched_comparisons_interpolate_inside_each_front_and_never_outside():
    pts = [P("sft", 1.0, 40), P("sft", 3.0, 80), P("s3ft", 0.5, 50), P("s3ft", 2.0, 70), P("lone", 2.0, 55)]
    fs = frontier.fronts(pts, "kl_task")
    assert list(fs) == ["sft", "s3ft", "lone"]
    assert frontier.score_at(fs["sft"], 2.0, "kl_task") == pytest.approx(60.0)  # halfway between 40 and 80
    assert frontier.score_at(fs["s3ft"], 1.0, "kl_task") == pytest.approx(50 + 20 * 0.5 / 1.5)
    assert frontier.score_at(fs["sft"], 0.5, "kl_task") is None and frontier.score_at(fs["sft"], 3.5, "kl_task") is None
    assert frontier.forgetting_at(fs["s3ft"], 60.0, "kl_task") == pytest.approx(1.25)
    assert frontier.forgetting_at(fs["sft"], 90.0, "kl_task") is None
    # a method with one point is read at that point only
    assert frontier.score_at(fs["lone"], 2.0, "kl_task") == 55.0 and frontier.score_at(fs["lone"], 1.9, "kl_task") is None
    # the common range of sft and s3ft is [1.0, 2.0]; read at the fronts' own values inside it
    two = {m: fs[m] for m in ("sft", "s3ft")}
    rows = frontier.matched_forgetting(two, "kl_task")
    assert [r["level"] for r in rows] == [1.0, 2.0]
    assert rows[1]["scores"] == {"sft": pytest.approx(60.0), "s3ft": 70.0}
    by_score = frontier.matched_score(two, "kl_task")
    assert [r["score"] for r in by_score] == [50, 70]
    assert by_score[0]["forgetting"] == {"sft": pytest.approx(1.5), "s3ft": 0.5}
    # explicit levels; a level outside one front gives None for it
    out = frontier.matched_forgetting(fs, "kl_task", levels=[2.5])
    assert out[0]["scores"] == {"sft": pytest.approx(70.0), "s3ft": None, "lone": None}
    # lone's single point (2.0) lies in the others' common range: the only level all three can be read at
    assert frontier.matched_forgetting(fs, "kl_task") == [{"level": 2.0, "scores": {"sft": pytest.approx(60.0), "s3ft": 70.0,
                                                                                   "lone": 55.0}}]
    assert frontier.common_levels({"sft": fs["sft"], "x": [P("x", 5.0, 1)]}, "kl_task") == []  # disjoint ranges
    assert frontier.common_levels({"sft": fs["sft"]}, "kl_task") == []  # one front alone has nothing to match


def test_recommendation_is_chosen_on_validation_and_reported_on_test():
    val = [P("sft", 0.5, 60, epoch=1), P("sft", 2.0, 90, epoch=2), P("s3ft", 0.9, 70, epoch=1),
           P("s3ft", 0.8, 70, epoch=2), P("base", 0.0, 20, alpha=0.0)]
    test = [P("sft", 0.5, 61, epoch=1), P("sft", 2.0, 88, epoch=2), P("s3ft", 0.9, 65, epoch=1),
            P("s3ft", 0.8, 72, epoch=2), P("base", 0.0, 21, alpha=0.0)]
    rec = frontier.recommend(val, test, "kl_task", 1.0)
    # sft epoch 2 is over budget; the two s3ft points tie on validation: the one with less forgetting
    assert rec["point"] == {"method": "s3ft", "learning_rate": 1e-4, "epoch": 2, "peft": True, "alpha": 1.0}
    assert rec["validation"]["in_domain"] == 70 and rec["test"]["in_domain"] == 72
    assert rec["within_budget"] == 4 and rec["of"] == 5
    assert frontier.recommend(val, test, "kl_task", 5.0)["point"]["method"] == "sft"
    assert frontier.recommend(val, test, "kl_task", -1.0) is None
    assert frontier.recommend(val, test, "ifeval_drop", 1.0) is None  # not measured


def test_measures_from_the_forgetting_records():
    forgetting = {"ifeval": {"prompt_strict": {"mean": -2.5}}, "informative_average": {"mean": 1.0}}
    drift = {"general": {"kl": {"mean": 0.12}}, "task": {"kl": {"mean": 0.3}}}
    assert frontier.measures_of(forgetting, drift) == {"ifeval_drop": 2.5, "kl_general": 0.12, "kl_task": 0.3,
                                                       "mc_drop": -1.0}
    assert frontier.measures_of({}, None) == {"ifeval_drop": None, "kl_general": None, "kl_task": None, "mc_drop": None}


def _logits(path, ids):
    import torch

    from s3ft.models import load_model

    with torch.no_grad():
        return load_model(str(path), dtype="float32", device="cpu")(ids).logits


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_interpolation_ends_are_exactly_the_base_and_the_tuned_model(tmp_path, tiny_model_dir, kind):
    import torch
    from transformers import AutoModelForCausalLM

    from s3ft.interpolate import interpolate

    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tuned = tmp_path / "tuned"
    if kind == "lora":
        from peft import LoraConfig, get_peft_model

        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                      init_lora_weights=False))  # B random: a real update
        peft_model.save_pretrained(tuned)
    else:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        model.save_pretrained(tuned)
    ids = torch.tensor([[1, 50, 300, 7, 999, 12]])
    base, end = _logits(tiny_model_dir, ids), _logits(tuned, ids)
    assert not torch.equal(base, end)
    assert torch.equal(_logits(interpolate(tiny_model_dir, tuned, tmp_path / "a0", 0.0), ids), base)
    assert torch.equal(_logits(interpolate(tiny_model_dir, tuned, tmp_path / "a1", 1.0), ids), end)
    half = _logits(interpolate(tiny_model_dir, tuned, tmp_path / "a05", 0.5), ids)
    assert not torch.equal(half, base) and not torch.equal(half, end)
    assert 0 < (half - base).norm() < (end - base).norm()
    if kind == "lora":  # the update itself is halved: lora_B halved, lora_A as it was
        from safetensors.torch import load_file

        a, h = load_file(tuned / "adapter_model.safetensors"), load_file(tmp_path / "a05" / "adapter_model.safetensors")
        assert all(torch.equal(h[k], a[k] * 0.5 if ".lora_B." in k else a[k]) for k in a)
    with pytest.raises(ValueError, match="alpha"):
        interpolate(tiny_model_dir, tuned, tmp_path / "bad", 1.5)


def test_sweep_runs_every_point_and_a_rerun_does_nothing(tmp_path, sharp_model_dir):
    """2 learning rates x 2 epochs (one training run per rate), one interpolation: every point
    evaluated on test and validation with its drift, the frontier and recommendation in
    compare.json, the report opening with them; a rerun trains and evaluates nothing."""
    import json
    import subprocess
    import sys

    recipe = tmp_path / "c.yaml"
    out = tmp_path / "cmp"
    recipe.write_text(
        f"model: {sharp_model_dir}\ntask: squad\noutput_dir: {out}\n"  # (a model that writes: drift is measured)
        "train_size: 4\neval_size: 3\nmax_new_tokens: 4\nbatch_size: 4\nnum_train_epochs: 1\n"
        "per_device_train_batch_size: 2\nmax_length: 512\nlearning_rate: 1.0e-3\nlogprob_analysis: false\n"
        "methods: [base, sft]\ndrift: true\nifeval_limit: 2\nifeval_max_new_tokens: 4\n"
        "sweep_learning_rates: [1.0e-3, 1.0e-2]\nsweep_epochs: [1, 2]\ninterpolation_alphas: [0.5]\n"
        "forgetting_measure: kl_task\nforgetting_max: 100.0\n"
    )
    cmd = [sys.executable, "-m", "s3ft.cli", "compare", str(recipe)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.count("train (sft)") == 1 + 2  # the main run, then one run per learning rate (2 epochs each)
    res = json.loads((out / "compare.json").read_text())
    fr = res["frontier"]
    keys = {(p["learning_rate"], p["epoch"], p["alpha"]) for p in fr["points"] if p["method"] == "sft"}
    assert keys == {(lr, e, a) for lr in (1e-3, 1e-2) for e in (1, 2) for a in (0.5, 1.0)}
    assert len(fr["points"]) == len(fr["validation_points"]) == 9  # and the base model
    assert all(p["n"] == 3 and p["kl_task"] is not None and p["kl_task"] >= 0 for p in fr["points"])
    assert (out / "sweep" / "lr0.001-lora" / "sft" / "epochs" / "epoch-1" / "adapter_model.safetensors").exists()
    # epoch 1 is a checkpoint of the 2-epoch run, not the model at its end
    a = out / "sweep" / "lr0.01-lora" / "sft"
    assert (a / "epochs" / "epoch-1" / "adapter_model.safetensors").read_bytes() != (a / "model" / "adapter_model.safetensors").read_bytes()
    assert "kl_task" in fr["measures"] and fr["measures"]["kl_task"]["fronts"]["sft"]
    rec = fr["recommendation"]
    assert rec["point"]["method"] in ("sft", "base") and rec["test"]["split"] == "test"
    assert rec["validation"]["split"] == "validation"
    lines = (out / "sweep" / "points.jsonl").read_text().splitlines()
    assert len(lines) == 18
    report = (out / "report" / "report.md").read_text()
    assert report.index("learning-forgetting frontier") < report.index("Hyperparameters")
    assert (out / "report" / "plots" / "frontier_kl_task.png").exists()
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r2.returncode == 0, r2.stderr[-4000:]
    assert "train (" not in r2.stdout and "loading" not in r2.stdout
    assert json.loads((out / "compare.json").read_text())["frontier"] == fr
    assert (out / "sweep" / "points.jsonl").read_text().splitlines() == lines
