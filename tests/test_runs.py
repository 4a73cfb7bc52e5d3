import os
import subprocess
import sys


from s3ft.runs import JsonlWriter, RunDir, read_jsonl, repair_jsonl


def test_jsonl_roundtrip_and_repair(tmp_path):
    p = tmp_path / "a.jsonl"
    with JsonlWriter(p) as w:
        for i in range(5):
            w.write({"id": str(i), "text": "é" * i})
    with p.open("a") as f:
        f.write('{"id": "5", "te')  # a crash mid-line
    assert [r["id"] for r in read_jsonl(p)] == ["0", "1", "2", "3", "4"]
    assert repair_jsonl(p) > 0
    with JsonlWriter(p) as w:  # appending after repair continues cleanly
        w.write({"id": "5"})
    assert [r["id"] for r in read_jsonl(p)] == ["0", "1", "2", "3", "4", "5"]


def test_stage_resume_and_fingerprint_change(tmp_path):
    run = RunDir(tmp_path)
    out = tmp_path / "x.jsonl"
    with run.stage("s", "fp1", [out]):
        with JsonlWriter(out) as w:
            w.write({"id": "a"})
    assert run.is_done("s", "fp1", [out])
    assert not run.is_done("s", "fp2", [out])
    # same fingerprint, interrupted: rows kept for resume
    run.set_stage("s", status="running", fingerprint="fp1")
    with run.stage("s", "fp1", [out]):
        assert read_jsonl(out) == [{"id": "a"}]
    # new fingerprint: stale rows removed
    with run.stage("s", "fp2", [out]):
        assert not out.exists()
    assert run.stage_record("s")["status"] == "done"


def test_lock_refuses_second_process(tmp_path):
    run = RunDir(tmp_path)
    with run.lock():
        code = (
            "import sys; from s3ft.runs import RunDir, RunLockedError\n"
            f"try:\n    RunDir({str(tmp_path)!r}).lock().__enter__()\nexcept RunLockedError as e:\n    print(e); sys.exit(3)\n"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode == 3
        assert f"in use by process {os.getpid()}" in r.stdout
    assert not (tmp_path / ".lock").exists()


def test_stale_lock_is_taken_over(tmp_path):
    (tmp_path / ".lock").write_text("999999999 " + os.uname().nodename)
    with RunDir(tmp_path).lock():
        assert (tmp_path / ".lock").read_text().startswith(str(os.getpid()))
