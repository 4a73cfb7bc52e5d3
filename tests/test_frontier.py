"""Learning-forgetting frontiers: Pareto fronts, matched comparisons and the recommendation on
hand-made points; WiSE-FT interpolation toward the base on the tiny model."""
import pytest
from cli_here import cli_here

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
    # budgets: from where every front has a point on, past the end of the shorter fronts too
    assert frontier.budget_levels(two, "kl_task") == [1.0, 2.0, 3.0] and frontier.budget_levels({}, "kl_task") == []


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


def test_drift_measures_name_the_drift_stages_sets():
    from s3ft.stages.drift import SETS

    assert sorted(frontier.DRIFT_SET.values()) == sorted(SETS)
    assert set(frontier.DRIFT_SET) == {m for m, i in frontier.INSTRUMENT.items() if i == "drift"}


def test_measures_from_the_forgetting_records():
    forgetting = {"ifeval": {"prompt_strict": {"mean": -2.5}}, "informative_average": {"mean": 1.0}}
    drift = {"general": {"kl": {"mean": 0.12}}, "task": {"kl": {"mean": 0.3}}}
    assert frontier.measures_of(forgetting, drift) == {"ifeval_drop": 2.5, "kl_general": 0.12, "kl_task": 0.3,
                                                       "mc_drop": -1.0}
    assert frontier.measures_of({}, None) == {"ifeval_drop": None, "kl_general": None, "kl_task": None, "mc_drop": None}


def test_matched_choices_pick_on_validation_and_report_test_with_intervals():
    val = [P("sft", 0.2, 50, epoch=1), P("sft", 1.0, 70, epoch=2), P("sft", 3.0, 90, epoch=3),
           P("s3ft", 0.1, 55, epoch=1), P("s3ft", 0.9, 60, epoch=2)]
    test = [P("sft", 0.2, 52, epoch=1), P("sft", 1.0, 75, epoch=2), P("sft", 3.0, 80, epoch=3),
            P("s3ft", 0.1, 58, epoch=1), P("s3ft", 0.9, 66, epoch=2), P("base", 0.0, 40, alpha=0.0)]
    m = frontier.matched_choices(val, test, "kl_task", levels=[0.15, 1.0], scores=[56, 85])
    at = {r["level"]: {k: (c or {}).get("test", {}).get("in_domain") for k, c in r["choices"].items()} for r in m["forgetting"]}
    assert at == {0.15: {"sft": None, "s3ft": 58}, 1.0: {"sft": 75, "s3ft": 66}}  # chosen on validation, test read
    # the least forgetting that reaches a validation score: sft needs epoch 2 for 56, s3ft epoch 2
    by = {r["score"]: {k: (c or {}).get("point", {}).get("epoch") for k, c in r["choices"].items()} for r in m["score"]}
    assert by == {56: {"sft": 2, "s3ft": 2}, 85: {"sft": 3, "s3ft": None}}
    assert frontier.least_forgetting(val, test, "kl_task", 95) is None
    # where validation and test rank the points differently, the choice follows validation
    val2 = [P("sft", 1.0, 70, epoch=2), P("sft", 3.0, 65, epoch=3)]
    test2 = [P("sft", 1.0, 75, epoch=2), P("sft", 3.0, 80, epoch=3)]
    c = frontier.matched_choices(val2, test2, "kl_task", levels=[3.0], scores=[68])
    assert c["forgetting"][0]["choices"]["sft"]["test"]["in_domain"] == 75  # not the test-best 80
    assert c["score"][0]["choices"]["sft"]["point"]["epoch"] == 2  # reaches 68 on validation with less forgetting
    assert frontier.spread([5, 1, 3, 3, 2, 4, 9, 7]) == [1, 3, 5, 9] and frontier.spread([2, 1]) == [1, 2]


def test_points_over_seeds_are_averaged_and_paired_per_question():
    from s3ft.evaluation import paired_over_seeds

    rows = [P("sft", 0.2, 40, split="test", seed=1, answers="a1", forgetting_ci95={"kl_task": [0.1, 0.3]}),
            P("sft", 0.4, 60, split="test", seed=2, answers="a2", forgetting_ci95={"kl_task": [0.2, 0.6]}),
            P("sft", 0.3, 50, split="validation", seed=1), P("base", 0.0, 30, split="test", alpha=0.0, seed=1)]
    out = {(p["split"], p["method"]): p for p in frontier.average_seeds(rows)}
    sft = out[("test", "sft")]
    assert sft["in_domain"] == 50.0 and sft["seed_sd"] == pytest.approx(14.14, abs=0.01) and sft["seeds"] == [1, 2]
    assert sft["kl_task"] == pytest.approx(0.3) and sft["forgetting_ci95"]["kl_task"] == [0.1, 0.6]
    assert sft["answers_by_seed"] == {"1": "a1", "2": "a2"} and sft["in_domain_by_seed"] == {"1": 40, "2": 60}
    assert out[("validation", "sft")]["in_domain"] == 50 and "seed_sd" not in out[("validation", "sft")]
    assert out[("test", "base")]["seeds"] == [1]

    def judged(flags):
        return [{"id": i, "correct": c} for i, c in enumerate(flags)]
    # question 0: a right at both seeds, b at one -> +0.5; question 1: a at one seed, b never -> +0.5; 2, 3: even
    a = {1: judged([True, True, False, True]), 2: judged([True, False, False, True])}
    b = {1: judged([True, False, False, True]), 2: judged([False, False, False, True])}
    d = paired_over_seeds(a, b)
    assert d["n"] == 4 and d["diff"] == 25.0 and d["seeds"] == [1, 2] and d["ci95"][0] <= 25.0 <= d["ci95"][1]
    one = paired_over_seeds({1: a[1]}, {1: b[1]})
    assert one["diff"] == 25.0 and "p_value" in one  # one seed: the plain paired comparison, McNemar included


def test_span_scores_over_seeds_are_squads_and_their_interval_covers_the_seeds():
    from s3ft.evaluation import span_scores, span_scores_over_seeds
    from s3ft.types import Example

    golds = {0: ["Denver Broncos", "Broncos"], 1: ["1555"], 2: ["Ronnie Hillman"], 3: ["Danube"]}
    answers = {1: ["The Broncos", "in 1555", "Hillman", "the Rhine"], 2: ["Denver Broncos", "1555", "Hillman", "Danube"]}
    rows = {k: [{"id": i, "response": t} for i, t in enumerate(ts)] for k, ts in answers.items()}
    one = span_scores_over_seeds({1: rows[1]}, golds)
    # SQuAD's EM / F1: "The Broncos" = "Broncos"; "in 1555" and "Hillman" F1 2/3; "the Rhine" 0
    assert one["em"] == 25.0 and one["f1"] == 58.33 and one["span_n"] == 4
    exs = [Example(i, [], g[0], {"answers": g}) for i, g in golds.items()]
    assert span_scores(rows[1], exs) == one
    both = span_scores_over_seeds(rows, golds)
    assert both["em"] == 50.0  # 1 of 4 at seed 1, 3 of 4 at seed 2
    assert both["em_ci95"][0] < 50.0 < both["em_ci95"][1] and both["f1_ci95"][0] <= both["f1"] <= both["f1_ci95"][1]
    assert span_scores_over_seeds(rows, {}) == {}


def test_intervals_are_oriented_like_the_measures():
    forgetting = {"ifeval": {"prompt_strict": {"mean": -2.5, "ci95": [-6.0, 1.0]}}, "informative_average": {"mean": 1.0}}
    drift = {"general": {"kl": {"mean": 0.12, "ci95": [0.1, 0.14]}}, "task": {"kl": {"mean": 0.3}}}
    assert frontier.intervals_of(forgetting, drift) == {"ifeval_drop": [-1.0, 6.0], "kl_general": [0.1, 0.14]}


def test_frontier_section_and_report_tables_from_points(tmp_path):
    """compare.frontier_results over hand-made points with their answer files: the matched
    comparison is chosen on validation, the paired difference is computed on the test answers,
    and the report shows the matched tables and the fronts."""
    import json
    import types

    from s3ft.compare import frontier_results
    from s3ft.report import write_report

    def answers(name, correct):
        path = tmp_path / "eval" / f"{name}.jsonl"
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(json.dumps({"id": i, "correct": c, "response": "Paris." if c else "in Paris, France"})
                                + "\n" for i, c in enumerate(correct)))
        return str(path.relative_to(tmp_path))

    n = 20
    pts = []
    for split in ("test", "validation"):
        for m, ep, kl, right in (("sft", 1, 0.05, 10), ("sft", 2, 0.4, 16), ("s3ft", 1, 0.02, 12), ("s3ft", 2, 0.3, 14)):
            ans = answers(f"{split}.{m}-{ep}", [i < right for i in range(n)])
            pts.append({**P(m, None, 100 * right / n, epoch=ep, split=split, kl_general=kl, answers=ans, n=n,
                            ci95=[0, 100], forgetting_ci95={"kl_general": [kl / 2, kl * 2]})})
        pts.append({**P("base", None, 30.0, epoch=0, alpha=0.0, split=split, kl_general=0.0, n=n, lr=None,
                        answers=answers(f"{split}.base", [i < 6 for i in range(n)]))})
    cfg = types.SimpleNamespace(eval_split="test", tune_split="validation", forgetting_max=0.1,
                                forgetting_measure="kl_general", methods=["base", "sft", "s3ft"])
    fr = frontier_results(pts, cfg, 1, {"learning_rates": [1e-4], "epochs": [1, 2], "peft": [True], "alphas": []},
                          tmp_path, golds={split: {i: ["Paris"] for i in range(n)} for split in ("test", "validation")})
    part = fr["measures"]["kl_general"]
    s3ft_e1 = next(p for p in fr["points"] if p["method"] == "s3ft" and p["epoch"] == 1)
    # exact match: the 12 "Paris." answers; F1 of "in Paris, France" against "Paris" is 0.5
    assert s3ft_e1["em"] == 60.0 and s3ft_e1["f1"] == 80.0 and s3ft_e1["em_ci95"][0] < 60.0 < s3ft_e1["em_ci95"][1]
    assert fr["reference"] == "s3ft" and "kl_task" not in fr["measures"]
    at_budget = next(r for r in part["matched"]["forgetting"] if r["level"] == 0.1)
    assert at_budget["choices"]["sft"]["point"]["epoch"] == 1 and at_budget["choices"]["s3ft"]["point"]["epoch"] == 1
    d = at_budget["paired"]["sft"]  # s3ft's 12 right against sft's 10, on the same 20 questions
    assert d["diff"] == 10.0 and d["only_a"] == 2 and d["only_b"] == 0 and d["ci95"][0] <= 10.0 <= d["ci95"][1]
    assert fr["recommendation"]["point"]["method"] == "s3ft"
    vs = fr["recommendation"]["vs_base"]  # its 12 right against the base's first 6
    assert vs["diff"] == 30.0 and vs["only_a"] == 6 and vs["only_b"] == 0 and vs["ci95"][0] > 0
    paths = write_report({"task": "squad", "model": "m", "methods": ["base", "sft", "s3ft"], "seeds": [1],
                          "per_seed": {}, "frontier": fr}, tmp_path / "report")
    md = paths["markdown"].read_text()
    assert "Learning-forgetting frontier in numbers" in md and "At matched forgetting" in md
    assert "S3FT − SFT (pts)" in md and "+10.0 [" in md and "lr 0.0001, ep 2, LoRA" in md
    assert "| exact match (%) | F1 |" in md and "| 60.0 [" in md
    assert md.index("The answer") < md.index("Learning-forgetting frontier in numbers")
    opening = md[md.index("The answer"):md.index("| setting")]
    assert "At matched forgetting (kl_general at most 0.1" in opening and "S3FT − SFT +10.0 points [" in opening
    assert "log scale" not in md  # drift from 0.02 to 0.4: a linear axis shows it
    assert "Against the base model on the same test questions it is +30.0 points [" in opening
    from s3ft.report.frontiers import context

    for ci, verdict in (([-8.3, 16.7], "within noise of the base model"), ([-20.0, -5.0], "below the base model")):
        fr["recommendation"]["vs_base"] = {"diff": 3.3 if ci[1] > 0 else -12.5, "ci95": ci}
        assert verdict in context({"frontier": fr})["sentences"]


def test_frontier_plot_turns_logarithmic_only_when_the_drift_spans_a_wide_range():
    """0.002 to 0.05 nats/token stays linear; with a point at 0.2 (100 times the smallest) the axis
    is symmetric-log, linear below the smallest positive value; the base's 0 and missing values
    never count."""
    from s3ft.report.frontiers import log_threshold

    pts = [{"kl_general": 0.0}, {"kl_general": 0.002}, {"kl_general": None}, {"kl_general": 0.05}]
    assert log_threshold(pts, "kl_general") is None
    assert log_threshold(pts + [{"kl_general": 0.2}], "kl_general") == 0.002
    assert log_threshold([{"kl_general": 0.0}, {"ifeval_drop": 5.0}], "kl_general") is None


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


def test_sweep_runs_every_point_and_a_rerun_does_nothing(tmp_path, sharp_model_dir, capsys):
    """2 learning rates x 2 epochs (one training run per rate, the one at the per-seed comparison's
    settings copied from it), one interpolation: every point
    evaluated on test and validation with its drift, the frontier and recommendation in
    compare.json, the report opening with them; a rerun trains and evaluates nothing."""
    import json
    import subprocess
    import sys

    from s3ft.runs import read_jsonl

    recipe = tmp_path / "c.yaml"
    out = tmp_path / "cmp"
    recipe.write_text(
        f"model: {sharp_model_dir}\ntask: squad\noutput_dir: {out}\n"  # (a model that writes: drift is measured)
        "train_size: 4\neval_size: 3\nmax_new_tokens: 4\nbatch_size: 4\nnum_train_epochs: 2\n"
        "per_device_train_batch_size: 2\nmax_length: 512\nlearning_rate: 1.0e-3\nlogprob_analysis: false\n"
        "methods: [base, sft]\ndrift: true\nifeval_limit: 2\nifeval_max_new_tokens: 4\n"
        "sweep_learning_rates: [1.0e-3, 1.0e-2]\nsweep_epochs: [1, 2]\ninterpolation_alphas: [0.5]\n"
        "forgetting_measure: kl_task\nforgetting_max: 100.0\n"
        "ifeval: true\nsweep_measures: [kl_task]\n"  # IFEval in the per-seed comparison only
    )
    cmd = [sys.executable, "-m", "s3ft.cli", "compare", str(recipe)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    # the per-seed run (2 epochs at 1e-3, epoch 1 kept) is the sweep's run at 1e-3: copied, not trained again
    assert r.stdout.count("train (sft)") == 1 + 1 and r.stdout.count("the per-seed comparison's run): copied from") == 1
    res = json.loads((out / "compare.json").read_text())
    fr = res["frontier"]
    keys = {(p["learning_rate"], p["epoch"], p["alpha"]) for p in fr["points"] if p["method"] == "sft"}
    assert keys == {(lr, e, a) for lr in (1e-3, 1e-2) for e in (1, 2) for a in (0.5, 1.0)}
    assert len(fr["points"]) == len(fr["validation_points"]) == 9  # and the base model
    assert all(p["n"] == 3 and p["kl_task"] is not None and p["kl_task"] >= 0 for p in fr["points"])
    # sweep_measures: drift on the task prompts at every point; IFEval (and kl_general) only per seed
    assert all(p["ifeval_drop"] is None and p["kl_general"] is None for p in fr["points"] if p["method"] != "base")
    assert set(fr["measures"]) == {"kl_task"} and "ifeval sft:" in r.stdout and "ifeval sft-e" not in r.stdout
    assert not list((out / "sweep").glob("*/ifeval/sft-*.jsonl"))
    # the points' drift scores only the set of the measure asked for (task prompts); the per-seed drift both
    point_drift = list((out / "sweep").glob("*/drift/sft-*.jsonl"))
    assert len(point_drift) == 7 and {r["set"] for f in point_drift for r in read_jsonl(f)} == {"task"}
    assert {r["set"] for r in read_jsonl(out / "seed-42" / "drift" / "sft.jsonl")} == {"general", "task"}
    assert next(iter(res["per_seed"].values()))["forgetting"]["sft"]["ifeval"]["prompt_strict"]
    # each point names its judged answers (the matched comparison pairs them) and carries its drift interval
    assert all(len(read_jsonl(out / p["answers"])) == 3 for p in fr["points"] + fr["validation_points"])
    assert all(p["forgetting_ci95"]["kl_task"][0] <= p["kl_task"] <= p["forgetting_ci95"]["kl_task"][1]
               for p in fr["points"] if p["method"] != "base")
    at = fr["measures"]["kl_task"]["matched"]["forgetting"]
    assert at[-1]["level"] == 100.0 and at[-1]["choices"]["sft"]["test"]["split"] == "test"
    assert [r["level"] for r in at[:-1]] == sorted({p["kl_task"] for p in fr["measures"]["kl_task"]["fronts"]["sft"]})
    assert (out / "sweep" / "lr0.001-lora" / "sft" / "epochs" / "epoch-1" / "adapter_model.safetensors").exists()
    same = next(p for p in fr["points"] if (p["method"], p["learning_rate"], p["epoch"], p["alpha"]) == ("sft", 1e-3, 2, 1.0))
    assert same["in_domain"] == res["per_seed"]["42"]["in_domain"]["sft"]["accuracy"]
    # (its test answers and drift are the per-seed comparison's own, not taken a second time)
    assert same["answers"] == "seed-42/eval/sft.jsonl"
    assert not [p for p in (out / "sweep" / "lr0.001-lora").rglob("*.jsonl") if p.stem in ("sft-e2", "validation.sft")]
    assert (out / "sweep" / "lr0.001-lora" / "eval" / "validation.sft-e2.jsonl").exists()
    assert same["kl_task"] == res["per_seed"]["42"]["drift"]["sft"]["task"]["kl"]["mean"]
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
    # any point is one command away: exported, it answers the test questions as the point did
    from s3ft.backends.hf import HFGenerator
    from s3ft.cli import main
    from s3ft.session import Session
    from s3ft.trained import find_point

    exp = tmp_path / "exported"
    assert main(["export", str(out), "--method", "sft", "--point", "lr=0.01,epoch=1,alpha=0.5", "--output", str(exp)]) == 0
    point = next(p for p in fr["points"] if (p["method"], p["learning_rate"], p["epoch"], p["alpha"]) == ("sft", 1e-2, 1, 0.5))
    tm = find_point(out, "sft", "lr=0.01,epoch=1,alpha=0.5")
    assert tm.model_dir == out / "sweep" / "lr0.01-lora" / "sft" / "interpolated" / "epoch-1-a0.5"
    s = Session(tm.cfg)
    examples = s.eval_examples()
    got = HFGenerator.from_name(str(exp), device="cpu").generate([e.prompt for e in examples], s.decoding("eval").max_new_tokens,
                                                                 progress=False)
    assert got == [r["response"] for r in read_jsonl(out / point["answers"])]
    card = (exp / "README.md").read_text()
    assert "## Sweep point" in card and "interpolated toward the base model with alpha 0.5" in card
    assert f"| SFT (this model) | {point['in_domain']}%" in card
    assert json.loads((exp / "s3ft-export.json").read_text())["point"] == {"learning_rate": 0.01, "epoch": 1, "peft": True,
                                                                             "alpha": 0.5}
    if rec["point"]["method"] == "sft":
        assert find_point(out, None, "recommended").point["epoch"] == rec["point"]["epoch"]
    # the point that is the per-seed comparison's model: its card reads the comparison's results
    assert main(["export", str(out), "--method", "sft", "--point", "lr=0.001,epoch=2", "--output", str(tmp_path / "e0")]) == 0
    card = (tmp_path / "e0" / "README.md").read_text()
    assert f"| SFT (this model) | {same['in_domain']}%" in card and "has not evaluated this model" not in card
    with pytest.raises(ValueError, match="the sweep has: lr=0.001,epoch=1"):
        find_point(out, "sft", "lr=0.5,epoch=1")
    with pytest.raises(ValueError, match="say which method"):
        find_point(out, None, "lr=0.01,epoch=1")
    # the reruns run in this process (s3ft.cli.main, as the subprocess above): no second interpreter to start
    rc, stdout, stderr = cli_here(capsys, "compare", str(recipe))
    assert rc == 0, stderr[-4000:]
    assert "train (" not in stdout and "loading" not in stdout and "up to date" in stdout
    assert json.loads((out / "compare.json").read_text())["frontier"] == fr
    assert (out / "sweep" / "points.jsonl").read_text().splitlines() == lines
    # pruned (a copy without the weights, then the run itself), the run resumes from its records alone
    from s3ft.prune import model_dirs
    from s3ft.runs import file_fingerprint

    weights = sorted(p.relative_to(out) for p in out.rglob("*.safetensors"))
    copy = tmp_path / "pruned"
    assert main(["prune", str(out), "--to", str(copy)]) == 0
    assert not list(copy.rglob("*.safetensors")) and not list(copy.rglob("checkpoints"))
    assert sorted(p.relative_to(out) for p in out.rglob("*.safetensors")) == weights  # the run is left as it was
    assert len(list(copy.rglob("pruned.json"))) == len(model_dirs(out)) == 2 + 2 * (1 + 1 + 2)  # the seed's model and epoch 1; per rate: model, epoch 1, 2 interpolations
    def stages(root):
        return {str(m.relative_to(root)): json.loads(m.read_text())["stages"] for m in sorted(root.rglob("manifest.json"))}

    done = stages(copy)
    rc, stdout, stderr = cli_here(capsys, "compare", str(recipe), "--output_dir", str(copy))
    assert rc == 0, stderr[-4000:]
    assert "train (" not in stdout and "loading" not in stdout and "up to date" in stdout
    assert stages(copy) == done  # no stage ran again (no interpolation either)
    assert json.loads((copy / "compare.json").read_text())["frontier"] == fr
    assert main(["prune", str(out)]) == 0 and not list(out.rglob("*.safetensors"))
    rc, stdout, stderr = cli_here(capsys, "compare", str(recipe))
    assert rc == 0 and "train (" not in stdout and "Report: " in stdout, stderr[-4000:]
    assert main(["export", str(out), "--method", "sft", "--point", "lr=0.01,epoch=1", "--output", str(tmp_path / "e2")]) == 2
    assert "was pruned" in capsys.readouterr().err and not (tmp_path / "e2").exists()
    with pytest.raises(ValueError, match="was pruned"):
        find_point(out, "sft", "lr=0.01,epoch=1,alpha=0.5")
    # results not in yet on pruned models - an interpolated point's answers, the per-seed model's IFEval: the
    # interpolation is made again from the kept epoch, itself made again by training; the per-seed model is
    # trained again; then both are done
    for manifest, stage in (("sweep/lr0.01-lora", "eval.sft-e1-a0.5"), ("seed-42", "ifeval.sft")):
        m = json.loads((out / manifest / "manifest.json").read_text())
        del m["stages"][stage]
        (out / manifest / "manifest.json").write_text(json.dumps(m))
    pruned_fp = file_fingerprint(out / "seed-42" / "sft" / "model")
    rc, stdout, stderr = cli_here(capsys, "compare", str(recipe))
    assert rc == 0, stderr[-4000:]
    # a model trained again need not be the same bytes; when the per-seed one is not, the sweep's copy of it is no
    # longer its twin: that point is evaluated on its own model (made again too), and the per-seed results are
    # never overwritten by another model's
    other = file_fingerprint(out / "seed-42" / "sft" / "model") != pruned_fp
    assert stdout.count("was pruned and is needed again") == 3 + other and stdout.count("train (sft)") == 2 + other, \
        [line for line in stdout.splitlines() if "pruned" in line or "train (" in line]
    assert {r["status"] for r in json.loads((out / "seed-42" / "manifest.json").read_text())["stages"].values()} == {"done"}
    same5 = next(p for p in read_jsonl(out / "sweep" / "points.jsonl")
                 if p["split"] == "test" and (p["method"], p["learning_rate"], p["epoch"], p["alpha"]) == ("sft", 1e-3, 2, 1.0))
    assert same5["answers"] == ("sweep/lr0.001-lora/eval/sft-e2.jsonl" if other else "seed-42/eval/sft.jsonl")
    assert (out / "seed-42" / "sft" / "model" / "adapter_model.safetensors").exists()
    assert (out / "sweep" / "lr0.01-lora" / "sft" / "interpolated" / "epoch-1-a0.5" / "adapter_model.safetensors").exists()
    assert read_jsonl(out / point["answers"]) and len(json.loads((out / "compare.json").read_text())["frontier"]["points"]) == 9
    assert main(["prune", str(out)]) == 0  # nothing left to prune: no error
    assert main(["prune", str(tmp_path / "nothing")]) == 2


def test_sweep_over_two_seeds_averages_each_point_and_exports_either(tmp_path, sharp_model_dir, capsys):
    """sweep_seeds [1, 2]: one training run per seed (the second in its own -seed2 folder), each
    point the mean over both, its interval from the questions' seed-averaged scores; --point
    with --seed 2 exports the second seed's model; a rerun does nothing."""
    import json
    import subprocess
    import sys

    from s3ft.runs import read_jsonl
    from s3ft.trained import find_point

    recipe = tmp_path / "c.yaml"
    out = tmp_path / "cmp"
    recipe.write_text(
        f"model: {sharp_model_dir}\ntask: squad\noutput_dir: {out}\n"
        "train_size: 4\neval_size: 3\nmax_new_tokens: 4\nbatch_size: 4\nnum_train_epochs: 1\n"
        "per_device_train_batch_size: 2\nmax_length: 512\nlearning_rate: 1.0e-2\nlogprob_analysis: false\n"
        "methods: [base, sft]\nseeds: [1]\nsweep_seeds: [1, 2]\n"
    )
    cmd = [sys.executable, "-m", "s3ft.cli", "compare", str(recipe)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    fr = json.loads((out / "compare.json").read_text())["frontier"]
    assert fr["seeds"] == [1, 2] and fr["grid"]["seeds"] == [1, 2]
    rows = read_jsonl(out / "sweep" / "points.jsonl")
    assert sorted((r["split"], r["seed"]) for r in rows if r["method"] == "sft") == [("test", 1), ("test", 2),
                                                                                      ("validation", 1), ("validation", 2)]
    by_seed = {r["seed"]: r["in_domain"] for r in rows if r["method"] == "sft" and r["split"] == "test"}
    sft = next(p for p in fr["points"] if p["method"] == "sft")
    assert sft["seeds"] == [1, 2] and sft["in_domain"] == pytest.approx((by_seed[1] + by_seed[2]) / 2, abs=0.01)
    assert sft["ci95"][0] <= sft["in_domain"] <= sft["ci95"][1] and sft["seed_sd"] >= 0
    assert (out / "sweep" / "lr0.01-lora-seed2" / "sft" / "model").is_dir()
    a, b = find_point(out, "sft", "lr=0.01,epoch=1"), find_point(out, "sft", "lr=0.01,epoch=1", seed=2)
    assert a.model_dir == out / "sweep" / "lr0.01-lora" / "sft" / "model" and a.seed == 1
    assert b.model_dir == out / "sweep" / "lr0.01-lora-seed2" / "sft" / "model" and b.seed == 2
    with pytest.raises(ValueError, match="the sweep trained at seeds 1, 2"):
        find_point(out, "sft", "lr=0.01,epoch=1", seed=3)
    rc, stdout, stderr = cli_here(capsys, "compare", str(recipe))
    assert rc == 0 and "train (" not in stdout and "Report: " in stdout, stderr[-4000:]
    assert json.loads((out / "compare.json").read_text())["frontier"] == fr
