"""`s3ft train` under a multi-process launch (torchrun / accelerate launch), on CPU with gloo.

The same recipe trains the tiny model on a fixed 16-row file in three ways:
- one process, per_device_train_batch_size 4;
- `torchrun --nproc_per_node 2`, per_device_train_batch_size 2 (effective batch 4 as well);
- `accelerate launch --config_file configs/accelerate/cpu_2proc.yaml`, per_device_train_batch_size 2.
The per-step losses must agree, and only rank 0 may have written the run directory (the data
stages ran once, the manifest records each stage once, no lock is left behind)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
N_ROWS = 16
STEPS = 8  # 16 rows / effective batch 4 x 2 epochs
# Same data order (the seeded sampler's permutation, cut into the same global batches of 4), same
# initial weights (seeded LoRA init; DDP also broadcasts rank 0's), no dropout, and the loss is
# normalised by the supervised tokens of the whole global batch on both sides, so the two runs
# compute the same numbers in a different order (per-rank padding, gloo all-reduce of the
# gradients). Measured: |difference| <= 1e-6 on losses near 10 over 8 steps. A tolerance of 1e-4
# leaves ~100x margin for other CPUs / BLAS builds and still fails on a real divergence: a
# different batch composition already moves the first loss by 7e-3 and later ones by up to 0.3;
# another seed's data order by 1e-2.
LOSS_TOL = 1e-4


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def recipe(tiny_model_dir, tmp_path_factory) -> Path:
    """A jsonl task on the tiny model. method s3ft, so rank 0 also runs generation, judging and
    paraphrasing (max_new_tokens 4) before anyone trains."""
    d = tmp_path_factory.mktemp("mp-data")
    rows = [{"id": f"r{i}", "prompt": f"{i}+{i}?", "response": f"Answer: {2 * i}"} for i in range(N_ROWS)]
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    recipe = d / "recipe.yaml"
    recipe.write_text(
        f"method: s3ft\nmodel: {tiny_model_dir}\ntask: jsonl\n"
        f"data_files: {{train: {d / 'train.jsonl'}, test: {d / 'test.jsonl'}}}\n"
        "id_field: id\njudge: qa\nsystem_prompt: Be brief.\nmax_new_tokens: 4\ndevice: cpu\n"
        # float32, saved activations too: in bf16 (autocast, or activations packed for backward)
        # a different per-rank batch rounds differently - measured up to 8e-4 apart - and the
        # check is for the sums
        "dtype: float32\nsaved_activations: float32\n"
        "use_peft: true\nlora_dropout: 0.0\n"  # dropout masks would differ between 1 and 2 processes
        "learning_rate: 1.0e-2\nnum_train_epochs: 2\nmax_length: 128\nlogging_steps: 1\nsave_steps: 100\nseed: 123\n"
    )
    return recipe


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               ACCELERATE_DISABLE_RICH="1")
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only: both processes are on this machine
    return env


def _run(cmd: list[str]) -> str:
    """Run a launcher in its own process group, so a timeout ends its workers too."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish in 240 s:\n{log[-4000:]}")
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{log[-4000:]}"
    return log


def _train_cmd(recipe: Path, out: Path, batch: int) -> list[str]:
    return ["-m", "s3ft.cli", "train", str(recipe), "--output_dir", str(out), "--per_device_train_batch_size", str(batch)]


def _losses(out: Path) -> dict[int, float]:
    lines = (out / "s3ft" / "train_log.jsonl").read_text().splitlines()
    return {e["step"]: e["loss"] for e in map(json.loads, lines) if "loss" in e}


def _check_rank0_only_wrote(out: Path, log: str) -> None:
    assert log.count("own answers to write") == 1  # generation ran once, on rank 0
    assert log.count("paraphrase (scope failed):") == 1
    for name in ("own.jsonl", "own_judged.jsonl", "paraphrase.jsonl", "train.s3ft.jsonl"):
        ids = [json.loads(line)["id"] for line in (out / name).read_text().splitlines()]
        assert sorted(ids) == sorted(f"r{i}" for i in range(N_ROWS)), name  # every row once, no duplicates
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert all(rec["status"] == "done" for rec in stages.values()), stages
    train = stages["train.s3ft"]
    assert train["global_step"] == STEPS and train["train_samples"] == N_ROWS
    assert not (out / ".lock").exists()
    assert (out / "s3ft" / "model" / "adapter_model.safetensors").exists()
    assert json.loads((out / "s3ft" / "train_metrics.json").read_text())["global_step"] == STEPS


@pytest.fixture(scope="module")
def one_process(recipe, tmp_path_factory) -> dict[int, float]:
    out = tmp_path_factory.mktemp("mp-run") / "one"
    _run([sys.executable] + _train_cmd(recipe, out, 4))
    losses = _losses(out)
    assert sorted(losses) == list(range(1, STEPS + 1))
    return losses


def _assert_same_losses(got: dict[int, float], want: dict[int, float]) -> None:
    assert sorted(got) == sorted(want)
    diffs = {step: abs(got[step] - want[step]) for step in want}
    assert max(diffs.values()) <= LOSS_TOL, {"two_processes": got, "one_process": want}
    assert want[STEPS] < want[1] - 0.1  # training moved the loss: the comparison is not of constants


def test_torchrun_two_processes_match_one(recipe, one_process, tmp_path):
    out = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port())] + _train_cmd(recipe, out, 2)
    log = _run(cmd)
    _check_rank0_only_wrote(out, log)
    _assert_same_losses(_losses(out), one_process)


def test_accelerate_launch_cpu_config_matches_one(recipe, one_process, tmp_path):
    out = tmp_path / "accel"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs" / "accelerate" / "cpu_2proc.yaml"),
           "--main_process_port", str(_free_port())] + _train_cmd(recipe, out, 2)
    log = _run(cmd)
    _check_rank0_only_wrote(out, log)
    _assert_same_losses(_losses(out), one_process)


def test_other_commands_refuse_multiple_processes(recipe, monkeypatch, capsys):
    """Only training is multi-process: the other commands say so instead of racing on the files."""
    from s3ft.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "s3ft run runs in one process" in err and "s3ft train" in err


def test_rundir_writes_nothing_on_other_ranks(tmp_path, monkeypatch):
    from s3ft.runs import RunDir

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    run = RunDir(tmp_path / "run")
    (run.path / "s3ft").mkdir(parents=True)
    with run.lock():
        run.update_manifest(config={"a": 1})
        with run.stage("train.s3ft", "fp", [run.path / "s3ft"], force=True) as info:
            info["x"] = 1
    assert (run.path / "s3ft").exists()  # not cleared: rank 0 does that
    assert sorted(p.name for p in run.path.iterdir()) == ["s3ft"]  # no manifest, no lock
