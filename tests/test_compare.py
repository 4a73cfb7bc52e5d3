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
