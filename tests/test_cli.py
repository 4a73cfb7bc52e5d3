"""The `s3ft` command's contracts that need no model."""
import json
import subprocess
import sys

from s3ft.cli import main


def test_judge_predictions_file_gsm8k(tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    rows = [
        {"id": "gsm8k-train-0", "response": "48/2 = 24 in May, 48 + 24 = 72. The answer is 72."},
        {"id": "gsm8k-train-0", "response": "The answer is 71."},
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
