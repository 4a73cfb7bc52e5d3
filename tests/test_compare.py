"""`s3ft compare` end to end on the tiny model: one shared data pass, every method trained per
seed with the same hyperparameters, evaluated, compare.json and the report written."""
import json
import subprocess
import sys


def test_compare_end_to_end(tmp_path, tiny_model_dir):
    recipe = tmp_path / "c.yaml"
    out = tmp_path / "cmp"
    recipe.write_text(
        f"model: {tiny_model_dir}\ntask: squad\noutput_dir: {out}\n"
        "train_size: 6\neval_size: 4\nmax_new_tokens: 6\nbatch_size: 4\nnum_train_epochs: 1\n"
        "per_device_train_batch_size: 3\nmax_length: 512\nlearning_rate: 1.0e-3\n"
        "methods: [base, sft, ssr, sdft, s3ft]\nseeds: [1, 2]\n"
        "general_benchmarks: [arc_easy]\ngeneral_limit: 4\ncross_tasks: [gsm8k]\ncross_task_size: 2\n"
    )
    r = subprocess.run([sys.executable, "-m", "s3ft.cli", "compare", str(recipe)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads((out / "compare.json").read_text())
    assert res["seeds"] == [1, 2] and set(res["per_seed"]) == {"1", "2"}
    for seed in ("1", "2"):
        per = res["per_seed"][seed]
        assert set(per["mix"]) == {"sft", "ssr", "sdft", "s3ft"}
        assert per["mix"]["sft"]["counts"]["gold"] == 6
        assert set(per["in_domain"]) == {"base", "sft", "ssr", "sdft", "s3ft"}
        assert all(a["n"] == 4 for a in per["in_domain"].values())
        assert set(per["cross_task"]["gsm8k"]) == {"base", "sft", "ssr", "sdft", "s3ft"}
        assert all(g["arc_easy"]["n"] == 4 for g in per["general"].values())
        assert per["paired"]["s3ft_vs_sft"]["in_domain"]["n"] == 4
        assert (out / f"seed-{seed}" / "s3ft" / "model" / "adapter_config.json").exists()
    # one shared pass: paraphrases cover every example (sdft asked for), generated once
    assert len((out / "paraphrase.jsonl").read_text().splitlines()) == 6
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["paraphrase"]["rows"] == 6
    # logprob analysis: one gold row per training example
    assert len(res["logprob"]["gold"]) == 6
    assert (out / "report" / "report.html").exists() and (out / "report" / "report.md").exists()
    # two seeds trained different adapters with identical hyperparameters
    a = (out / "seed-1" / "sft" / "model" / "adapter_model.safetensors").read_bytes()
    b = (out / "seed-2" / "sft" / "model" / "adapter_model.safetensors").read_bytes()
    assert a != b
    # rerun: nothing to do, same results
    r2 = subprocess.run([sys.executable, "-m", "s3ft.cli", "compare", str(recipe)], capture_output=True, text=True, timeout=900)
    assert r2.returncode == 0, r2.stderr[-4000:]
    assert "train: up to date" in r2.stdout and "general base: up to date" in r2.stdout
    res2 = json.loads((out / "compare.json").read_text())
    assert res2["per_seed"] == res["per_seed"]


def _fake_trials(monkeypatch, scores):
    """stage_train / _eval_model replaced: the validation accuracy of a candidate is scores[(lr, epochs)]."""
    from s3ft import compare, pipeline

    calls = []

    def fake_train(ts, method):
        calls.append((ts.cfg.learning_rate, ts.cfg.num_train_epochs, ts.cfg.seed, method))
        return f"/models/{ts.cfg.learning_rate}-{ts.cfg.num_train_epochs}"

    def fake_eval(ts, name, model, fp, run):
        assert ts.cfg.eval_split == "validation" and ts.cfg.eval_size is None
        acc = scores[(ts.cfg.learning_rate, ts.cfg.num_train_epochs)]
        return {"k": acc, "n": 100, "accuracy": float(acc), "ci95": [acc - 5.0, acc + 5.0]}

    monkeypatch.setattr(pipeline, "stage_train", fake_train)
    monkeypatch.setattr(pipeline, "_eval_model", fake_eval)
    monkeypatch.setattr(compare, "file_fingerprint", lambda p: str(p))
    return calls


def test_tune_coordinate_search_and_ties(monkeypatch, tmp_path):
    from s3ft.compare import tune
    from s3ft.config import S3FTConfig
    from s3ft.pipeline import Session

    scores = {(1e-4, 1.0): 40, (3e-4, 1.0): 47, (1e-3, 1.0): 47, (3e-4, 2.0): 50, (3e-4, 3.0): 50}
    calls = _fake_trials(monkeypatch, scores)
    cfg = S3FTConfig(output_dir=str(tmp_path), tune_learning_rates=["1e-4", "3e-4", "1e-3"], tune_epochs=["1", "2", "3"])
    out = tune(Session(cfg), seed=7)
    # learning rates at the first epoch count, then epochs at the best rate; ties -> earlier candidate
    assert [(c[0], c[1]) for c in calls] == [(1e-4, 1.0), (3e-4, 1.0), (1e-3, 1.0), (3e-4, 2.0), (3e-4, 3.0)]
    assert all(c[2] == 7 and c[3] == "sft" for c in calls)
    assert out["chosen"] == {"learning_rate": 3e-4, "num_train_epochs": 2.0}
    assert len(out["trials"]) == 5 and out["split"] == "validation"


def test_tune_refuses_the_test_split_and_bad_values(tmp_path):
    import pytest

    from s3ft.compare import tune
    from s3ft.config import ConfigError, S3FTConfig
    from s3ft.pipeline import Session

    assert tune(Session(S3FTConfig(output_dir=str(tmp_path))), seed=1) is None  # nothing asked
    with pytest.raises(ConfigError, match="tune_split"):
        tune(Session(S3FTConfig(output_dir=str(tmp_path), tune_learning_rates=["1e-4"], tune_split="test")), seed=1)
    with pytest.raises(ConfigError, match="tune_epochs"):
        tune(Session(S3FTConfig(output_dir=str(tmp_path), tune_epochs=["one"])), seed=1)


def test_compare_with_tuning_applies_the_choice(tmp_path, tiny_model_dir):
    """Real tiny-model run: two learning rates tried on validation, the chosen one used for the methods."""
    recipe = tmp_path / "c.yaml"
    out = tmp_path / "cmp"
    recipe.write_text(
        f"model: {tiny_model_dir}\ntask: squad\noutput_dir: {out}\n"
        "train_size: 4\neval_size: 3\nmax_new_tokens: 4\nbatch_size: 4\nnum_train_epochs: 1\n"
        "per_device_train_batch_size: 2\nmax_length: 512\nmethods: [base, sft]\nseeds: [3]\n"
        "tune_learning_rates: [1.0e-3, 1.0e-2]\ntune_epochs: [1, 2]\nlogprob_analysis: false\n"
    )
    r = subprocess.run([sys.executable, "-m", "s3ft.cli", "compare", str(recipe)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads((out / "compare.json").read_text())
    t = res["tuning"]
    assert [(x["learning_rate"], x["num_train_epochs"]) for x in t["trials"]][:2] == [(1e-3, 1.0), (1e-2, 1.0)]
    assert len(t["trials"]) == 3 and all(x["accuracy"]["n"] == 119 for x in t["trials"])
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
