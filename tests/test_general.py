"""s3ft.general: lm-eval general-ability benchmarks over the bundled data, on the tiny random
Llama (CPU). One module-scoped run scores every benchmark on 4 seeded questions; the adapter test
reuses it to check that a LoRA adapter is really applied."""
from __future__ import annotations

import collections
import json

import pytest

pytest.importorskip("lm_eval")

from s3ft import general  # noqa: E402
from s3ft.general import BENCHMARK_NAMES, SOURCES, evaluate_general, select_rows  # noqa: E402

LIMIT = 4


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("general")
    res = evaluate_general(str(tiny_model_dir), list(BENCHMARK_NAMES), LIMIT, 0, out, batch_size=8, device="cpu")
    return res, out


def test_every_benchmark_runs(tiny_run):
    res, out = tiny_run
    assert list(res) == list(BENCHMARK_NAMES)
    summary = json.loads((out / "general.json").read_text())
    assert summary["limit"] == LIMIT and summary["seed"] == 0 and summary["lm_eval_version"]
    expected_metric = {"hellaswag": "acc_norm", "arc_easy": "acc_norm", "arc_challenge": "acc_norm"}
    for name, r in res.items():
        assert r["metric"] == expected_metric.get(name, "acc"), name
        assert 0.0 <= r["value"] <= 100.0, (name, r["value"])
        assert r["n"] == LIMIT, name
        assert r["rows"] == select_rows(general.BENCHMARKS[name].source, LIMIT, 0), name
        lines = [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]
        assert [x["row"] for x in lines] == r["rows"], name
        assert [x["doc_id"] for x in lines] == list(range(LIMIT))
        if name == "truthfulqa_mc2":
            assert all(x["correct"] is None and 0.0 <= x["score"] <= 1.0 + 1e-9 for x in lines)
        else:  # the per-question flags add up to the reported accuracy
            assert all(isinstance(x["correct"], bool) for x in lines)
            assert r["value"] == pytest.approx(100.0 * sum(x["correct"] for x in lines) / LIMIT)
        assert summary["benchmarks"][name]["value"] == r["value"]
    assert res["mmlu"]["rows"] == res["mmlu_5shot"]["rows"]  # same questions, 0- and 5-shot
    assert res["mmlu_5shot"]["num_fewshot"] == 5


def test_adapter_folder(tiny_model_dir, tiny_run, tmp_path):
    """A PEFT adapter folder is evaluated as base + adapter (lm-eval's peft=): with non-zero
    LoRA weights, the answers' loglikelihoods move away from the base model's."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    adapter_dir = tmp_path / "adapter"
    get_peft_model(base, cfg).save_pretrained(adapter_dir)
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)

    out = tmp_path / "out"
    res = evaluate_general(str(adapter_dir), ["winogrande"], LIMIT, 0, out, device="cpu")
    summary = json.loads((out / "general.json").read_text())
    assert summary["model_args"]["peft"] == str(adapter_dir)
    assert summary["model_args"]["pretrained"] == str(tiny_model_dir)
    r = res["winogrande"]
    assert r["n"] == LIMIT and 0.0 <= r["value"] <= 100.0
    base_res, base_out = tiny_run
    assert r["rows"] == base_res["winogrande"]["rows"]
    lines = [json.loads(x) for x in (out / "winogrande.jsonl").read_text().splitlines()]
    base_lines = [json.loads(x) for x in (base_out / "winogrande.jsonl").read_text().splitlines()]
    assert [x["prompt_hash"] for x in lines] == [x["prompt_hash"] for x in base_lines]
    diffs = [abs(a - b) for x, y in zip(lines, base_lines) for a, b in zip(x["loglikelihoods"], y["loglikelihoods"])]
    assert len(diffs) > LIMIT and max(diffs) > 0.01  # the adapter changed the model's scores


def test_resume_scores_only_the_benchmarks_left(tiny_model_dir, tiny_run, tmp_path, monkeypatch):
    """An interrupted evaluation resumes per benchmark: those with a result file are read back,
    the rest scored (to the same numbers); without resume everything is scored again."""
    import shutil

    import lm_eval

    base_res, base_out = tiny_run
    out = tmp_path / "out"
    out.mkdir()
    for name in ("arc_easy", "winogrande"):  # as an interrupted run left them: arc_easy done, winogrande not
        shutil.copy(base_out / f"{name}.jsonl", out / f"{name}.jsonl")
    (out / "arc_easy.result.json").write_text(json.dumps({**base_res["arc_easy"], "value": 12.5}))
    scored = []
    real = lm_eval.simple_evaluate
    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda **kw: scored.append(kw["tasks"]) or real(**kw))
    res = evaluate_general(str(tiny_model_dir), ["arc_easy", "winogrande"], LIMIT, 0, out, device="cpu", resume=True)
    assert scored == [[general.BENCHMARKS["winogrande"].task]]
    assert res["arc_easy"]["value"] == 12.5  # read back, not scored again
    assert res["winogrande"]["value"] == base_res["winogrande"]["value"]
    assert json.loads((out / "winogrande.result.json").read_text())["value"] == base_res["winogrande"]["value"]
    assert json.loads((out / "general.json").read_text())["benchmarks"]["arc_easy"]["value"] == 12.5
    scored.clear()
    res = evaluate_general(str(tiny_model_dir), ["arc_easy"], LIMIT, 0, out, device="cpu")
    assert len(scored) == 1 and res["arc_easy"]["value"] == base_res["arc_easy"]["value"]


@pytest.mark.parametrize("source", list(SOURCES))
def test_subset_is_seeded_and_deterministic(source):
    a, b, c = select_rows(source, 8, 0), select_rows(source, 8, 0), select_rows(source, 8, 1)
    assert a == b and a != c
    assert len(a) == 8 == len(set(a)) and a == sorted(a)
    n = len(general._rows(SOURCES[source].file))
    assert all(0 <= i < n for i in a)
    assert select_rows(source, None, 0) == list(range(n)) == select_rows(source, n + 5, 3)


def test_mmlu_subset_is_stratified_by_subject():
    rows = general._rows(SOURCES["mmlu"].file)
    sizes = collections.Counter(r["subject"] for r in rows)
    for seed in (0, 1):
        picked = collections.Counter(rows[i]["subject"] for i in select_rows("mmlu", 100, seed))
        assert sum(picked.values()) == 100 and len(picked) >= 40  # the first 100 rows: 1 subject
        for subject, k in picked.items():  # proportional: floor or ceil of the subject's share
            assert k <= -(-100 * sizes[subject] // len(rows)), subject
        for subject, size in sizes.items():
            assert picked.get(subject, 0) >= 100 * size // len(rows), subject
    small = collections.Counter(rows[i]["subject"] for i in select_rows("mmlu", 8, 0))
    assert len(small) == 8  # no subject holds 1/8 of MMLU: 8 different subjects


def test_unknown_benchmark_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown general benchmark"):
        general.check_benchmarks(["mmlu", "gsm8k"])
    assert general.check_benchmarks("mmlu,hellaswag,mmlu") == ["mmlu", "hellaswag"]
    assert general.check_benchmarks(["all"]) == list(BENCHMARK_NAMES)


def test_mmlu_requests_equal_the_standard_per_subject_tasks(tmp_path):
    """s3ft_mmlu (0-shot) and s3ft_mmlu_5shot, one task over all subjects, build the same
    requests (context + continuation) as lm-eval's own mmlu_<subject> tasks with 0 and 5 shots,
    here fed the same rows through `dataset_path: json`."""
    import yaml

    rows, dev = general._rows(SOURCES["mmlu"].file), general._rows(general.MMLU_DEV)
    prepared = general.prepare_tasks(["mmlu", "mmlu_5shot"], 12, 0, tmp_path)
    picked = prepared["mmlu"]["rows"]
    subjects = sorted({rows[i]["subject"] for i in picked})
    std = tmp_path / "standard"
    std.mkdir()
    for s in subjects:
        test_rows = [dict(rows[i], s3ft_row=i) for i in picked if rows[i]["subject"] == s]
        dev_rows = [dict(r, s3ft_row=j) for j, r in enumerate(dev) if r["subject"] == s]
        for split, part in (("test", test_rows), ("dev", dev_rows)):
            (std / f"{s}_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
        cfg = {
            "include": str(general.lm_eval_tasks_dir() / "mmlu" / "default" / f"mmlu_{s}.yaml"),
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {
                "data_files": {"test": str(std / f"{s}_test.jsonl"), "dev": str(std / f"{s}_dev.jsonl")},
                "cache_dir": str(tmp_path / "hf_cache"),
            },
        }
        (tmp_path / "tasks" / f"standard_{s}.yaml").write_text(yaml.safe_dump(cfg))
    tasks = general.task_manager(tmp_path).load(["s3ft_mmlu", "s3ft_mmlu_5shot"] + [f"mmlu_{s}" for s in subjects])["tasks"]

    def requests(task, num_fewshot: int) -> dict[int, list[tuple[str, str]]]:
        task.set_config(key="num_fewshot", value=num_fewshot)
        task.build_all_requests(rank=0, world_size=1)
        out: dict[int, list] = collections.defaultdict(list)
        for inst in task.instances:
            out[inst.doc["s3ft_row"]].append(tuple(inst.arguments))
        return out

    for ours, shots in (("s3ft_mmlu", 0), ("s3ft_mmlu_5shot", 5)):
        mine = requests(tasks[ours], 0)
        standard: dict[int, list] = {}
        for s in subjects:
            standard.update(requests(tasks[f"mmlu_{s}"], shots))
        assert sorted(mine) == picked == sorted(standard)
        for i in picked:
            assert mine[i] == standard[i], (ours, i)
        assert len(mine[picked[0]]) == 4
        assert mine[picked[0]][0][0].count("\nAnswer:") == shots + 1


def test_missing_task_dependency_fails_in_preflight(tiny_model_dir, tmp_path):
    """A general benchmark whose lm-eval task cannot be built (nltk missing: TruthfulQA's hooks
    import rouge_score, which needs it) stops `preflight`, before any generation, naming the
    benchmark; the same run without that benchmark passes. A fresh interpreter, because lm-eval
    keeps the hook modules it imported."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['nltk'] = None\n"
        "from s3ft.config import S3FTConfig\n"
        "from s3ft.pipeline import preflight\nfrom s3ft.session import Session\n"
        "for benches in (['arc_easy'], ['arc_easy', 'truthfulqa_mc2']):\n"
        f"    cfg = S3FTConfig(model={str(tiny_model_dir)!r}, output_dir={str(tmp_path / 'run')!r}, train_size=2, eval_size=2,\n"
        "                     general_benchmarks=benches, general_limit=2)\n"
        "    preflight(Session(cfg))\n"
        "    print('passed', benches, flush=True)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "passed ['arc_easy']\n" in p.stdout, p.stderr[-3000:]
    assert p.returncode != 0 and "passed ['arc_easy', 'truthfulqa_mc2']" not in p.stdout
    assert "RuntimeError: general benchmark truthfulqa_mc2: lm-eval cannot build its task" in p.stderr
    assert "nltk" in p.stderr.splitlines()[-1]
    assert not (tmp_path / "run" / "own.jsonl").exists()
