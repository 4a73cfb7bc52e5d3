"""The `s3ft` command's contracts that need no model."""
import json
import subprocess
import sys

from s3ft.cli import main


def test_judge_predictions_file_gsm8k(tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    rows = [
        {"id": "gsm8k-train-0", "response": "48/2 = 24 in May, 48 + 24 = 72. The answer is 72."},
        {"id": "gsm8k-train-2", "response": "The answer is 71."},
        {"id": "gsm8k-train-1", "response": "She earns 0.2 * 50 = 10. The answer is $10."},
        {"id": "gsm8k-test-0", "response": "I do not know.", "extra": "kept"},
    ]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    assert main(["judge", "--task", "gsm8k", "--predictions", str(preds), "--output", str(out)]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["correct"] for g in got] == [True, False, True, False]
    assert got[0]["extracted"] is not None and "72" in got[0]["extracted"]
    assert all(g["reason"] for g in got)
    assert got[3]["extra"] == "kept"
    assert "2 correct, 2 wrong, 0 cannot judge" in capsys.readouterr().out


def test_judge_predictions_unknown_id_names_line(tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": "gsm8k-train-0", "response": "x"}) + "\n" + json.dumps({"id": "nope", "response": "x"}) + "\n")
    code = main(["judge", "--task", "gsm8k", "--predictions", str(preds), "--output", str(tmp_path / "o.jsonl")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{preds} line 2, field 'id': 'nope' is not an example id of task gsm8k" in err


def test_judge_predictions_malformed_line(tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"id": "gsm8k-train-0", "response": "x"}\n{"id": \n')
    assert main(["judge", "--task", "gsm8k", "--predictions", str(preds), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert f"{preds} line 2: invalid JSON" in capsys.readouterr().err


def test_fields_lists_every_key(capsys):
    assert main(["fields"]) == 0
    out = capsys.readouterr().out
    for key in ("--learning_rate", "--lora_r", "--allow_code_execution", "--data_files", "--method"):
        assert key in out


def test_entry_point_installed():
    r = subprocess.run([sys.executable, "-m", "s3ft.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "s3ft run RECIPE.yaml" in r.stdout


def test_judge_predictions_for_a_user_jsonl_task(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "t0", "question": "Capital of France?", "answer": "Paris"}) + "\n"
                    + json.dumps({"id": "t1", "question": "Red planet?", "answer": "Mars", "answers": ["Mars", "planet Mars"]}) + "\n")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "t0", "response": "It is Paris."}) + "\n" + json.dumps({"id": "t1", "response": "Jupiter"}) + "\n")
    out = tmp_path / "o.jsonl"
    code = main(["judge", "--task", "jsonl", "--data_files", f"{{train: {data}}}", "--id_field", "id",
                 "--prompt_field", "question", "--response_field", "answer", "--predictions", str(preds), "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    assert [json.loads(line)["correct"] for line in out.read_text().splitlines()] == [True, False]


# ---------------------------------------------------------------- `s3ft judge --predictions`: right or refused
def _gsm8k_preds(tmp_path, rows=None):
    preds = tmp_path / "preds.jsonl"
    rows = rows or [{"id": "gsm8k-train-0", "response": "The answer is 72."},
                    {"id": "gsm8k-train-1", "response": "The answer is 11."}]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return preds


def _judge(preds, out, *extra):
    return main(["judge", "--task", "gsm8k", "--predictions", str(preds), "--output", str(out), *extra])


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_judge_output_is_replaced_whole_never_appended(tmp_path, capsys):
    """A rerun, or a retry after a kill that left half a line, used to append a second copy."""
    preds, out = _gsm8k_preds(tmp_path), tmp_path / "out.jsonl"
    assert _judge(preds, out) == 0
    first = out.read_text()
    assert _judge(preds, out) == 0
    assert out.read_text() == first and len(_lines(out)) == 2
    out.write_text(first.splitlines()[0] + "\n" + '{"id": "gsm8k-tr')  # killed mid-write
    assert _judge(preds, out) == 0
    assert out.read_text() == first
    assert "1 correct, 1 wrong, 0 cannot judge; accuracy 50.00%" in capsys.readouterr().out


def test_judge_refuses_output_equal_to_predictions(tmp_path, capsys):
    preds = _gsm8k_preds(tmp_path)
    before = preds.read_text()
    link = tmp_path / "link.jsonl"
    link.symlink_to(preds)
    for out in (preds, tmp_path / "." / "preds.jsonl", link):
        assert _judge(preds, out) == 2
        assert "is the predictions file" in capsys.readouterr().err
    assert preds.read_text() == before


def test_judge_output_that_is_a_folder_or_under_a_file(tmp_path, capsys):
    preds = _gsm8k_preds(tmp_path)
    assert _judge(preds, tmp_path) == 2
    assert f"--output {tmp_path} is a folder" in capsys.readouterr().err
    assert _judge(preds, preds.parent / "preds.jsonl" / "out.jsonl") == 2
    assert "preds.jsonl is a file, so" in capsys.readouterr().err


def test_judge_refuses_duplicate_prediction_ids(tmp_path, capsys):
    """Each row used to count: 3 of 4 correct (75%) where 1 of 2 examples is."""
    preds = _gsm8k_preds(tmp_path, [{"id": "gsm8k-train-0", "response": "The answer is 72."},
                                    {"id": "gsm8k-train-1", "response": "The answer is 11."},
                                    {"id": "gsm8k-train-0", "response": "The answer is 72."},
                                    {"id": "gsm8k-train-0", "response": "The answer is 72."}])
    assert _judge(preds, tmp_path / "out.jsonl") == 2
    err = capsys.readouterr().err
    assert f"{preds} line 3, field 'id': duplicate id 'gsm8k-train-0' (also on line 1)" in err
    assert not (tmp_path / "out.jsonl").exists()


def test_judge_ids_that_name_different_examples_in_two_splits(tmp_path, capsys):
    """Files that each number their rows from 1: a test prediction used to be judged against the
    train gold with the same id."""
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text(json.dumps({"id": 1, "question": "Capital of France?", "answer": "Paris"}) + "\n")
    test.write_text(json.dumps({"id": 1, "question": "Capital of Italy?", "answer": "Rome"}) + "\n")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": 1, "response": "Rome"}) + "\n")
    out = tmp_path / "o.jsonl"
    argv = ["judge", "--task", "jsonl", "--data_files", f"{{train: {train}, test: {test}}}", "--id_field", "id",
            "--prompt_field", "question", "--response_field", "answer", "--predictions", str(preds), "--output", str(out)]
    assert main(argv) == 2
    assert (f"{preds} line 1, field 'id': '1' names a different example in each of the splits train, test; "
            "say which split the predictions are for: --split train") in capsys.readouterr().err
    assert main(argv + ["--split", "test"]) == 0
    assert [r["correct"] for r in _lines(out)] == [True]
    assert main(argv + ["--split", "validation"]) == 2
    assert "--split 'validation': task jsonl has no such split; it has train, test" in capsys.readouterr().err


def test_judge_a_full_disk_leaves_the_old_output(tmp_path, monkeypatch, capsys):
    import errno

    preds, out = _gsm8k_preds(tmp_path), tmp_path / "out.jsonl"
    out.write_text("earlier output\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("s3ft.runs.os.fsync", full)
    assert _judge(preds, out) == 2
    assert f"--output {out}: cannot write it (No space left on device); it is unchanged" in capsys.readouterr().err
    assert out.read_text() == "earlier output\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("out")] == ["out.jsonl"]  # no temp file left


def test_fields_into_a_closed_pipe_is_quiet():
    """`s3ft fields | head` used to end in a BrokenPipeError traceback."""
    p = subprocess.Popen([sys.executable, "-m", "s3ft.cli", "fields"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # no reader left: the first write fails with EPIPE
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_judge_predictions_with_a_recipe_and_no_task(tmp_path, capsys):
    """--recipe alone (the task from the recipe) used to fail with an AttributeError."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: gsm8k\n")
    out = tmp_path / "out.jsonl"
    assert main(["judge", "--recipe", str(recipe), "--predictions", str(_gsm8k_preds(tmp_path)), "--output", str(out)]) == 0
    assert [r["correct"] for r in _lines(out)] == [True, False]


def test_command_help_is_the_commands_own(capsys):
    """`s3ft run --help` shows its usage with the overrides and points to `s3ft fields`, not the
    whole key list; `s3ft demo --help` says what the demo runs."""
    import pytest

    for argv, needle in ((["run", "--help"], "usage: s3ft run RECIPE [--key value ...]"),
                         (["demo", "--help"], "usage: s3ft demo [--key value ...]")):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert needle in out and "s3ft fields" in out and "--lora_target_modules q_proj v_proj" in out
        assert "--per_device_train_batch_size" not in out  # the key list lives in `s3ft fields`
