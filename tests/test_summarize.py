"""The run's summary (stages/summarize.py): metrics.json with the general benchmarks and their
change from the base model, and the headline numbers logged to the trackers of `report_to` -
TensorBoard here, offline, read back from its event files."""
from __future__ import annotations

import json

import pytest

from s3ft.config import load_config
from s3ft.runs import RunDir
from s3ft.stages.summarize import summarize

MIX = {"n": 10, "counts": {"self": 2, "paraphrase": 3, "gold": 5}, "percent": {"self": 20.0, "paraphrase": 30.0, "gold": 50.0}}


def _run(tmp_path) -> RunDir:
    run = RunDir(tmp_path / "my-task")
    run.path.mkdir()
    run.set_stage("build.s3ft", status="done", mix=MIX)
    run.set_stage("train.s3ft", status="done", global_step=7, train_loss=1.25)
    run.set_stage("eval.base", status="done", accuracy={"k": 3, "n": 10, "accuracy": 30.0, "ci95": [10.0, 60.0]})
    run.set_stage("eval.s3ft", status="done", accuracy={"k": 5, "n": 10, "accuracy": 50.0, "ci95": [20.0, 80.0]})
    run.set_stage("general.base", status="done", results={"arc_easy": {"metric": "acc", "value": 0.5},
                                                          "mmlu": {"metric": "acc", "value": 0.4}})
    run.set_stage("general.s3ft", status="done", results={"arc_easy": {"metric": "acc", "value": 0.45},
                                                          "mmlu": {"metric": "acc", "value": 0.42}})
    return run


def _scalars(folder) -> dict[str, tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: (acc.Scalars(tag)[-1].step, acc.Scalars(tag)[-1].value) for tag in acc.Tags()["scalars"]}


def test_summary_metrics_reach_tensorboard(tmp_path, monkeypatch):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    run = _run(tmp_path)
    cfg = load_config(None, {"output_dir": str(run.path), "method": "s3ft", "report_to": "tensorboard"})
    summarize(run, run, cfg, "s3ft", "qa")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["general"] == {"base": {"arc_easy": 0.5, "mmlu": 0.4}, "s3ft": {"arc_easy": 0.45, "mmlu": 0.42}}
    assert metrics["general_change"] == pytest.approx({"arc_easy": -0.05, "mmlu": 0.02, "mean": -0.015})
    assert "## General benchmarks" in (run / "summary.md").read_text()
    got = _scalars(run / "tensorboard" / "my-task.s3ft")
    want = {"summary/mix/self_percent": 20.0, "summary/mix/paraphrase_percent": 30.0, "summary/mix/gold_percent": 50.0,
            "summary/mix/rows": 10.0, "summary/in_domain/base": 30.0, "summary/in_domain/s3ft": 50.0,
            "summary/in_domain/change": 20.0, "summary/general/arc_easy/base": 0.5, "summary/general/arc_easy/s3ft": 0.45,
            "summary/general/mmlu/base": 0.4, "summary/general/mmlu/s3ft": 0.42,
            "summary/general_change/arc_easy": -0.05, "summary/general_change/mmlu": 0.02,
            "summary/general_change/mean": -0.015}
    assert set(got) == set(want)
    for tag, value in want.items():
        assert got[tag] == (7, pytest.approx(value, abs=1e-6)), tag  # at the training's last step


def test_no_tracker_no_events(tmp_path, capsys):
    run = _run(tmp_path)
    summarize(run, run, load_config(None, {"output_dir": str(run.path), "method": "s3ft"}), "s3ft", "qa")
    assert not (run / "tensorboard").exists() and "sent to" not in capsys.readouterr().out
