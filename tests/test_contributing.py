"""docs/contributing.md's recipes, done: the method entry it shows is the table's, and the
example stage it shows runs under the shared bookkeeping (writes, skips when up to date, re-runs
on --force)."""
from __future__ import annotations

import json
import re
import types
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "contributing.md"


def code_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_method_entry_shown_is_the_one_in_the_table():
    from s3ft.methods import METHODS, Method

    entry = next(b for b in code_blocks() if b.lstrip().startswith("Method("))
    assert eval(entry.strip().rstrip(","), {"Method": Method}) == METHODS["dft"]


def test_the_example_stage_runs_under_the_shared_bookkeeping(tmp_path, capsys):
    from s3ft.runs import RunDir
    from s3ft.stages.common import Stages

    source = next(b for b in code_blocks() if "def style(" in b)
    module = types.ModuleType("style_stage")
    exec(compile(source, str(DOC), "exec"), module.__dict__)
    answers = tmp_path / "eval.jsonl"
    answers.write_text("".join(json.dumps({"id": i, "response": " ".join(["w"] * i)}) + "\n" for i in range(1, 6)))
    run = RunDir(tmp_path / "run")
    rerun: set = set()
    rec = module.style(Stages(run, frozenset(), rerun), "base", answers)
    assert rec["median_words"] == 3 and rec["status"] == "done"
    assert json.loads((run.path / "style" / "base.json").read_text())["median_words"] == 3
    finished = rec["finished"]
    module.style(Stages(run, frozenset(), rerun), "base", answers)
    assert "style.base: up to date" in capsys.readouterr().out
    forced = Stages(run, frozenset({"style"}), rerun)
    module.style(forced, "base", answers)
    module.style(forced, "base", answers)  # forced once per invocation
    assert capsys.readouterr().out.count("style base: median 3 words") == 1
    answers.write_text(json.dumps({"id": 1, "response": "one two"}) + "\n")  # a changed input re-runs it
    assert module.style(Stages(run, frozenset(), rerun), "base", answers)["median_words"] == 2
    assert run.stage_record("style.base")["finished"] >= finished
