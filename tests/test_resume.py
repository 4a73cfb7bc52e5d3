"""Crash safety: `s3ft` killed with SIGKILL at many points and rerun until done writes exactly
the records of an uninterrupted run (nothing lost, nothing twice); SIGINT stops cleanly."""
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


STAGE_FILES = ("own.jsonl", "own_judged.jsonl", "paraphrase.jsonl", "train.s3ft.jsonl")


def recipe(tmp_path: Path, model: Path, out: Path) -> Path:
    r = tmp_path / f"{out.name}.yaml"
    # batch_size 1: every prompt is generated alone, so outputs cannot depend on which prompts
    # share a batch after a restart (padding changes logits by ~1e-5; ties could flip)
    r.write_text(f"model: {model}\ntask: squad\noutput_dir: {out}\ntrain_size: 16\nmax_new_tokens: 12\n"
                 "batch_size: 1\nparaphrase_scope: all\n")
    return r


def cmd(stage: str, rec: Path) -> list[str]:
    return [sys.executable, "-m", "s3ft.cli", stage, str(rec)]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_anywhere_then_resume_gives_identical_records(tmp_path, tiny_model_dir):
    ref_dir, crash_dir = tmp_path / "ref", tmp_path / "crash"
    r = subprocess.run(cmd("build", recipe(tmp_path, tiny_model_dir, ref_dir)), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]

    rec = recipe(tmp_path, tiny_model_dir, crash_dir)
    rng = random.Random(1234)
    # kill points: when a stage file reaches k rows (mid-stage), plus a few at random times
    targets = [("own.jsonl", rng.randint(1, 15)) for _ in range(3)] + [("own_judged.jsonl", 1)] + \
              [("paraphrase.jsonl", rng.randint(1, 15)) for _ in range(3)] + [("time", rng.uniform(0.5, 6)) for _ in range(3)]
    kills = []
    for what, at in targets:
        p = subprocess.Popen(cmd("build", rec), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        while p.poll() is None and time.time() - t0 < 120:
            if (what == "time" and time.time() - t0 >= at) or (what != "time" and count_lines(crash_dir / what) >= at):
                p.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        p.wait(timeout=60)
        kills.append((what, at, p.returncode, {f: count_lines(crash_dir / f) for f in STAGE_FILES}))
    assert sum(k[2] == -signal.SIGKILL for k in kills) >= 6, kills  # most runs really were killed
    assert any(0 < k[3]["own.jsonl"] < 16 for k in kills), kills  # some died mid-generation
    assert any(0 < k[3]["paraphrase.jsonl"] < 16 for k in kills), kills  # and mid-paraphrase
    r = subprocess.run(cmd("build", rec), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]

    for name in STAGE_FILES:
        got, want = rows(crash_dir / name), rows(ref_dir / name)
        ids = [x["id"] for x in got]
        assert len(ids) == len(set(ids)), f"{name}: duplicated records"
        assert {x["id"]: x for x in got} == {x["id"]: x for x in want}, name
    manifest = json.loads((crash_dir / "manifest.json").read_text())
    assert all(st["status"] == "done" for st in manifest["stages"].values())
    assert not (crash_dir / ".lock").exists()


def test_sigint_stops_cleanly_and_says_how_to_resume(tmp_path, tiny_model_dir):
    out = tmp_path / "int"
    rec = recipe(tmp_path, tiny_model_dir, out)
    # a shell's background job (`cmd &`, as CI may run the suite) starts with SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler: give the child the default disposition
    p = subprocess.Popen(cmd("generate", rec), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while count_lines(out / "own.jsonl") < 3 and time.time() - t0 < 120 and p.poll() is None:
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err[-2000:]
    assert "run the same command again to resume" in err
    assert "Traceback" not in err
    assert 3 <= count_lines(out / "own.jsonl") < 16
    assert not (out / ".lock").exists()
    r = subprocess.run(cmd("generate", rec), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0
    import re

    resumed = re.search(r"generate: (\d+) own answers to write \((\d+) already done\)", r.stdout)
    assert resumed and int(resumed.group(2)) >= 3 and int(resumed.group(1)) + int(resumed.group(2)) == 16, r.stdout
    assert len(rows(out / "own.jsonl")) == 16


def test_second_process_is_refused_while_first_runs(tmp_path, tiny_model_dir):
    out = tmp_path / "lock"
    rec = recipe(tmp_path, tiny_model_dir, out)
    p = subprocess.Popen(cmd("generate", rec), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while not (out / ".lock").exists() and time.time() - t0 < 120:
            time.sleep(0.01)
        r = subprocess.run(cmd("generate", rec), capture_output=True, text=True, timeout=120)
        if p.poll() is None:  # the first is still running: the second must have been refused
            assert r.returncode == 2
            assert f"in use by process {p.pid}" in r.stderr
    finally:
        p.kill()
        p.wait()


def test_sigkill_during_training_resumes_from_checkpoint(tmp_path, tiny_model_dir):
    """`s3ft train` killed after a checkpoint resumes from it and ends where an uninterrupted
    run ends (same steps, same losses within numerical tolerance)."""
    def rec(out):
        r = tmp_path / f"{out.name}.yaml"
        r.write_text(f"model: {tiny_model_dir}\ntask: squad\nmethod: sft\noutput_dir: {out}\ntrain_size: 16\n"
                     "per_device_train_batch_size: 2\nnum_train_epochs: 1\nsave_steps: 2\nlogging_steps: 1\n"
                     "learning_rate: 1.0e-3\nmax_length: 512\n")
        return r

    from s3ft.cli import main

    ref, crash = tmp_path / "ref", tmp_path / "crash"
    assert main(["train", str(rec(ref))]) == 0  # the uninterrupted run, in this process
    p = subprocess.Popen(cmd("train", rec(crash)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = crash / "sft" / "checkpoints" / "checkpoint-4" / "trainer_state.json"
    t0 = time.time()
    while not ckpt.exists() and p.poll() is None and time.time() - t0 < 240:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (crash / "sft" / "model" / "adapter_config.json").exists()
    r = subprocess.run(cmd("train", rec(crash)), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    st_ref = json.loads((ref / "manifest.json").read_text())["stages"]["train.sft"]
    st = json.loads((crash / "manifest.json").read_text())["stages"]["train.sft"]
    assert st["global_step"] == st_ref["global_step"] == 8
    assert st["resumed_from"] and "checkpoint-" in str(st["resumed_from"])
    def losses(d):
        return {x["step"]: x["loss"] for x in rows(d / "sft" / "train_log.jsonl") if "loss" in x}

    lr, lc = losses(ref), losses(crash)
    assert set(lr) >= {5, 6, 7, 8}
    for step in (5, 6, 7, 8):  # the steps trained after the resume
        assert abs(lr[step] - lc[step]) < 1e-4, (step, lr[step], lc[step])
    assert abs(st["train_loss"] - st_ref["train_loss"]) < 1e-4
