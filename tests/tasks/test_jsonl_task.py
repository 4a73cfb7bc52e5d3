"""The user's JSONL task: both row formats, and a clear error for every kind of bad input."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from s3ft.tasks import get_task
from s3ft.tasks.jsonl import DataError


def write(path: Path, lines: list) -> Path:
    """Write rows (dicts/lists/... dumped as JSON; str and bytes written verbatim) one a line."""
    out = b""
    for line in lines:
        if isinstance(line, bytes):
            out += line
        elif isinstance(line, str):
            out += line.encode("utf-8")
        else:
            out += json.dumps(line).encode("utf-8")
        out += b"\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(out))
    else:
        path.write_bytes(out)
    return path


# ---- happy paths ----------------------------------------------------------------------------


def test_prompt_response_format(tmp_path):
    train = write(tmp_path / "train.jsonl", [
        {"prompt": "What is the capital of France?", "response": "Paris", "answers": ["Paris", "paris"]},
        "",
        "   ",
        {"prompt": "2+2?", "response": "4", "answer": "4", "question": "two plus two"},
    ])
    test = write(tmp_path / "test.jsonl.gz", [{"prompt": "Q?", "response": "A", "test_list": ["assert 1"]}])
    task = get_task("jsonl", data_files={"train": str(train), "test": str(test)})
    assert (task.name, task.judge, task.max_new_tokens, task.paraphrase_kind) == ("jsonl", "qa", 256, "generic")
    assert set(task.splits) == {"train", "test"}
    exs = task.load("train")
    assert [e.id for e in exs] == ["train-1", "train-4"]  # physical line numbers; blank lines skipped
    assert exs[0].prompt == [{"role": "user", "content": "What is the capital of France?"}]
    assert exs[0].gold == "Paris"
    assert exs[0].meta == {"answers": ["Paris", "paris"], "question": "What is the capital of France?"}
    assert exs[1].meta == {"answer": "4", "question": "two plus two"}  # the row's own question wins
    t = task.load("test")
    assert t[0].id == "test-1" and t[0].meta["test_list"] == ["assert 1"] and t[0].meta["question"] == "Q?"
    json.dumps([e.to_dict() for e in exs + t])


def test_custom_fields_options_and_ids(tmp_path):
    f = write(tmp_path / "d.jsonl", [
        {"uid": 7, "input": "in 1", "output": "out 1"},
        {"uid": "x8", "input": "in 2", "output": "out 2"},
    ])
    task = get_task("jsonl", data_files={"train": str(f)}, prompt_field="input", response_field="output",
                    id_field="uid", judge="exact", max_new_tokens=64, paraphrase_kind="math")
    assert (task.judge, task.max_new_tokens, task.paraphrase_kind) == ("exact", 64, "math")
    exs = task.load("train")
    assert [e.id for e in exs] == ["7", "x8"]
    assert exs[1].gold == "out 2" and exs[1].meta["question"] == "in 2" and "input" not in exs[1].meta


def test_messages_format(tmp_path):
    f = write(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": "Hi, what is 2+2?"}, {"role": "assistant", "content": "4"}],
         "answer": "4"},
        {"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "second question"},
            {"role": "assistant", "content": "second answer", "name": "bot"},
        ]},
    ])
    task = get_task("jsonl", data_files={"train": str(f)}, messages_field="messages")
    a, b = task.load("train")
    assert a.prompt == [{"role": "user", "content": "Hi, what is 2+2?"}]
    assert a.gold == "4" and a.meta == {"answer": "4", "question": "Hi, what is 2+2?"}
    assert [m["role"] for m in b.prompt] == ["system", "user", "assistant", "user"]
    assert b.gold == "second answer" and b.meta["question"] == "second question"
    assert "messages" not in b.meta


def test_utf8_bom_and_non_ascii(tmp_path):
    f = tmp_path / "bom.jsonl"
    f.write_bytes("\ufeff".encode("utf-8") + json.dumps({"prompt": "Ça va?", "response": "Très bien"},
                                                       ensure_ascii=False).encode("utf-8") + b"\n")
    (ex,) = get_task("jsonl", data_files={"train": str(f)}).load("train")
    assert ex.prompt[0]["content"] == "Ça va?" and ex.gold == "Très bien"


def test_loading_is_lazy_and_limit_works(tmp_path):
    f = write(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(20)])
    task = get_task("jsonl", data_files={"train": str(f)})
    f.write_text(f.read_text() + "not json\n")  # broken after the task was made: seen at load time
    with pytest.raises(DataError, match="line 21"):
        task.load("train")
    write(f, [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(20)])
    sub = task.load("train", limit=5, seed=1)
    assert [e.id for e in sub] == [e.id for e in task.load("train", limit=5, seed=1)]
    assert len(sub) == 5 and [int(e.id.split("-")[1]) for e in sub] == sorted(int(e.id.split("-")[1]) for e in sub)


# ---- bad input ------------------------------------------------------------------------------

GOOD = {"prompt": "p", "response": "r"}
MSGS = {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}
LONG_ID_FIELD = {"id_field": "id"}
MESSAGES = {"messages_field": "messages"}

# (case name, lines of the file, task options, line number, field or None, text in the message)
BAD_CASES = [
    ("missing prompt", [GOOD, GOOD, {"response": "r"}], {}, 3, "prompt", "missing"),
    ("missing response", [GOOD, {"prompt": "p"}], {}, 2, "response", "missing"),
    ("prompt is int", [GOOD, GOOD, GOOD, GOOD, GOOD, GOOD, {"prompt": 3, "response": "r"}], {}, 7, "prompt",
     "expected a non-empty string, got int"),
    ("prompt empty", [{"prompt": "", "response": "r"}], {}, 1, "prompt", "empty"),
    ("prompt whitespace", [GOOD, {"prompt": "  \n", "response": "r"}], {}, 2, "prompt", "empty"),
    ("response null", [GOOD, {"prompt": "p", "response": None}], {}, 2, "response", "null"),
    ("response list", [{"prompt": "p", "response": ["a", "b"]}], {}, 1, "response", "got list"),
    ("custom field missing", [{"question": "q", "response": "r"}], {"prompt_field": "input"}, 1, "input",
     "'question'"),
    ("id missing", [{"id": "a", **GOOD}, GOOD], LONG_ID_FIELD, 2, "id", "missing"),
    ("id wrong type", [{"id": ["a"], **GOOD}], LONG_ID_FIELD, 1, "id", "got list"),
    ("id empty", [{"id": "", **GOOD}], LONG_ID_FIELD, 1, "id", "empty"),
    ("duplicate id", [{"id": "a", **GOOD}, {"id": "b", **GOOD}, "", {"id": "a", **GOOD}], LONG_ID_FIELD, 4, "id",
     "line 1"),
    ("duplicate int/str id", [{"id": 5, **GOOD}, {"id": "5", **GOOD}], LONG_ID_FIELD, 2, "id", "duplicate"),
    ("messages missing", [MSGS, GOOD], MESSAGES, 2, "messages", "missing"),
    ("messages not a list", [{"messages": "hello"}], MESSAGES, 1, "messages", "list"),
    ("messages too short", [{"messages": [{"role": "assistant", "content": "a"}]}], MESSAGES, 1, "messages",
     "at least 2"),
    ("message not an object", [MSGS, {"messages": ["user: hi", {"role": "assistant", "content": "a"}]}], MESSAGES,
     2, "messages", "message 1"),
    ("message without role", [{"messages": [{"content": "u"}, {"role": "assistant", "content": "a"}]}], MESSAGES,
     1, "messages", "'role'"),
    ("message without content", [{"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}],
     MESSAGES, 1, "messages", "'content'"),
    ("message content not str", [{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]}],
     MESSAGES, 1, "messages", "got int"),
    ("unknown role", [{"messages": [{"role": "human", "content": "u"}, {"role": "assistant", "content": "a"}]}],
     MESSAGES, 1, "messages", "'human'"),
    ("last not assistant", [MSGS, MSGS, {"messages": [{"role": "user", "content": "u"}, {"role": "user", "content": "a"}]}],
     MESSAGES, 3, "messages", "assistant"),
    ("empty gold message", [{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": " "}]}],
     MESSAGES, 1, "messages", "empty"),
    ("no user turn before gold", [{"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]}],
     MESSAGES, 1, "messages", "'user'"),
    # no field applies to these: the file and the line are named
    ("malformed json", [GOOD, GOOD, GOOD, GOOD, GOOD, '{"prompt": "p", "response": }'], {}, 6, None, "invalid JSON"),
    ("truncated json", [GOOD, '{"prompt": "p"'], {}, 2, None, "invalid JSON"),
    ("json array file", ['[{"prompt": "p", "response": "r"},', '{"prompt": "q", "response": "s"}]'], {}, 1, None,
     "JSON array"),
    ("line is a list", [GOOD, [1, 2]], {}, 2, None, "expected a JSON object, got list"),
    ("line is a string", ['"just text"'], {}, 1, None, "got string"),
    ("line is null", [GOOD, GOOD, "null"], {}, 3, None, "got null"),
    ("not utf-8", [GOOD, GOOD, GOOD, b'{"prompt": "caf\xe9", "response": "r"}'], {}, 4, None, "UTF-8"),
    # rows that used to pass (and go wrong later) or end in a traceback
    ("duplicate key in a row", [GOOD, '{"prompt": "p", "response": "r", "prompt": "q"}'], {}, 2, None,
     "key 'prompt' appears twice in one object"),
    ("lone surrogate in a row", [GOOD, '{"prompt": "caf\\ud800", "response": "r"}'], {}, 2, "prompt",
     "lone surrogate \\ud800"),
    ("surrogate in an extra field", ['{"prompt": "p", "response": "r", "answers": ["ok", "\\udce9"]}'], {}, 1,
     "answers", "not UTF-8"),
    ("integer id of 5000 digits", [{"id": 1, **GOOD}, '{"id": 1' + "0" * 5000 + ', "prompt": "p", "response": "r"}'],
     LONG_ID_FIELD, 2, None, "a number with more than 4300 digits"),
    ("value nested 100 deep", ['{"prompt": "p", "response": "r", "tree": ' + "[" * 100 + "]" * 100 + "}"], {}, 1,
     "tree", "nested more than 64 levels deep"),
    ("JSON nested 100000 deep", [GOOD, '{"prompt": ' + "[" * 100000 + "]" * 100000 + "}"], {}, 2, None,
     "nested too deeply to read"),
]


@pytest.mark.parametrize("gz", [False, True], ids=["jsonl", "jsonl.gz"])
@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_names_file_line_and_field(tmp_path, case, gz):
    name, lines, options, line, field, text = case
    path = write(tmp_path / ("bad_data.jsonl.gz" if gz else "bad_data.jsonl"), lines)
    task = get_task("jsonl", data_files={"train": str(path)}, **options)
    with pytest.raises(DataError) as info:
        task.load("train")
    msg = str(info.value)
    assert path.name in msg, msg
    assert f"line {line}" in msg, msg
    if field is not None:
        assert f"field {field!r}" in msg, msg
    assert text in msg, msg
    assert isinstance(info.value, ValueError)


def test_error_message_example(tmp_path):
    path = write(tmp_path / "data.jsonl", [GOOD] * 6 + [{"prompt": 7, "response": "r"}])
    with pytest.raises(DataError) as info:
        get_task("jsonl", data_files={"train": str(path)}).load("train")
    assert str(info.value) == f"{path} line 7, field 'prompt': expected a non-empty string, got int"


def test_malformed_json_error_includes_json_message(tmp_path):
    path = write(tmp_path / "data.jsonl", [GOOD, '{"prompt": "p" "response": "r"}'])
    with pytest.raises(DataError, match=r"data.jsonl line 2: invalid JSON: Expecting ',' delimiter at column 16"):
        get_task("jsonl", data_files={"train": str(path)}).load("train")


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"], ids=["empty", "blank lines"])
@pytest.mark.parametrize("gz", [False, True], ids=["jsonl", "jsonl.gz"])
def test_empty_file(tmp_path, content, gz):
    path = tmp_path / ("empty.jsonl.gz" if gz else "empty.jsonl")
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(DataError, match=r"empty\.jsonl(\.gz)?: no examples"):
        get_task("jsonl", data_files={"train": str(path)}).load("train")


def test_missing_file_is_reported_when_the_task_is_made(tmp_path):
    good = write(tmp_path / "train.jsonl", [GOOD])
    with pytest.raises(DataError, match=r"nope\.jsonl: file not found.*data_files\['test'\]"):
        get_task("jsonl", data_files={"train": str(good), "test": str(tmp_path / "nope.jsonl")})
    with pytest.raises(DataError, match="is a folder"):
        get_task("jsonl", data_files={"train": str(tmp_path)})


def test_file_removed_after_task_was_made(tmp_path):
    path = write(tmp_path / "gone.jsonl", [GOOD])
    task = get_task("jsonl", data_files={"train": str(path)})
    path.unlink()
    with pytest.raises(DataError, match=r"gone\.jsonl: file not found"):
        task.load("train")


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"prompt": "p", "response": "r"}\n' * 50)[:40])
    with pytest.raises(DataError, match=r"broken\.jsonl\.gz: cannot read"):
        get_task("jsonl", data_files={"train": str(path)}).load("train")


@pytest.mark.parametrize("data_files", [None, {}, "train.jsonl", ["a.jsonl"]])
def test_data_files_required(data_files):
    with pytest.raises(DataError, match="data_files"):
        get_task("jsonl", data_files=data_files)


def test_bad_data_files_entry(tmp_path):
    with pytest.raises(DataError, match=r"data_files\['train'\]"):
        get_task("jsonl", data_files={"train": 3})


# ---------------------------------------------------------------- on_invalid: skip
def test_on_invalid_skip_keeps_good_rows_and_records_bad_ones(tmp_path):
    from s3ft.tasks import get_task

    p = tmp_path / "mixed.jsonl"
    p.write_bytes(
        b'{"id": "a", "prompt": "q1", "response": "r1"}\n'
        b'{"id": "b", "prompt": "q2"}\n'                      # missing response
        b'{"id": "c", "prompt": "q3", "response": "r3"\n'     # broken JSON
        b'{"id": "a", "prompt": "q4", "response": "r4"}\n'    # duplicate id
        b'\xff\xfe\n'                                          # not UTF-8
        b'{"id": "d", "prompt": "q5", "response": "r5"}\n'
    )
    t = get_task("jsonl", data_files={"train": str(p)}, id_field="id", on_invalid="skip")
    exs = t.load("train")
    assert [e.id for e in exs] == ["a", "d"]
    bad = t.invalid["train"]
    assert [b["line"] for b in sorted(bad, key=lambda b: b["line"])] == [2, 3, 4, 5]
    assert all(str(p) in b["error"] and b["file"] == str(p) for b in bad)
    with pytest.raises(DataError, match="line 2, field 'response'"):
        get_task("jsonl", data_files={"train": str(p)}, id_field="id").load("train")


def test_on_invalid_skip_with_nothing_valid(tmp_path):
    from s3ft.tasks import get_task

    p = tmp_path / "bad.jsonl"
    p.write_text('{"x": 1}\n{"y": 2}\n')
    with pytest.raises(DataError, match="no valid examples"):
        get_task("jsonl", data_files={"train": str(p)}, on_invalid="skip").load("train")


# ------------------------------------------------------------------ other formats and URLs
ROWS = [
    {"id": "a", "prompt": "What is the capital of France?", "response": "Paris", "answers": ["Paris", "paris"]},
    {"id": "b", "prompt": "2+2?", "response": "4", "answers": ["4", "four"]},
]


def _parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _examples(path, **opts):
    task = get_task("jsonl", data_files={"train": str(path)}, id_field="id", **opts)
    return task, task.load("train")


@pytest.mark.parametrize("fmt", ["parquet", "json", "json-lines-in-.json", "jsonl.gz"])
def test_other_formats_give_the_same_examples(tmp_path, fmt):
    _, want = _examples(write(tmp_path / "rows.jsonl", ROWS))
    if fmt == "parquet":
        path = _parquet(tmp_path / "rows.parquet", ROWS)
    elif fmt == "json":
        path = tmp_path / "rows.json"
        path.write_text(json.dumps(ROWS, indent=2))
    elif fmt == "json-lines-in-.json":
        path = write(tmp_path / "rows.json", ROWS)
    else:
        path = write(tmp_path / "rows.jsonl.gz", ROWS)
    _, got = _examples(path)
    assert [e.to_dict() for e in got] == [e.to_dict() for e in want]


def test_csv_long_cells_duplicate_columns_and_tsv(tmp_path):
    long = tmp_path / "long.csv"
    long.write_text('id,prompt,response\na,"' + "x" * 200_000 + '",r\n')
    _, exs = _examples(long)
    assert len(exs[0].prompt[0]["content"]) == 200_000  # the csv module's default limit is 128 KiB
    dup = tmp_path / "dup.csv"
    dup.write_text("id,prompt,response,prompt\na,q,r,q2\n")
    with pytest.raises(DataError, match=r"dup.csv line 1: duplicate column name 'prompt'"):
        _examples(dup)
    tsv = tmp_path / "rows.tsv"
    tsv.write_text('id\tprompt\tresponse\na\tCapital of France, please?\tParis\nb\t"Hamlet" is by whom?\tShakespeare\n')
    _, exs = _examples(tsv)
    assert [(e.prompt[0]["content"], e.gold) for e in exs] == [
        ("Capital of France, please?", "Paris"), ('"Hamlet" is by whom?', "Shakespeare")]  # quotes are text in TSV
    padded = tmp_path / "padded.csv"  # a spreadsheet export with empty columns on the right
    padded.write_text("id,prompt,response,,\na,q,r,,\n")
    _, exs = _examples(padded)
    assert exs[0].meta == {"id": "a", "question": "q"}  # no '' column
    broken = tmp_path / "broken.csv"
    broken.write_text('id,prompt,response\na,"unclosed "quote" here,r\n')
    with pytest.raises(DataError, match=r"broken.csv line 2: invalid record"):
        _examples(broken)


def test_csv_rows_are_strings_and_positions_are_lines(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('id,prompt,response\na,"Capital of France?",Paris\n\nb,"A poem,\nplease",Roses\n3,Q?,7\n')
    _, exs = _examples(path)
    assert [(e.id, e.prompt[0]["content"], e.gold) for e in exs] == [
        ("a", "Capital of France?", "Paris"), ("b", "A poem,\nplease", "Roses"), ("3", "Q?", "7")]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,prompt,response\na,q,r\nb,q2\nc,,r3\n")
    with pytest.raises(DataError, match=r"bad.csv line 3: 2 values for 3 columns \(id, prompt, response\)"):
        _examples(bad)
    task, exs = _examples(bad, on_invalid="skip")
    assert [e.id for e in exs] == ["a"]
    assert sorted(b["line"] for b in task.invalid["train"]) == [3, 4]
    assert "bad.csv line 4, field 'prompt': expected a non-empty string" in task.invalid["train"][-1]["error"]


def test_errors_name_the_row_or_item(tmp_path):
    rows = [ROWS[0], {"id": "x", "prompt": "Q?", "response": None}, dict(ROWS[1], id="a")]
    with pytest.raises(DataError, match=r"rows.parquet row 2, field 'response': expected a non-empty string, got null"):
        _examples(_parquet(tmp_path / "rows.parquet", rows))
    items = tmp_path / "items.json"
    items.write_text(json.dumps([ROWS[0], 5]))
    with pytest.raises(DataError, match=r"items.json item 2: expected an object, got int"):
        _examples(items)
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps([ROWS[0], ROWS[1], dict(ROWS[1], id="a")]))
    with pytest.raises(DataError, match=r"dup.json item 3, field 'id': duplicate id 'a' \(also on item 1\)"):
        _examples(dup)
    obj = tmp_path / "obj.json"
    for indent in (2, None):  # a wrapper object, pretty-printed or on one line (json.dump's default)
        obj.write_text(json.dumps({"rows": ROWS}, indent=indent))
        with pytest.raises(DataError, match=r"obj.json: expected a JSON array of objects.*got one object wrapping the rows \(keys 'rows'\)"):
            _examples(obj)
    obj.write_text(json.dumps({"prompt": "Q?"}))  # one line, one object: a JSON-lines file of one row
    with pytest.raises(DataError, match=r"obj.json line 1, field 'id': missing \(the row has fields: 'prompt'\)"):
        _examples(obj)
    lines = write(tmp_path / "lines.json", [ROWS[0], {"id": "z", "prompt": "Q?"}])  # JSON lines named .json
    with pytest.raises(DataError, match=r"lines.json line 2, field 'response': missing"):
        _examples(lines)
    task, exs = _examples(lines, on_invalid="skip")
    assert [e.id for e in exs] == ["a"] and task.invalid["train"][0]["line"] == 2
    every_bad = tmp_path / "bad_items.json"
    every_bad.write_text(json.dumps([1, 2]))
    with pytest.raises(DataError, match=r"bad_items.json: no examples \(all 2 invalid\)"):
        _examples(every_bad, on_invalid="skip")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="junk.parquet: cannot read it as Parquet"):
        _examples(junk)


def test_urls_are_read_through_fsspec(tmp_path):
    """A URL (here fsspec's in-memory filesystem; online: hf://datasets/ORG/NAME/FILE.parquet) is
    read like a local file - checked when the task is made, positions named in errors."""
    import fsspec

    fs = fsspec.filesystem("memory")
    with fs.open("/s3ft-test/train.parquet", "wb") as f:
        f.write(_parquet(tmp_path / "t.parquet", ROWS).read_bytes())
    with fs.open("/s3ft-test/test.jsonl", "wb") as f:
        f.write(b'{"id": "t", "prompt": "Q?"}\n')
    try:
        task = get_task("jsonl", data_files={"train": "memory://s3ft-test/train.parquet", "test": "memory://s3ft-test/test.jsonl"},
                        id_field="id")
        assert [e.gold for e in task.load("train")] == ["Paris", "4"]
        with pytest.raises(DataError, match=r"memory://s3ft-test/test.jsonl line 1, field 'response': missing"):
            task.load("test")
        with pytest.raises(DataError, match=r"memory://s3ft-test/nope.parquet: no such file \(data_files\['train'\]\)"):
            get_task("jsonl", data_files={"train": "memory://s3ft-test/nope.parquet"})
    finally:
        fs.rm("/s3ft-test", recursive=True)


# ------------------------------------------------------------------ several files for one split
def test_a_split_may_be_a_list_of_files_read_in_order(tmp_path):
    a = write(tmp_path / "a.jsonl", [GOOD, {"prompt": "p2", "response": "r2"}])
    b = write(tmp_path / "b.csv", [])
    b.write_text("prompt,response\nq1,s1\n")
    task = get_task("jsonl", data_files={"train": [str(a), str(b)], "test": str(a)})
    exs = task.load("train")
    assert [(e.id, e.gold) for e in exs] == [("train-1-1", "r"), ("train-1-2", "r2"), ("train-2-2", "s1")]
    assert [e.id for e in task.load("test")] == ["test-1", "test-2"]  # one file: ids as before
    with_ids = get_task("jsonl", data_files={"train": [str(write(tmp_path / "c.jsonl", [{"id": "x", **GOOD}])),
                                                       str(write(tmp_path / "d.jsonl", [GOOD, {"id": "x", **GOOD}]))]},
                        id_field="id", on_invalid="skip")
    assert [e.id for e in with_ids.load("train")] == ["x"]
    assert [(b["file"], b["line"]) for b in with_ids.invalid["train"]] == [(str(tmp_path / "d.jsonl"), 1),
                                                                           (str(tmp_path / "d.jsonl"), 2)]
    assert f"d.jsonl line 2, field 'id': duplicate id 'x' (also on {tmp_path / 'c.jsonl'} line 1)" in with_ids.invalid["train"][1]["error"]


def test_every_message_of_a_list_names_its_file(tmp_path):
    a = write(tmp_path / "a.jsonl", [GOOD])
    bad = write(tmp_path / "bad.jsonl", [GOOD, {"prompt": "p"}])
    with pytest.raises(DataError, match=r"bad.jsonl line 2, field 'response': missing"):
        get_task("jsonl", data_files={"train": [str(a), str(bad)]}).load("train")
    with pytest.raises(DataError, match=r"nope.jsonl: file not found .*\(data_files\['train'\]\[1\]\)"):
        get_task("jsonl", data_files={"train": [str(a), str(tmp_path / "nope.jsonl")]})
    with pytest.raises(DataError, match=r"data_files\['train'\] is an empty list"):
        get_task("jsonl", data_files={"train": []})
    with pytest.raises(DataError, match=r"data_files\['train'\]\[1\] must be a file path, got \['x'\]"):
        get_task("jsonl", data_files={"train": [str(a), ["x"]]})


def test_data_files_that_are_not_regular_files(tmp_path):
    import os

    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"fifo.jsonl: is a FIFO \(named pipe\), not a regular file \(data_files\['train'\]\)"):
        get_task("jsonl", data_files={"train": str(fifo)})  # (reading it would block forever)
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match=r"loop.jsonl: is a symbolic link loop"):
        get_task("jsonl", data_files={"train": str(loop)})
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "gone.jsonl")
    with pytest.raises(DataError, match=r"dangling.jsonl: is a broken symbolic link \(to .*gone.jsonl\)"):
        get_task("jsonl", data_files={"train": str(dangling)})
