"""Hostile but realistic input through the real `s3ft` command: a folder that is not an s3ft run,
a prompt longer than the model's context, a device this machine lacks - and random bad recipes
and data files (hypothesis). Each ends before any work in a one-line message that names its
source, exit code 2, no traceback, and nothing in the run directory changed."""
from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3ft.cli import main
from s3ft.config import FIELDS, ConfigError, _type_str, load_config

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def run_cli(argv: list[str]) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, err.getvalue().strip()


def snapshot(folder: Path) -> dict[str, tuple[bytes, int] | None]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def dummy_model(tmp_path) -> Path:
    """A model folder that resolves (config.json) and fails at the tokenizer check: reaching it
    means every input before it was accepted, and still nothing was loaded or written."""
    model = tmp_path / "dummy-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return model


@pytest.fixture
def existing_run(tmp_path) -> Path:
    """An s3ft run directory with finished work in it: no bad input may change it."""
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"s3ft_run": {"format": 1, "version": "0"}, "stages": {
        "generate": {"status": "done", "fingerprint": "abc"}}, "config": {"task": "squad"}}))
    (run / "own.jsonl").write_text('{"id": "a", "response": "finished work"}\n')
    (run / "eval" / "base.jsonl").write_text('{"id": "a", "response": "x", "correct": true}\n')
    return run


# ---------------------------------------------------------------- the run directory
@pytest.mark.parametrize("command", ["run", "generate", "compare"])
def test_a_folder_that_is_not_an_s3ft_run_is_refused_before_any_work(tmp_path, dummy_model, command):
    mine = tmp_path / "mine"
    (mine / "eval").mkdir(parents=True)
    (mine / "own.jsonl").write_text("my notes, not model answers\n")
    (mine / "eval" / "base.jsonl").write_text("mine too\n")
    (mine / "manifest.json").write_text('{"name": "a web app manifest"}')
    before = snapshot(mine)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"task: squad\nmodel: {dummy_model}\noutput_dir: {mine}\n")
    code, err = run_cli([command, str(recipe)])
    assert code == 2
    assert err.startswith(f"s3ft: error: output_dir {mine} is not empty and is not an s3ft run directory (its "
                          "manifest.json was not written by s3ft"), err
    assert "a run would overwrite eval/, manifest.json, own.jsonl" in err
    assert snapshot(mine) == before


def test_an_existing_s3ft_run_is_continued_not_refused(tmp_path, dummy_model, existing_run):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"task: squad\nmodel: {dummy_model}\noutput_dir: {existing_run}\n")
    code, err = run_cli(["run", str(recipe)])
    assert code == 2 and "has no tokenizer files" in err, err  # past the run-directory check, to the model's


# ---------------------------------------------------------------- the model
@pytest.fixture
def short_context_model(tmp_path, tiny_tokenizer_dir) -> Path:
    """The tiny model's tokenizer (a chat template) and a config whose context is 64 tokens."""
    import shutil

    model = tmp_path / "short-model"
    shutil.copytree(tiny_tokenizer_dir, model)
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 64}))
    return model


def _long_prompt_recipe(tmp_path, model, extra=""):
    data = tmp_path / "d.jsonl"
    rows = [{"prompt": "Capital of France?", "response": "Paris"},
            {"prompt": " ".join(["word"] * 200) + "?", "response": "long"},
            {"prompt": "Capital of Italy?", "response": "Rome"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "long.yaml"
    recipe.write_text(f"task: jsonl\ndata_files: {{train: {data}, test: {data}}}\nmodel: {model}\n"
                      f"output_dir: {tmp_path / 'run'}\nmax_new_tokens: 8\n{extra}")
    return recipe


def test_a_prompt_longer_than_the_models_context_is_refused_before_any_work(tmp_path, short_context_model):
    """It used to get an empty answer, with no warning."""
    code, err = run_cli(["run", str(_long_prompt_recipe(tmp_path, short_context_model))])
    assert code == 2
    assert "1 of the 3 train prompts are longer than the model's context (64 tokens, max_position_embeddings in " in err
    assert "example 'train-2' has" in err and "or set on_invalid: skip to leave them out" in err
    assert not (tmp_path / "run").exists()


def test_on_invalid_skip_leaves_too_long_prompts_out_and_lists_them(tmp_path, short_context_model, capsys):
    from s3ft.pipeline import preflight
    from s3ft.session import Session

    s = Session(load_config(_long_prompt_recipe(tmp_path, short_context_model, "on_invalid: skip\n")))
    preflight(s)
    assert [e.id for e in s.train_examples()] == ["train-1", "train-3"]
    assert [e.id for e in s.eval_examples()] == ["test-1", "test-3"]
    assert s.task.invalid["train"][0]["id"] == "train-2" and "longer than the model's context (64)" in s.task.invalid["train"][0]["error"]
    assert "skipped 1 of the 3 train prompts" in capsys.readouterr().out


def test_cuda_without_cuda_is_a_preflight_error(tmp_path, dummy_model, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"task: squad\nmodel: {dummy_model}\noutput_dir: {tmp_path / 'run'}\ndevice: cuda\n")
    code, err = run_cli(["run", str(recipe)])
    assert code == 2 and "s3ft: error: device 'cuda': no CUDA device is visible to PyTorch" in err, err
    assert not (tmp_path / "run").exists()


def test_a_cuda_index_the_machine_lacks_is_named(monkeypatch):
    import torch

    from s3ft.models import ModelError, check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for ok in ("auto", "cpu", "cuda", "cuda:0", "cuda:1"):
        check_device(ok)
    with pytest.raises(ModelError, match=r"device 'cuda:2': this machine has 2 CUDA devices \(cuda:0 to cuda:1\)"):
        check_device("cuda:2")


# ---------------------------------------------------------------- random bad recipes
def _out_of_range(name: str) -> st.SearchStrategy:
    """Values field `name` must refuse: outside its range, not finite, of another type."""
    meta, t = FIELDS[name].metadata, _type_str(name).replace(" ", "")
    bad: list[st.SearchStrategy] = [st.sampled_from([[1, [2]], {"a": {"b": 1}}, "caf\ud800"])]
    finite = st.floats(allow_nan=False, allow_infinity=False)
    if "ge" in meta:
        bad.append(finite.filter(lambda v: v < meta["ge"]))
    if "gt" in meta:
        bad.append(finite.filter(lambda v: v <= meta["gt"]))
    if "le" in meta:
        bad.append(finite.filter(lambda v: v > meta["le"]))
    if "lt" in meta:
        bad.append(finite.filter(lambda v: v >= meta["lt"]))
    if t.startswith("float"):
        bad.append(st.sampled_from([math.inf, -math.inf, math.nan]))
    if t.startswith("int"):
        bad.append(st.integers(min_value=2**63, max_value=10**4000))
        bad.append(finite.filter(lambda v: not v.is_integer()))
    return st.one_of(bad)


NUMERIC = sorted(n for n in FIELDS if _type_str(n).replace(" ", "").split("|")[0] in ("int", "float"))
CHOICES = sorted(n for n in FIELDS if FIELDS[n].metadata.get("choices") or FIELDS[n].metadata.get("pattern"))
SAFE = ("seed", "train_size", "eval_size", "lora_r", "learning_rate", "temperature", "qa_policy", "method",
        "use_peft", "judge_workers", "max_length", "warmup_ratio")  # valid-or-not company for the bad entry


@st.composite
def bad_recipe(draw) -> tuple[bytes, str]:
    """(recipe after the fixed task/model/output_dir lines, what makes it bad)."""
    import yaml

    kind = draw(st.sampled_from(["range", "choice", "unknown key", "duplicate", "deep", "laughs", "bytes", "type"]))
    entry: dict = {}
    company = draw(st.dictionaries(st.sampled_from(SAFE), st.one_of(st.integers(-5, 5), st.floats(allow_nan=False),
                                                                     st.text(max_size=8), st.booleans()), max_size=3))
    if kind == "range":
        name = draw(st.sampled_from(NUMERIC))
        entry = {name: draw(_out_of_range(name))}
    elif kind == "choice":
        name = draw(st.sampled_from(CHOICES))
        meta = FIELDS[name].metadata
        value = draw(st.text(min_size=1, max_size=12).filter(
            lambda v: v.strip() and v not in (meta.get("choices") or ()) and v.lower() not in ("none", "null", "~")
            and not (meta.get("pattern") and re.fullmatch(meta["pattern"][0], v))))
        entry = {name: value}
    elif kind == "unknown key":
        entry = {draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in FIELDS)): 1}
    elif kind == "type":
        name = draw(st.sampled_from(sorted(FIELDS)))
        entry = {name: draw(st.sampled_from([{"x": [1, {"y": None}]}, [[]], "x" * 0]))}
        if entry[name] == "" and _type_str(name).replace(" ", "") in ("str|None", "list[str]", "list[int]", "list[float]"):
            entry = {name: {"x": [1]}}
    company = {k: v for k, v in company.items() if k not in entry}
    head = yaml.safe_dump(company, allow_unicode=True) if company else ""
    if kind in ("range", "choice", "unknown key", "type"):
        tail = yaml.safe_dump(entry, allow_unicode=False)
    elif kind == "duplicate":
        tail = "eval_base: true\neval_base: false\n"
    elif kind == "deep":
        depth = draw(st.integers(90, 5000))
        tail = "lora_target_modules: " + "[" * depth + "]" * depth + "\n"
    elif kind == "laughs":
        n = draw(st.integers(4, 9))
        lines = ["methods:", "  - &a [" + ",".join(["lol"] * 9) + "]"]
        for x, y in zip("abcdefghij"[: n - 1], "bcdefghij"[: n - 1]):
            lines.append(f"  - &{y} [" + ",".join([f"*{x}"] * 9) + "]")
        tail = "\n".join(lines) + "\n"
    else:  # bytes that are not UTF-8
        raw = draw(st.binary(max_size=10)) + draw(st.sampled_from([b"\xff", b"\xe9", b"\xc3\x28", b"\xed\xa0\x80"]))
        return head.encode() + b"eval_base: true  # " + raw + b"\n", kind
    return (head + tail).encode(), kind


@SETTINGS
@given(case=bad_recipe())
def test_random_bad_recipes_end_in_a_message_naming_the_recipe(tmp_path, dummy_model, existing_run, case):
    text, kind = case
    recipe = tmp_path / "random.yaml"
    body = f"task: squad\nmodel: {dummy_model}\noutput_dir: {existing_run}\n"
    recipe.write_bytes(body.encode() + text)
    before = snapshot(existing_run)
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    assert str(recipe) in str(e.value) and len(str(e.value)) < 1000, str(e.value)
    code, err = run_cli(["run", str(recipe)])
    assert code == 2 and err.startswith(f"s3ft: error: recipe {recipe}"), err
    assert "Traceback" not in err and "\n" not in err
    assert snapshot(existing_run) == before


# ---------------------------------------------------------------- random bad rows in data files
GOOD_ROW = {"id": "r", "prompt": "Capital of France?", "response": "Paris"}


def _blank_or_good(line: bytes) -> bool:
    """A line the reader skips (blank) or accepts (a valid row): not a bad row."""
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    if not text.strip():
        return True
    try:
        row = json.loads(text)
    except ValueError:
        return False
    return isinstance(row, dict) and all(isinstance(row.get(k), str) and row[k].strip() for k in ("id", "prompt", "response"))


scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5))
bad_row = st.one_of(
    st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b and not _blank_or_good(b)),
    st.recursive(scalar, lambda c: st.lists(c, max_size=3), max_leaves=5).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"prompt": st.one_of(scalar, st.just("   ")).filter(lambda v: not (isinstance(v, str) and v.strip())),
                           "response": st.just("r")}).map(lambda r: json.dumps({"id": "x", **r}).encode()),
    st.sampled_from([b'{"id": "d", "prompt": "p", "response": "r", "prompt": "q"}',
                     b'{"id": "s", "prompt": "caf\\ud800", "response": "r"}',
                     b'{"id": 1' + b"0" * 5000 + b', "prompt": "p", "response": "r"}',
                     b'{"id": "n", "prompt": "p", "response": "r", "x": ' + b"[" * 80 + b"]" * 80 + b"}",
                     b'{"id": "m", "prompt": "p", "response": "r", "x": ' + b"[" * 50000 + b"]" * 50000 + b"}"]),
)


@SETTINGS
@given(n_good=st.integers(1, 8), where=st.integers(0, 100), bad=bad_row, gz=st.booleans())
def test_random_bad_rows_end_in_a_message_naming_file_and_line(tmp_path, dummy_model, existing_run, n_good, where, bad, gz):
    import gzip

    lines = [json.dumps(dict(GOOD_ROW, id=f"r{i}")).encode() for i in range(n_good)]
    k = where % (n_good + 1)
    lines.insert(k, bad)
    data = tmp_path / ("rows.jsonl.gz" if gz else "rows.jsonl")
    raw = b"".join(line + b"\n" for line in lines)
    data.write_bytes(gzip.compress(raw) if gz else raw)
    recipe = tmp_path / "data.yaml"
    recipe.write_text(f"task: jsonl\nid_field: id\ndata_files: {{train: {data}, test: {data}}}\nmodel: {dummy_model}\n"
                      f"output_dir: {existing_run}\n")
    before = snapshot(existing_run)
    code, err = run_cli(["run", str(recipe)])
    assert code == 2 and err.startswith(f"s3ft: error: {data} line {k + 1}"), (bad[:100], err[:300])
    assert "Traceback" not in err and "\n" not in err and len(err) < 1000
    assert snapshot(existing_run) == before
