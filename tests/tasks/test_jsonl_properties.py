"""Property-based tests of the JSONL loader: any valid file loads row for row; any single
corrupted line is reported with its file and line number (and skipped with on_invalid: skip)."""
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3ft.tasks import get_task
from s3ft.tasks.jsonl import DataError

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(lambda s: s.strip())
row = st.fixed_dictionaries({"prompt": text, "response": text}, optional={"answers": st.lists(text, max_size=3), "n": st.integers()})
CORRUPTIONS = [
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'"just a string"', "expected a JSON object"),
    (b'{"prompt": "q"}', "field 'response'"),
    (b'{"prompt": 3, "response": "r"}', "field 'prompt'"),
    (b'{"prompt": "q", "response": ""}', "field 'response'"),
    (b'{"prompt": "q", "response": null}', "field 'response'"),
    (b'\xc3\x28', "not valid UTF-8"),
]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def write(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))


@SETTINGS
@given(rows=st.lists(row, min_size=1, max_size=25), blank_every=st.integers(0, 5))
def test_valid_files_load_row_for_row(tmp_path, rows, blank_every):
    lines = []
    for i, r in enumerate(rows):
        if blank_every and i % blank_every == 0:
            lines.append(b"   ")
        lines.append(json.dumps(r, ensure_ascii=bool(i % 2)).encode())
    p = tmp_path / "ok.jsonl"
    write(p, lines)
    exs = get_task("jsonl", data_files={"train": str(p)}).load("train")
    assert [e.gold for e in exs] == [r["response"] for r in rows]
    assert [e.prompt[-1]["content"] for e in exs] == [r["prompt"] for r in rows]
    assert len({e.id for e in exs}) == len(rows)
    for e, r in zip(exs, rows):
        assert e.meta.get("answers") == r.get("answers")


@SETTINGS
@given(rows=st.lists(row, min_size=2, max_size=20), where=st.integers(0, 10**6), which=st.integers(0, len(CORRUPTIONS) - 1))
def test_one_bad_line_is_named_and_skippable(tmp_path, rows, where, which):
    bad, needle = CORRUPTIONS[which]
    lines = [json.dumps(r).encode() for r in rows]
    k = where % (len(lines) + 1)
    lines.insert(k, bad)
    p = tmp_path / "bad.jsonl"
    write(p, lines)
    try:
        get_task("jsonl", data_files={"train": str(p)}).load("train")
        raise AssertionError("a corrupted line was accepted")
    except DataError as e:
        assert f"{p} line {k + 1}" in str(e) and needle in str(e), str(e)
    t = get_task("jsonl", data_files={"train": str(p)}, on_invalid="skip")
    exs = t.load("train")
    assert [e.gold for e in exs] == [r["response"] for r in rows]
    assert [b["line"] for b in t.invalid["train"]] == [k + 1]
