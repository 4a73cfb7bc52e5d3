"""`s3ft compare` end to end on the tiny model: one shared data pass, every method trained per
seed with the same hyperparameters, evaluated, compare.json and the report written."""
import json
import subprocess
import sys

import pytest
from cli_here import cli_here


def test_compare_end_to_end(tmp_path, tiny_model_dir, capsys):
    recipe = tmp_path / "c.yaml"
    out = tmp_path / "cmp"
    recipe.write_text(
        f"model: {tiny_model_dir}\ntask: squad\noutput_dir: {out}\n"
        "train_size: 6\neval_size: 4\nmax_new_tokens: 6\nbatch_size: 4\nnum_train_epochs: 1\n"
        "per_device_train_batch_size: 3\nmax_length: 512\nlearning_rate: 1.0e-3\n"
        "methods: [base, sft, sdft, s3ft]\nseeds: [1, 2]\n"  # (SSR builds and trains as S3FT does: tests/test_selection.py)
        "general_benchmarks: [arc_easy]\ngeneral_limit: 4\ncross_tasks: [gsm8k]\ncross_task_size: 2\n"
        "ifeval: true\nifeval_limit: 3\nifeval_max_new_tokens: 8\ndrift: true\n"
    )
    r = subprocess.run([sys.executable, "-m", "s3ft.cli", "compare", str(recipe)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads((out / "compare.json").read_text())
    assert res["seeds"] == [1, 2] and set(res["per_seed"]) == {"1", "2"}
    for seed in ("1", "2"):
        per = res["per_seed"][seed]
        assert set(per["mix"]) == {"sft", "sdft", "s3ft"}
        assert per["mix"]["sft"]["counts"]["gold"] == 6
        assert set(per["in_domain"]) == {"base", "sft", "sdft", "s3ft"}
        assert all(a["n"] == 4 for a in per["in_domain"].values())
        assert set(per["cross_task"]["gsm8k"]) == {"base", "sft", "sdft", "s3ft"}
        assert all(g["arc_easy"]["n"] == 4 for g in per["general"].values())
        assert per["paired"]["s3ft_vs_sft"]["in_domain"]["n"] == 4
        # general benchmarks paired on the same questions: S3FT vs each method, each method vs base
        assert per["paired"]["s3ft_vs_sft"]["general"]["n"] == 4 and per["paired"]["s3ft_vs_sft"]["general"]["benchmarks"] == ["arc_easy"]
        assert {"sft_vs_base", "sdft_vs_base"} <= set(per["paired"]) and "general" in per["paired"]["s3ft_vs_base"]
        assert (out / f"seed-{seed}" / "s3ft" / "model" / "adapter_config.json").exists()
        # IFEval for every model, drift of every trained model from the base, the honest reading
        assert set(per["ifeval"]) == {"base", "sft", "sdft", "s3ft"}
        assert all(e["ifeval"]["prompts"] == 3 and e["style"]["answers"] == 3 for e in per["ifeval"].values())
        assert set(per["drift"]) == {"sft", "sdft", "s3ft"}
        # (the tiny model's answers are often empty, which drift cannot score: counted apart;
        # tests/test_forgetting.py checks the values on a model that writes)
        assert all(d["general"]["answers"] + d["general"]["empty"] == 3 and d["task"]["answers"] + d["task"]["empty"] == 4
                   for d in per["drift"].values())
        f = per["forgetting"]
        assert f["benchmarks"]["arc_easy"]["chance"] > 0 and f["sft"]["general"]["arc_easy"]["n"] == 4
        assert f["sft"]["ifeval"]["prompt_strict"]["n"] == 3 and "words_median" in f["sft"]["style"]
    # one shared pass: paraphrases cover every example (sdft asked for), generated once
    assert len((out / "paraphrase.jsonl").read_text().splitlines()) == 6
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["paraphrase"]["rows"] == 6
    # logprob analysis: one gold row per training example
    assert len(res["logprob"]["gold"]) == 6
    assert (out / "report" / "report.html").exists() and (out / "report" / "report.md").exists()
    report = (out / "report" / "report.md").read_text()
    assert report.index("## The answer") < report.index("| setting | value |")  # the answer opens the report
    assert "Best in-domain: **" in report  # (the drift sentence needs non-empty answers: tests/test_forgetting.py)
    for section in ("IFEval (instruction following)", "Drift from the base model", "Output style on the IFEval prompts",
                    "Multiple-choice benchmarks, read against chance"):
        assert section in report, section
    # the audit files: every method's targets, every model's judged answers (in-domain and cross-task)
    import gzip

    targets = [json.loads(x) for x in gzip.open(out / "audit" / "targets.jsonl.gz", "rt")]
    assert len(targets) == 3 * 6 and {t["method"] for t in targets} == {"sft", "sdft", "s3ft"}
    assert all(t["tokens"] >= 1 and t["source"] in ("self", "paraphrase", "gold") for t in targets)
    assert all(t["stop"] != "length" for t in targets if t["source"] != "gold")  # never a cut-off target
    answers = [json.loads(x) for x in gzip.open(out / "audit" / "answers.jsonl.gz", "rt")]
    squad = [a for a in answers if a["task"] == "squad"]
    assert len(squad) == 4 * (1 + 3 * 2) and {a["stop"] for a in squad} <= {"end_of_turn", "length"}
    assert len([a for a in answers if a["task"] == "gsm8k"]) == 2 * (1 + 3 * 2)
    assert res["audit"] == {"targets": "audit/targets.jsonl.gz", "answers": "audit/answers.jsonl.gz"}
    # two seeds trained different adapters with identical hyperparameters
    a = (out / "seed-1" / "sft" / "model" / "adapter_model.safetensors").read_bytes()
    b = (out / "seed-2" / "sft" / "model" / "adapter_model.safetensors").read_bytes()
    assert a != b
    # rerun: nothing to do, same results
    rc, stdout, stderr = cli_here(capsys, "compare", recipe)  # in this process: no second interpreter to start
    assert rc == 0, stderr[-4000:]
    assert "train.sft: up to date" in stdout and "general.base: up to date" in stdout and "train (" not in stdout
    res2 = json.loads((out / "compare.json").read_text())
    assert res2["per_seed"] == res["per_seed"]
    # --force reaches compare's stages (the group form is tested stage by stage in test_pipeline.py):
    # the base model's in-domain evaluation runs again, once; nothing else
    r3 = subprocess.run([sys.executable, "-m", "s3ft.cli", "compare", str(recipe), "--force", "eval.base"],
                        capture_output=True, text=True, timeout=900)
    assert r3.returncode == 0, r3.stderr[-4000:]
    assert r3.stdout.count("eval base: 4 squad test examples to answer (0 already done)") == 1
    assert "examples to answer" not in r3.stdout.replace("eval base: 4 squad test examples to answer", "")
    assert "train (" not in r3.stdout and "general.base: up to date" in r3.stdout and "eval.s3ft: up to date" in r3.stdout
    assert json.loads((out / "compare.json").read_text())["per_seed"] == res["per_seed"]


def _fake_trials(monkeypatch, scores):
    """trained_model / in_domain replaced: the validation accuracy of a candidate is scores[(lr, epochs)]."""
    from s3ft import compare, pipeline

    calls = []

    def fake_train(ts, method):
        calls.append((ts.cfg.learning_rate, ts.cfg.num_train_epochs, ts.cfg.seed, method))
        return f"/models/{ts.cfg.learning_rate}-{ts.cfg.num_train_epochs}"

    def fake_eval(ts, name, model, fp, run):
        assert ts.cfg.eval_split == "validation" and ts.cfg.eval_size is None
        acc = scores[(ts.cfg.learning_rate, ts.cfg.num_train_epochs)]
        return {"k": acc, "n": 100, "accuracy": float(acc), "ci95": [acc - 5.0, acc + 5.0]}

    monkeypatch.setattr(pipeline, "trained_model", fake_train)
    monkeypatch.setattr(pipeline, "in_domain", fake_eval)
    monkeypatch.setattr(compare, "file_fingerprint", lambda p: str(p))
    return calls


def test_tune_coordinate_search_and_ties(monkeypatch, tmp_path):
    from s3ft.compare import tune
    from s3ft.config import S3FTConfig
    from s3ft.session import Session

    scores = {(1e-4, 1.0): 40, (3e-4, 1.0): 47, (1e-3, 1.0): 47, (3e-4, 2.0): 50, (3e-4, 3.0): 50}
    calls = _fake_trials(monkeypatch, scores)
    cfg = S3FTConfig(output_dir=str(tmp_path), tune_learning_rates=[1e-4, 3e-4, 1e-3], tune_epochs=[1.0, 2.0, 3.0])
    out = tune(Session(cfg), seed=7)
    # learning rates at the first epoch count, then epochs at the best rate; ties -> earlier candidate
    assert [(c[0], c[1]) for c in calls] == [(1e-4, 1.0), (3e-4, 1.0), (1e-3, 1.0), (3e-4, 2.0), (3e-4, 3.0)]
    assert all(c[2] == 7 and c[3] == "sft" for c in calls)
    assert out["chosen"] == {"learning_rate": 3e-4, "num_train_epochs": 2.0}
    assert len(out["trials"]) == 5 and out["split"] == "validation"


def test_tune_refuses_the_test_split_and_bad_values(tmp_path):
    import pytest

    from s3ft.compare import tune
    from s3ft.config import ConfigError, S3FTConfig, load_config
    from s3ft.session import Session

    assert tune(Session(S3FTConfig(output_dir=str(tmp_path))), seed=1) is None  # nothing asked
    with pytest.raises(ConfigError, match="tune_split"):
        tune(Session(S3FTConfig(output_dir=str(tmp_path), tune_learning_rates=[1e-4], tune_split="test")), seed=1)
    with pytest.raises(ConfigError, match="field 'tune_epochs' expects list"):  # typed when the recipe loads
        load_config(None, {"tune_epochs": ["one"]})
    with pytest.raises(ConfigError, match="tune_learning_rates must be positive"):
        load_config(None, {"tune_learning_rates": [1e-4, 0]})


def test_compare_with_tuning_applies_the_choice(tmp_path, tiny_model_dir):
    """Real tiny-model run: two learning rates tried on validation, the chosen one used for the methods."""
    recipe = tmp_path / "c.yaml"
    out = tmp_path / "cmp"
    recipe.write_text(
        f"model: {tiny_model_dir}\ntask: squad\noutput_dir: {out}\n"
        "train_size: 4\neval_size: 3\nmax_new_tokens: 4\nbatch_size: 4\nnum_train_epochs: 1\n"
        "per_device_train_batch_size: 2\nmax_length: 512\nmethods: [base, sft]\nseeds: [3]\n"
        "tune_learning_rates: [1.0e-3, 1.0e-2]\ntune_epochs: [1, 2]\ntune_size: 5\nlogprob_analysis: false\n"
    )
    r = subprocess.run([sys.executable, "-m", "s3ft.cli", "compare", str(recipe)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads((out / "compare.json").read_text())
    t = res["tuning"]
    assert [(x["learning_rate"], x["num_train_epochs"]) for x in t["trials"]][:2] == [(1e-3, 1.0), (1e-2, 1.0)]
    assert len(t["trials"]) == 3 and all(x["accuracy"]["n"] == 5 for x in t["trials"])  # tune_size of the 119
    assert res["hyperparameters"]["learning_rate"] == t["chosen"]["learning_rate"]
    assert res["hyperparameters"]["num_train_epochs"] == t["chosen"]["num_train_epochs"]
    assert (out / "tune").is_dir() and "How the learning rate and epochs were chosen" in (out / "report" / "report.md").read_text()
    # the chosen trial is seed 3's SFT run: copied, not trained again, and accepted by its fingerprint
    ch = t["chosen"]
    trial = out / "tune" / f"lr{ch['learning_rate']:g}-epochs{ch['num_train_epochs']:g}" / "sft" / "model"
    seed_model = out / "seed-3" / "sft" / "model"
    assert (seed_model / "adapter_model.safetensors").read_bytes() == (trial / "adapter_model.safetensors").read_bytes()
    assert "copied from" in r.stdout and "train (sft):" not in r.stdout.split("tune: chose")[1]
    # compute time: finished stages summed per part; the copied trial counts once (under tuning)
    secs = res["stage_seconds"]
    assert set(secs) == {"shared", "tune", "seed-3"} and all(v > 0 for v in secs.values())
    from s3ft.compare import stage_seconds
    seed_train = json.loads((out / "seed-3" / "manifest.json").read_text())["stages"]
    assert seed_train["train.sft"].get("copied_from")
    assert stage_seconds(out) == secs
    assert "compute time" in (out / "report" / "report.md").read_text()


def test_compare_refuses_tuning_on_the_test_split_before_any_work(tmp_path, tiny_model_dir):
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, "-m", "s3ft.cli", "compare", "recipes/squad_compare_small.yaml", "--model",
                        str(tiny_model_dir), "--output_dir", str(out), "--tune_learning_rates", "1e-4,3e-4",
                        "--tune_split", "test"], capture_output=True, text=True, timeout=300,
                       cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert r.returncode == 2, r.stderr[-2000:]
    assert "tune_split must differ from eval_split" in r.stderr and "Traceback" not in r.stderr
    assert not (out / "own.jsonl").exists()


def test_parallel_seeds_match_a_sequential_run(tmp_path, tiny_model_dir, capsys):
    """scripts/compare_parallel.py: seed 1 does the shared pass and the tuning, seed 2 runs in a copy
    with the same tuning (tune_seed); merged, a plain sequential `s3ft compare` finds every stage done."""
    import os
    from pathlib import Path

    recipe = tmp_path / "c.yaml"
    out = tmp_path / "cmp"
    recipe.write_text(
        f"model: {tiny_model_dir}\ntask: squad\noutput_dir: {out}\n"
        "train_size: 4\neval_size: 3\nmax_new_tokens: 4\nbatch_size: 4\nnum_train_epochs: 1\n"
        "per_device_train_batch_size: 2\nmax_length: 512\nmethods: [base, sft, s3ft]\nseeds: [1, 2]\n"
        "tune_learning_rates: [1.0e-3, 1.0e-2]\ntune_size: 4\nlogprob_analysis: false\n"
    )
    script = Path(__file__).resolve().parents[1] / "scripts" / "compare_parallel.py"
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    r = subprocess.run([sys.executable, str(script), str(recipe)], capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "starting seeds [2]" in r.stdout
    res = json.loads((out / "compare.json").read_text())
    assert set(res["per_seed"]) == {"1", "2"} and len(res["tuning"]["trials"]) == 2
    assert (out / "seed-2" / "s3ft" / "model" / "adapter_config.json").exists() and not (tmp_path / "cmp-seed2").exists()
    log2 = (tmp_path / "cmp.seed2.log").read_text()
    assert "tune: lr" in log2 and "train (sft):" not in log2.split("seed 2: training")[0]  # tuning reused, not redone
    # a sequential run over the merged directory trains and evaluates nothing again
    rc, stdout, stderr = cli_here(capsys, "compare", recipe)  # in this process: no second interpreter to start
    assert rc == 0, stderr[-4000:]
    assert "rows, LoRA" not in stdout and "examples to answer" not in stdout, stdout[-3000:]
    assert "train.sft: up to date" in stdout and "eval.s3ft: up to date" in stdout
    assert json.loads((out / "compare.json").read_text())["per_seed"] == res["per_seed"]
    # the parallel script again over the finished study: its logs append, so it must wait for this
    # run's own marker, and it redoes nothing
    r3 = subprocess.run([sys.executable, str(script), str(recipe)], capture_output=True, text=True, timeout=900, env=env)
    assert r3.returncode == 0, r3.stdout[-3000:] + r3.stderr[-3000:]
    assert "rows, LoRA" not in (tmp_path / "cmp.seed2.log").read_text().split("seed 2: training")[-1]
    assert json.loads((out / "compare.json").read_text())["per_seed"] == res["per_seed"]


def test_paired_scores_on_general_benchmarks(tmp_path):
    """The general-benchmark paired comparison: mean over benchmarks of the per-question score
    differences (matched by row), a bootstrap CI around it; rows one side lacks are left out."""
    from s3ft.compare import general_scores, refresh_report
    from s3ft.evaluation import paired_scores

    a = {"x": {i: 1.0 for i in range(100)}, "y": {i: 0.5 for i in range(50)}}
    b = {"x": {i: float(i < 60) for i in range(100)}, "y": {i: 0.5 for i in range(60)}, "z": {0: 1.0}}
    r = paired_scores(a, b)
    assert r["benchmarks"] == ["x", "y"] and r["n"] == 150
    assert r["diff"] == 20.0  # (40 - 0) / 2 points
    assert r["ci95"][0] < 20.0 < r["ci95"][1] and r["ci95"][1] - r["ci95"][0] < 20
    same = paired_scores(b, b)
    assert same["diff"] == 0.0 and same["ci95"] == [0.0, 0.0]
    assert paired_scores(a, {"w": {0: 1.0}}) == {"n": 0, "benchmarks": []}

    # refresh_report: paired comparisons recomputed from the files a finished run kept
    root = tmp_path / "run"
    def write(folder, rows, name):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for q in ("base", "sft", "s3ft"):
        run = root if q == "base" else root / "seed-1"
        write(run / "eval", [{"id": i, "correct": (i % 2 == 0) if q != "base" else i < 2} for i in range(6)], q)
        write(run / "general" / q, [{"row": i, "score": float(q == "s3ft" or i < 3)} for i in range(10)], "arc_easy")
    assert general_scores(root / "seed-1", "s3ft") == {"arc_easy": {i: 1.0 for i in range(10)}}
    (root / "compare.json").write_text(json.dumps({"methods": ["base", "sft", "s3ft"], "seeds": [1], "per_seed": {"1": {}}}))
    refresh_report(root)
    paired = json.loads((root / "compare.json").read_text())["per_seed"]["1"]["paired"]
    assert paired["s3ft_vs_sft"]["general"]["diff"] == 70.0 and paired["sft_vs_base"]["general"]["diff"] == 0.0
    assert paired["s3ft_vs_base"]["in_domain"]["n"] == 6
    assert "S3FT vs SFT | general" in (root / "report" / "report.md").read_text()


def test_copy_training_copies_a_finished_run_with_its_record_and_nothing_else(tmp_path):
    """copy_training: a finished run (model, kept epochs, metrics) is copied with its stage record;
    an unfinished one, one already in the destination, or one whose weights were pruned is not."""
    from s3ft.compare import comparison_run_kept_epochs, copy_training, remake_pruned
    from s3ft.config import load_config
    from s3ft.models import PrunedModelError
    from s3ft.runs import RunDir

    src, dst = RunDir(tmp_path / "seed-1"), RunDir(tmp_path / "sweep")
    for folder in ("sft/model", "sft/epochs/epoch-1"):
        (src.path / folder).mkdir(parents=True)
        (src.path / folder / "adapter_config.json").write_text("{}")
        (src.path / folder / "adapter_model.safetensors").write_bytes(b"w")
    (src.path / "sft" / "train_metrics.json").write_text("{}")
    copy_training(src, dst, "sft", "test")
    assert not (dst.path / "sft").exists()  # no record: not finished
    src.set_stage("train.sft", status="running", fingerprint="fp")
    copy_training(src, dst, "sft", "test")
    assert not (dst.path / "sft").exists()
    src.set_stage("train.sft", status="done", fingerprint="fp")
    (src.path / "sft" / "epochs" / "epoch-1" / "pruned.json").write_text('{"fingerprint": "x"}')
    (src.path / "sft" / "epochs" / "epoch-1" / "adapter_model.safetensors").unlink()
    copy_training(src, dst, "sft", "test")
    assert not (dst.path / "sft").exists()  # a kept epoch is pruned: trained again rather than copied
    (src.path / "sft" / "epochs" / "epoch-1" / "adapter_model.safetensors").write_bytes(b"w")
    copy_training(src, dst, "sft", "test")
    rec = dst.stage_record("train.sft")
    assert rec["fingerprint"] == "fp" and rec["copied_from"] == str(src.path / "sft")
    assert (dst.path / "sft" / "epochs" / "epoch-1" / "adapter_model.safetensors").read_bytes() == b"w"
    assert (dst.path / "sft" / "train_metrics.json").exists()
    dst.set_stage("train.sft", status="done", fingerprint="mine")
    copy_training(src, dst, "sft", "test")
    assert dst.stage_record("train.sft")["fingerprint"] == "mine"  # never over a run of its own

    # which per-seed runs are sweep runs too
    base = {"sweep_learning_rates": [2e-4, 1e-3], "sweep_epochs": [1, 2], "learning_rate": 2e-4, "num_train_epochs": 2,
            "seeds": [1], "tune_split": "validation"}
    assert comparison_run_kept_epochs(load_config(None, base), 1, False) == (1,)
    assert comparison_run_kept_epochs(load_config(None, base), 1, True) is None  # tuned: the trial is copied
    assert comparison_run_kept_epochs(load_config(None, {**base, "num_train_epochs": 1}), 1, False) is None
    assert comparison_run_kept_epochs(load_config(None, {**base, "learning_rate": 5e-4}), 1, False) is None
    assert comparison_run_kept_epochs(load_config(None, {**base, "sweep_seeds": [2]}), 1, False) is None

    # remake_pruned: a pruned folder of the run is removed once; one outside the run is not touched
    calls = []

    def work(path):
        def run():
            calls.append(path)
            if (path / "pruned.json").exists() or not path.exists():
                raise PrunedModelError(path)
            return "done"
        return run

    inside = tmp_path / "sweep" / "x"
    inside.mkdir()
    (inside / "pruned.json").write_text("{}")
    with pytest.raises(PrunedModelError):  # removed, still needed (nothing makes it): no second removal
        remake_pruned(tmp_path, work(inside))
    assert not inside.exists() and len(calls) == 2
    outside = tmp_path.parent / f"{tmp_path.name}-other"
    outside.mkdir()
    (outside / "pruned.json").write_text("{}")
    with pytest.raises(PrunedModelError):
        remake_pruned(tmp_path, work(outside))
    assert (outside / "pruned.json").exists()
