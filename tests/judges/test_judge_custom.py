"""Your own judge (`judge: FILE.py:FUNCTION`): loading, what it may return, errors that name the
recipe line / the example, fingerprints that follow the file, and a whole pipeline judged by it."""
from __future__ import annotations

import json
import textwrap

import pytest

from s3ft import pipeline
from s3ft.session import Session
from s3ft.cli import main
from s3ft.config import ConfigError, load_config
from s3ft.judges import get_judge
from s3ft.judges.custom import JudgeError, load_function
from s3ft.runs import read_jsonl
from s3ft.types import Example, Verdict

JUDGE = textwrap.dedent('''
    from s3ft.types import Verdict

    def by_kind(example, response):
        kind = example.meta["kind"]
        if kind == "bool":
            return response == example.gold
        if kind == "none":
            return None
        if kind == "tuple":
            return response == example.gold, "compared", response.upper()
        if kind == "verdict":
            return Verdict(False, "always wrong")
        if kind == "raise":
            raise KeyError("answers")
        return 0.5  # not a verdict

    def numpy_bool(example, response):
        import numpy
        return numpy.bool_(True)

    def one_argument(example):
        return True

    def annotated(example, response: int):
        return True

    NOT_A_FUNCTION = 3

    def scored(examples, responses):
        return [response == example.gold or None for example, response in zip(examples, responses)]

    scored.batched = True

    def short(examples, responses):
        return [True]

    short.batched = True
''')


def ex(i, kind, gold="Paris"):
    return Example(f"e{i}", [{"role": "user", "content": "Capital of France?"}], gold, {"kind": kind})


@pytest.fixture
def judge_file(tmp_path):
    path = tmp_path / "my_judge.py"
    path.write_text(JUDGE)
    return path


def test_return_values_become_verdicts(judge_file):
    judge = get_judge(f"{judge_file}:by_kind")
    exs = [ex(0, "bool"), ex(1, "bool"), ex(2, "none"), ex(3, "tuple"), ex(4, "verdict")]
    got = judge(exs, ["Paris", "Lyon", "x", "Paris", "Paris"])
    assert got == [Verdict(True, ""), Verdict(False, ""), Verdict(None, "cannot judge"),
                   Verdict(True, "compared", "PARIS"), Verdict(False, "always wrong")]
    assert get_judge(f"{judge_file}:numpy_bool")([ex(0, "x")], ["y"]) == [Verdict(True, "")]


def test_a_judge_that_raises_or_returns_junk_stops_naming_the_example(judge_file):
    judge = get_judge(f"{judge_file}:by_kind")
    with pytest.raises(JudgeError, match=r"raised on example 'e7' \(response 'Lyon'\): KeyError: 'answers'"):
        judge([ex(6, "bool"), ex(7, "raise")], ["Paris", "Lyon"])
    with pytest.raises(JudgeError, match=r"returned 0.5 \(float\) for example 'e8'; a judge returns True / False"):
        judge([ex(8, "junk")], ["Paris"])


def test_module_spec_imports_from_the_path(tmp_path, monkeypatch, judge_file):
    (tmp_path / "pkg_judges").mkdir()
    (tmp_path / "pkg_judges" / "__init__.py").write_text(JUDGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert get_judge("pkg_judges:by_kind")([ex(0, "bool")], ["Paris"]) == [Verdict(True, "")]
    with pytest.raises(JudgeError, match="cannot import module 'no_such_pkg'.*give a file path"):
        load_function("no_such_pkg:f")


def test_bad_judges_fail_at_config_time_naming_recipe_line(tmp_path, judge_file):
    (tmp_path / "broken.py").write_text("def f(example, response):\n    return (\n")
    cases = [
        (f"{tmp_path}/missing.py:f", "missing.py: file not found (resolved to"),
        (f"{judge_file}:by_knd", "has no function 'by_knd' (did you mean 'by_kind'?)"),
        (f"{judge_file}:NOT_A_FUNCTION", "NOT_A_FUNCTION is a int, not a function"),
        (f"{judge_file}:one_argument", "one_argument(example) cannot be called as one_argument(example, response)"),
        (f"{tmp_path}/broken.py:f", "importing"),
        (f"{judge_file}:", "expected FILE.py:FUNCTION or package.module:FUNCTION"),
    ]
    for spec, needle in cases:
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"task: squad\njudge: '{spec}'\n")
        with pytest.raises(ConfigError) as e:
            load_config(recipe)
        assert f"{recipe} line 2" in str(e.value) and needle in str(e.value), (spec, str(e.value))
    with pytest.raises(ConfigError, match="unknown judge 'qaa' \\(did you mean 'qa'\\?\\).*FILE.py:FUNCTION"):
        load_config(None, ["--task", "squad", "--judge", "qaa"])


def test_editing_the_file_reloads_it_and_changes_the_fingerprint(judge_file):
    spec = f"{judge_file}:by_kind"
    old = get_judge(spec)
    assert old([ex(0, "bool")], ["Paris"])[0].correct is True
    judge_file.write_text(JUDGE.replace("return response == example.gold\n", "return response != example.gold\n", 1))
    new = get_judge(spec)
    assert new.source_hash != old.source_hash
    assert new([ex(0, "bool")], ["Paris"])[0].correct is False
    assert old([ex(0, "bool")], ["Paris"])[0].correct is True  # a judge already built keeps its code


def test_a_judge_file_imports_its_helpers_from_its_folder(tmp_path):
    (tmp_path / "judge_helpers_s3ft_test.py").write_text("def norm(t):\n    return t.strip().lower()\n")
    (tmp_path / "j.py").write_text("from judge_helpers_s3ft_test import norm\n\n"
                                   "def judge(example, response):\n    return norm(response) == norm(example.gold)\n")
    assert get_judge(f"{tmp_path}/j.py:judge")([ex(0, "x")], [" PARIS "]) == [Verdict(True, "")]


def trivia(tmp_path, n=6):
    rows = [{"id": f"t{i}", "question": f"Name item {i}?", "answer": f"item {i}", "answers": [f"item {i}", f"thing {i}"]}
            for i in range(n)]
    path = tmp_path / "trivia.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class EchoGenerator:
    """Own answers: 'thing i' (an alias) for even i, 'nothing' for odd i."""

    def stream(self, prompts, max_new_tokens, desc=None, **kw):
        for j, p in enumerate(prompts):
            i = int(p[-1]["content"].split("item ")[1].split("?")[0])
            yield j, (f"thing {i}" if i % 2 == 0 else "nothing"), "end_of_turn"


def test_pipeline_judges_with_the_users_function_and_rejudges_when_it_changes(tmp_path, monkeypatch, capsys, tiny_model_dir):
    data = trivia(tmp_path)
    path = tmp_path / "alias_judge.py"
    path.write_text("def judge(example, response):\n"
                    "    return response in example.meta['answers'], 'alias list'\n")
    cfg = load_config(None, {"task": "jsonl", "data_files": {"train": str(data)}, "id_field": "id",
                             "prompt_field": "question", "response_field": "answer",
                             "judge": f"{path}:judge", "output_dir": str(tmp_path / "run"), "model": str(tiny_model_dir)})
    s = Session(cfg)
    monkeypatch.setattr(Session, "generator", lambda self, model=None, dtype=None: EchoGenerator())
    monkeypatch.setattr(Session, "model_id", lambda self: "echo")
    s.run.path.mkdir(parents=True)
    pipeline.preflight(s, ("generate", "judge"))
    assert "warning" not in capsys.readouterr().out  # gold answers are in the alias lists
    rows = read_jsonl(pipeline.judged_answers(s))
    assert [(r["id"], r["correct"], r["reason"]) for r in rows] == [
        (f"t{i}", i % 2 == 0, "alias list") for i in range(6)]
    # the judge file changes -> the judge stage is stale and runs again with the new function
    path.write_text("def judge(example, response):\n    return None\n")
    s2 = Session(cfg)
    rows = read_jsonl(pipeline.judged_answers(s2))
    assert all(r["correct"] is None and r["reason"] == "cannot judge" for r in rows)
    # and the preflight warns that it accepts none of the gold answers
    pipeline.preflight(Session(cfg), ("generate", "judge"))
    assert "accepts 0 of the first 6 gold training answers" in capsys.readouterr().out


def test_a_judge_edited_during_a_run_is_recorded_as_the_code_that_ran(tmp_path, monkeypatch, tiny_model_dir):
    """The session loads the judge at preflight; the file is edited while it generates. The judge
    stage runs the code it loaded and must record that code's hash, so the next run (which loads
    the edited file) finds the stage stale and re-judges."""
    data = trivia(tmp_path)
    path = tmp_path / "edited_judge.py"
    path.write_text("def judge(example, response):\n    return True\n")
    cfg = load_config(None, {"task": "jsonl", "data_files": {"train": str(data)}, "id_field": "id",
                             "prompt_field": "question", "response_field": "answer",
                             "judge": f"{path}:judge", "output_dir": str(tmp_path / "run"), "model": str(tiny_model_dir)})
    monkeypatch.setattr(Session, "generator", lambda self, model=None, dtype=None: EchoGenerator())
    monkeypatch.setattr(Session, "model_id", lambda self: "echo")
    s1 = Session(cfg)
    s1.run.path.mkdir(parents=True)
    pipeline.preflight(s1, ("generate", "judge"))
    path.write_text("def judge(example, response):\n    return False\n")  # edited mid-run
    assert all(r["correct"] is True for r in read_jsonl(pipeline.judged_answers(s1)))  # the code it loaded
    assert all(r["correct"] is False for r in read_jsonl(pipeline.judged_answers(Session(cfg))))


def test_s3ft_judge_command_with_the_bundled_example_judge(tmp_path, capsys):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "response": r}) + "\n" for i, r in
                             [("t0", "Paris.\nIt is in France."), ("t1", "I think\nit is Mars"), ("t2", "")]))
    out = tmp_path / "o.jsonl"
    code = main(["judge", "--task", "jsonl", "--data_files", f"{{train: {root}/examples/trivia_train.jsonl}}",
                 "--id_field", "id", "--prompt_field", "question", "--response_field", "answer",
                 "--judge", f"{root}/examples/trivia_judge.py:judge_first_line",
                 "--predictions", str(preds), "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["correct"], r["extracted"]) for r in got] == [(True, "Paris."), (False, "I think"), (False, None)]
    assert "1 correct, 2 wrong, 0 cannot judge" in capsys.readouterr().out


def test_cli_reports_a_raising_judge_cleanly(tmp_path, capsys):
    data = trivia(tmp_path, 2)
    bad = tmp_path / "bad.py"
    bad.write_text("def judge(example, response):\n    return example.meta['answer'] == response\n")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "t1", "response": "x"}) + "\n")
    code = main(["judge", "--task", "jsonl", "--data_files", f"{{train: {data}}}", "--id_field", "id",
                 "--prompt_field", "question", "--response_field", "answer", "--judge", f"{bad}:judge",
                 "--predictions", str(preds), "--output", str(tmp_path / "o.jsonl")])
    assert code == 2
    assert "raised on example 't1' (response 'x'): KeyError: 'answer'" in capsys.readouterr().err


def test_a_batched_judge_sees_the_whole_batch(judge_file):
    exs = [ex(0, "x"), ex(1, "x"), ex(2, "x")]
    assert get_judge(f"{judge_file}:scored")(exs, ["Paris", "Lyon", "Paris"]) == [
        Verdict(True, ""), Verdict(None, "cannot judge"), Verdict(True, "")]
    with pytest.raises(JudgeError, match=r"\(batched\) returned a list of 1 for 3 responses"):
        get_judge(f"{judge_file}:short")(exs, ["a", "b", "c"])


def test_the_judge_file_is_compiled_as_its_own_module(judge_file):
    """Not with s3ft's `from __future__ import annotations`: annotations stay objects, as when
    Python imports the file."""
    fn, _ = load_function(f"{judge_file}:annotated")
    assert fn.__annotations__ == {"response": int}


HOSTILE = textwrap.dedent('''
    import sys
    import time

    def exits(example, response):
        sys.exit(0)

    def hangs(example, response):
        while True:
            pass

    def sleeps(example, response):
        time.sleep(1000)

    def swallows(example, response):
        try:
            time.sleep(1000)
        except Exception:
            return True

    def fine(example, response):
        return True

    def exits_batched(examples, responses):
        sys.exit(3)

    exits_batched.batched = True
''')


@pytest.fixture
def hostile(tmp_path):
    path = tmp_path / "hostile_judge.py"
    path.write_text(HOSTILE)
    return path


def test_a_judge_that_calls_sys_exit_stops_the_stage_naming_the_judge(hostile):
    """sys.exit(0) inside a judge used to end the whole run with exit code 0 and nothing done."""
    from s3ft.judges.custom import make_custom_judge

    with pytest.raises(JudgeError, match=r"hostile_judge.py:exits' called sys.exit\(0\) on example 'e1' .*must not exit"):
        make_custom_judge(f"{hostile}:exits")([ex(1, "x")], ["Paris"])
    with pytest.raises(JudgeError, match=r"called sys.exit\(3\) on a batch of 2 starting with example 'e1'"):
        make_custom_judge(f"{hostile}:exits_batched")([ex(1, "x"), ex(2, "x")], ["a", "b"])


def test_a_judge_file_that_calls_sys_exit_at_import_is_a_config_error(tmp_path):
    script = tmp_path / "script_judge.py"
    script.write_text("import sys\n\ndef judge(example, response):\n    return True\n\nsys.exit(0)\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"task: squad\njudge: {script}:judge\n")
    with pytest.raises(ConfigError, match=rf"{recipe} line 2: judge .*script_judge.py:judge': importing .* called "
                                          r"sys.exit\(0\); a judge file must not exit the process"):
        load_config(recipe)


@pytest.mark.parametrize("fn", ["hangs", "sleeps", "swallows"])
def test_a_judge_that_never_returns_is_stopped_after_its_timeout(hostile, fn):
    import time

    from s3ft.judges.custom import make_custom_judge

    judge = make_custom_judge(f"{hostile}:{fn}", timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(JudgeError, match=rf":{fn}' did not return within 0.3 s on example 'e5' .*judge_timeout"):
        judge([ex(5, "x")], ["Paris"])
    assert time.monotonic() - t0 < 5
    assert make_custom_judge(f"{hostile}:fine", timeout=0.3)([ex(6, "x")], ["y"]) == [Verdict(True, "")]


def test_the_timeout_holds_outside_the_main_thread_too(hostile):
    import threading

    from s3ft.judges.custom import make_custom_judge

    judge = make_custom_judge(f"{hostile}:hangs", timeout=0.3)
    caught = []

    def run():
        try:
            judge([ex(7, "x")], ["Paris"])
        except JudgeError as e:
            caught.append(str(e))

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert caught and "did not return within 0.3 s on example 'e7'" in caught[0]


def test_judge_timeout_reaches_the_judge_from_the_recipe(tmp_path, hostile, capsys):
    """Through the real `s3ft judge` command: judge_timeout on the command line reaches your judge;
    the call that hangs is stopped, naming the example, and no output is written."""
    data = trivia(tmp_path, 2)
    code = main(["judge", "--task", "jsonl", "--data_files", f"{{train: {data}}}", "--id_field", "id",
                 "--prompt_field", "question", "--response_field", "answer", "--judge", f"{hostile}:sleeps",
                 "--judge_timeout", "0.3", "--predictions", str(_preds(tmp_path)), "--output", str(tmp_path / "o.jsonl")])
    assert code == 2
    assert "did not return within 0.3 s on example 't0'" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def _preds(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"id": "t0", "response": "item 0"}) + "\n")
    return p
