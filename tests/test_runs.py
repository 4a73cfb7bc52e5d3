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


def test_a_lock_from_another_host_is_never_removed(tmp_path):
    """On a shared filesystem the pid of another machine says nothing here: removing its lock
    would let two machines write one run directory."""
    import pytest

    from s3ft.runs import RunLockedError

    (tmp_path / ".lock").write_text("4242 some-other-host")
    with pytest.raises(RunLockedError, match=r"locked by process 4242 on host some-other-host .* delete .*\.lock"):
        with RunDir(tmp_path).lock():
            pass
    assert (tmp_path / ".lock").read_text() == "4242 some-other-host"


def test_an_empty_lock_is_a_process_starting_not_a_stale_lock(tmp_path, monkeypatch):
    import pytest

    from s3ft.runs import RunLockedError

    monkeypatch.setattr("s3ft.runs.time.sleep", lambda s: None)  # (it waits 2 s for the pid to appear)
    (tmp_path / ".lock").write_text("")
    with pytest.raises(RunLockedError, match=r"\.lock is empty: another s3ft process may be starting"):
        with RunDir(tmp_path).lock():
            pass
    assert (tmp_path / ".lock").exists()


def test_an_s3ft_run_directory_is_recognisable_by_its_manifest(tmp_path):
    import json

    from s3ft import runs

    run = RunDir(tmp_path / "run")
    run.update_manifest(config={"task": "squad"})
    run.set_stage("generate", status="done", fingerprint="x")
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m[runs.RUN_MARKER]["format"] == runs.MANIFEST_FORMAT and "version" in m[runs.RUN_MARKER]
    (tmp_path / "run" / "own.jsonl").write_text("")
    run.check_usable()  # an s3ft run: continue it


def test_a_run_directory_of_the_previous_version_is_still_a_run(tmp_path):
    """Manifests written before the s3ft_run entry existed have s3ft's config / stages entries."""
    import json

    from s3ft.runs import RUN_MARKER

    d = tmp_path / "old-run"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"stages": {"generate": {"status": "done", "fingerprint": "f"}},
                                                 "config": {"task": "squad"}, "versions": {}}))
    (d / "own.jsonl").write_text('{"id": "a", "response": "x"}\n')
    RunDir(d).check_usable()
    with RunDir(d).lock():
        RunDir(d).update_manifest(updated="now")
    m = json.loads((d / "manifest.json").read_text())
    assert RUN_MARKER in m and m["stages"]["generate"]["fingerprint"] == "f"  # kept, and marked from now on


def test_a_folder_that_is_not_an_s3ft_run_is_refused_naming_what_would_be_overwritten(tmp_path):
    import json

    import pytest

    from s3ft.runs import RunDirError

    d = tmp_path / "mine"
    (d / "eval").mkdir(parents=True)
    (d / "eval" / "base.jsonl").write_text("my evaluation\n")
    (d / "own.jsonl").write_text("my own file\n")
    (d / "notes.txt").write_text("notes\n")
    with pytest.raises(RunDirError, match=r"mine is not empty and is not an s3ft run directory \(it has no manifest.json\); "
                                          r"a run would overwrite eval/, own.jsonl"):
        with RunDir(d).lock():
            pass
    assert not (d / ".lock").exists() and (d / "own.jsonl").read_text() == "my own file\n"
    for manifest, why in [("[1, 2]", "its manifest.json is a JSON list, not an object"),
                          ("{oops", "its manifest.json is not JSON"),
                          (json.dumps({"name": "my app", "icons": []}), "its manifest.json was not written by s3ft")]:
        (d / "manifest.json").write_text(manifest)
        with pytest.raises(RunDirError) as e:
            RunDir(d).check_usable()
        assert why in str(e.value) and "manifest.json" in str(e.value).split("overwrite")[1], str(e.value)
        if "JSON" in why:
            with pytest.raises(RunDirError, match="manifest.json: not an s3ft manifest"):
                RunDir(d).manifest()  # (and not a JSONDecodeError, or an AttributeError on a list)
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("a,b\n")
    with pytest.raises(RunDirError, match=r"it holds data.csv"):
        RunDir(other).check_usable()
    empty = tmp_path / "empty"
    empty.mkdir()
    RunDir(empty).check_usable()
    RunDir(tmp_path / "new" / "deeper").check_usable()


def test_output_dir_that_is_a_file_under_a_file_or_read_only(tmp_path, monkeypatch):
    import pytest

    from s3ft.runs import RunDirError

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunDirError, match=r"output_dir .*file is a file, not a folder"):
        RunDir(f).check_usable()
    with pytest.raises(RunDirError, match=r"output_dir .*file/run: .*file is a file, so the folder cannot be made under it"):
        RunDir(f / "run").check_usable()
    monkeypatch.setattr("s3ft.runs._read_only", lambda folder: True)
    with pytest.raises(RunDirError, match=r"output_dir .*run: .* is on a read-only filesystem"):
        RunDir(tmp_path / "run").check_usable()


def test_a_failed_manifest_write_leaves_the_old_manifest_and_no_temp_file(tmp_path):
    import json

    import pytest

    from s3ft.runs import write_json

    p = tmp_path / "manifest.json"
    write_json(p, {"a": 1})
    with pytest.raises(UnicodeEncodeError):
        write_json(p, {"a": "caf\udce9"})  # (what a byte that is not UTF-8 on the command line used to do)
    assert json.loads(p.read_text()) == {"a": 1}
    assert not (tmp_path / "manifest.json.tmp").exists()


def test_a_full_disk_mid_stage_names_the_file_and_a_rerun_continues_cleanly(tmp_path, monkeypatch):
    """The error names the file and says nothing is lost; the half line a full disk leaves is cut
    off by the next writer instead of being appended after."""
    import errno

    import pytest

    p = tmp_path / "own.jsonl"
    with JsonlWriter(p) as w:
        w.write({"id": "a"})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("s3ft.runs.os.fsync", full)
    with pytest.raises(OSError) as e:
        with JsonlWriter(p, sync_every=1) as w:
            w.write({"id": "b"})
    assert e.value.filename == str(p) and "No space left on device" in str(e.value)
    assert "the rows written before are kept" in str(e.value)
    monkeypatch.undo()
    with p.open("a") as f:
        f.write('{"id": "c", "respo')  # where the disk filled up
    with JsonlWriter(p) as w:  # the rerun
        w.write({"id": "c"})
    assert [r["id"] for r in read_jsonl(p)] == ["a", "b", "c"]
    assert p.read_text().count("\n") == 3


def test_prune_keeps_results_and_fingerprints_and_refuses_what_it_must(tmp_path, monkeypatch):
    """s3ft prune: the weights go (in place, or left out of a copy), each model folder keeps the
    fingerprint it had, the results stay; a folder that is not a run, a copy target that is not
    empty or lies inside the run, and a run another process writes are refused."""
    import json

    import pytest

    from s3ft.models import PrunedModelError, resolve_model
    from s3ft import prune as prune_module
    from s3ft.prune import prune
    from s3ft.runs import RunDirError, RunLockedError, file_fingerprint, pruned_record

    def is_pruned(folder):
        return pruned_record(folder) is not None

    run = RunDir(tmp_path / "run")
    with run.lock():
        run.update_manifest(config={})
    model = run.path / "sft" / "model"
    ck = run.path / "sft" / "checkpoints" / "checkpoint-2"
    for d in (model, ck):
        d.mkdir(parents=True)
        (d / "adapter_config.json").write_text("{}")
        (d / "adapter_model.safetensors").write_bytes(b"w" * 1000)
    (run.path / "eval").mkdir()
    (run.path / "eval" / "sft.jsonl").write_text('{"id": "a", "correct": true}\n')
    fp = file_fingerprint(model)
    assert fp == file_fingerprint(model)

    copy = tmp_path / "copy"
    model_dirs = prune_module.model_dirs

    def stage_finishing_meanwhile(root):  # the run goes on while it is copied
        RunDir(root).set_stage("eval.late", status="done", fingerprint="x")
        return model_dirs(root)

    monkeypatch.setattr(prune_module, "model_dirs", stage_finishing_meanwhile)
    r = prune(run.path, copy)
    monkeypatch.setattr(prune_module, "model_dirs", model_dirs)
    assert RunDir(run.path).stage_record("eval.late") and not RunDir(copy).stage_record("eval.late")
    assert r == {"models": 1, "bytes": 1000, "output": str(copy)}
    assert (model / "adapter_model.safetensors").exists()  # the run is left as it was
    assert is_pruned(copy / "sft" / "model") and not is_pruned(model)
    assert file_fingerprint(copy / "sft" / "model") == fp
    assert not (copy / "sft" / "checkpoints").exists() and not (copy / ".lock").exists()
    assert (copy / "eval" / "sft.jsonl").read_text() == (run.path / "eval" / "sft.jsonl").read_text()
    with pytest.raises(PrunedModelError, match="was pruned"):
        resolve_model(str(copy / "sft" / "model"))
    assert json.loads((copy / "sft" / "model" / "pruned.json").read_text())["removed"] == [
        {"file": "adapter_model.safetensors", "bytes": 1000}]

    with pytest.raises(RunDirError, match="new or empty folder"):
        prune(run.path, copy)
    with pytest.raises(RunDirError, match="cannot go inside the run"):
        prune(run.path, run.path / "inside")
    with pytest.raises(RunDirError, match="not an s3ft run directory"):
        prune(tmp_path / "copy" / "eval")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunDirError, match="new or empty folder"):
        prune(run.path, tmp_path / "afile")
    sub = RunDir(run.path / "seed-1")
    with sub.lock():
        sub.update_manifest(config={})
    with pytest.raises(RunDirError, match="is part of the run"):
        prune(sub.path)
    child = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom s3ft.runs import RunDir\n"
                              "with RunDir(sys.argv[1]).lock():\n    print('locked', flush=True); time.sleep(30)",
                              str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError):
            prune(run.path)
    finally:
        child.kill()
        child.wait()
    r = prune(run.path)  # in place
    assert r["models"] == 1 and r["bytes"] == 1000 + 1002  # the model's weights, the whole checkpoint
    assert is_pruned(model) and file_fingerprint(model) == fp and not (run.path / "sft" / "checkpoints").exists()
    (model / "adapter_model.safetensors").write_bytes(b"v" * 1000)  # made again: the record no longer counts
    assert not is_pruned(model) and file_fingerprint(model) != fp
    assert resolve_model(str(model)) == str(model)
    fp2 = file_fingerprint(model)
    assert prune(run.path)["models"] == 1 and file_fingerprint(model) == fp2  # pruned again: the new fingerprint
    # a prune killed half way through a sharded model: pruning again keeps the whole folder's fingerprint
    shards = run.path / "full" / "model"
    shards.mkdir(parents=True)
    (shards / "config.json").write_text("{}")
    for i in (1, 2):
        (shards / f"model-0000{i}.safetensors").write_bytes(bytes([i]) * 500)
    whole = file_fingerprint(shards)
    (shards / "pruned.json").write_text(json.dumps({"fingerprint": whole, "removed": [
        {"file": f"model-0000{i}.safetensors", "bytes": 500} for i in (1, 2)]}))
    (shards / "model-00001.safetensors").unlink()  # ... and then the process died
    assert prune(run.path)["models"] == 1
    assert is_pruned(shards) and file_fingerprint(shards) == whole
    assert {r["file"] for r in json.loads((shards / "pruned.json").read_text())["removed"]} == {
        "model-00001.safetensors", "model-00002.safetensors"}


def test_gzip_text_round_trip_and_same_bytes(tmp_path):
    import json
    import time

    from s3ft.runs import gzip_text, read_jsonl_gz

    rows = [{"id": "a", "text": "café"}, {"id": "b", "text": ""}]
    paths = [tmp_path / "first" / "a.jsonl.gz", tmp_path / "second" / "a.jsonl.gz"]
    for path in paths:
        path.parent.mkdir()
        with gzip_text(path) as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n\n")  # blank lines are skipped on reading
        time.sleep(1.1)  # a later second: the header's time would differ if it were recorded
    assert read_jsonl_gz(paths[0]) == rows
    assert paths[0].read_bytes() == paths[1].read_bytes()
