"""The user's own task: JSON lines files, one example per line.

Two row formats:

- prompt / response (default field names `prompt`, `response`)::

      {"prompt": "What is the capital of France?", "response": "Paris", "answers": ["Paris"]}

- chat messages (set `messages_field`, e.g. "messages"); the last message is the gold
  response and must have role "assistant", the earlier ones are the prompt (the one before the
  gold must be a user turn)::

      {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}

Every other field of a row is kept in `Example.meta`, so judges can read it (`answers` for the
qa judge, `answer` for the math judge, `test_list` / `test_setup_code` for the code judge).
`meta["question"]` is the row's own `question` field when it has a non-empty string one, else
the prompt text (the last user turn for chat rows).

Ids: `str(row[id_field])` when `id_field` is set (ids must be unique within a split), else
"<split>-<line number>". Blank lines are skipped; line numbers count every physical line, so
they match what an editor shows. A split may be a list of files, read one after another
(`data_files: {train: [a.jsonl, b.jsonl]}`); then the default id is "<split>-<k>-<line number>"
for the k-th file (1-based), and every message names the file.

Every row is checked whole: a key given twice in one JSON object (JSON keeps the last one
silently), text that is not valid Unicode (a lone surrogate such as "\ud800", which the
tokenizer would fail on mid-stage), an integer of more digits than Python reads, and values
nested more than 64 levels deep are refused, naming the file, the line and the field. Plain `.jsonl` and gzip'd `.jsonl.gz` are both accepted
(gzip is recognised by its magic bytes). Files are read when a split is loaded, not before;
every problem raises `DataError` naming the file, the line and the field (a missing file is
reported at once, when the task is made).

Other formats, by file name: `.parquet` (positions are "row N", 1-based), `.csv` / `.tsv` (a
header row, then one example per record; every value is a string; positions are the line a
record starts on) and `.json` (an array of objects, "item N"; a `.json` file holding JSON lines
is read as JSON lines, "line N"). A path may also be a URL that fsspec opens - `hf://datasets/ORG/NAME/FILE.parquet`
for a file of a Hugging Face Hub dataset (online), `s3://...`, `https://...`. A path with `*`, `?` or `[`
that names no file as written is a glob: the files it matches (shards, `data/train-*.parquet`, a URL
too) in name order, read one after another like a list.

Instead of files, `dataset_name` names a dataset that the `datasets` library loads - a Hub name
(with `dataset_config` and `dataset_revision`), a folder written by `save_to_disk`, or a local
folder of data files; its splits are the task's splits. Its rows are checked the same way, and
messages name the dataset, the split and the row ("dataset ORG/NAME split train row 7, field
'answer': ...").

This module also holds `bundled_rows`, the reader of the data files shipped inside the package
(`s3ft/data/...`), used by the built-in tasks.
"""
from __future__ import annotations

import gzip
import json
import sys
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from s3ft.checks import brief, path_problem, value_problem
from s3ft.tasks.base import Task
from s3ft.types import Example

ROLES = ("system", "user", "assistant")


class DataError(ValueError):
    """A data file that cannot be used, with the file, line and field at fault."""


# ---------------------------------------------------------------------------------------------
# bundled data


@lru_cache(maxsize=None)
def bundled_rows(*parts: str) -> tuple[dict[str, Any], ...]:
    """All rows of a gzip'd JSON lines file shipped in the package, e.g.
    `bundled_rows("gsm8k", "train.jsonl.gz")`. Cached: treat the rows as read-only."""
    ref = resources.files("s3ft") / "data"
    for part in parts:  # one step at a time: multi-argument joinpath needs Python 3.11
        ref = ref / part
    with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


# ---------------------------------------------------------------------------------------------
# user files


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "string"
    return {bool: "boolean", int: "int", float: "float", list: "list", dict: "object"}.get(
        type(value), type(value).__name__
    )


Source = Path | str  # a local path, or a URL string (a Path would fold its "//")


def is_url(path: str | Path) -> bool:
    return isinstance(path, str) and "://" in path


def as_source(path: str | Path) -> Source:
    return path if is_url(path) else Path(path)


def _format(path: Source) -> str:
    """jsonl, parquet, csv, tsv or json, from the file name (a trailing .gz is looked through)."""
    name = str(path).lower().split("?")[0]
    if name.endswith(".gz"):
        name = name[:-3]
    for fmt in ("parquet", "csv", "tsv", "json"):
        if name.endswith("." + fmt):
            return fmt
    return "jsonl"


def check_source(path: Source) -> None:
    """Fail at once for a file that is not there (a URL: asked of its filesystem)."""
    if is_url(path):
        try:
            import fsspec

            fs, inner = fsspec.core.url_to_fs(path)
            found = fs.isfile(inner)
        except Exception as e:
            raise DataError(f"{path}: cannot reach it ({type(e).__name__}: {e})") from e
        if not found:
            import os

            offline = path.startswith("hf://") and os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
            raise DataError(f"{path}: no such file" + (" - or not reachable: HF_HUB_OFFLINE is set, so the Hub is not asked"
                                                       if offline else ""))
        return
    if (problem := path_problem(path)) is not None:
        if problem == "is a folder":
            problem += ", expected a data file (.jsonl, .jsonl.gz, .parquet, .csv, .json)"
        raise DataError(f"{path}: {problem}")


def _read_bytes(path: Source) -> bytes:
    """The file's bytes, gunzipped when they are gzip (recognised by the magic bytes)."""
    if is_url(path):
        try:
            import fsspec

            with fsspec.open(path, "rb") as f:
                data = f.read()
        except Exception as e:
            raise DataError(f"{path}: cannot read it ({type(e).__name__}: {e})") from e
    else:
        check_source(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read the file ({e})") from e
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{path}: cannot read the file ({e})") from e
    return data


def _numbered_lines(data: bytes) -> list[tuple[int, bytes]]:
    """(line number, raw bytes) of every line."""
    return list(enumerate(data.splitlines(), start=1))


def _skip_or_raise(err: DataError, pos: int, skip_bad_lines: list | None) -> None:
    """A bad row: raise, or (on_invalid: skip, `skip_bad_lines` a list) record it and go on."""
    if skip_bad_lines is None:
        raise err
    skip_bad_lines.append({"line": pos, "error": str(err)})


def read_rows(path: Source, skip_bad_lines: list | None = None) -> tuple[str, Iterable[tuple[int, dict[str, Any]]]]:
    """The rows of a data file in any of the accepted formats, as (unit, (position, row)s): the
    unit says what a position counts - "line" (JSON lines, CSV: the line a record starts on),
    "row" (Parquet) or "item" (a JSON array). Bad rows raise DataError naming the position, or
    with `skip_bad_lines` (a list) are appended to it as {line, error} and left out."""
    fmt = _format(path)
    if fmt == "jsonl":
        return "line", iter_jsonl_rows(path, skip_bad_lines)  # lazy: problems surface in file order
    data = _read_bytes(path)
    unit = {"json": "item", "parquet": "row"}.get(fmt, "line")
    if fmt == "json":
        text = _decode(path, data)
        try:
            rows = loads(text, str(path))
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":
                raise DataError(f"{path} line {e.lineno}: invalid JSON: {e.msg} at column {e.colno}") from e
            rows = None
        if not isinstance(rows, list):  # JSON lines in a .json file (one line holds one object)...
            lines = _numbered_lines(data)
            if isinstance(rows, dict) and (sum(1 for _, raw in lines if raw.strip()) > 1 or any(
                    isinstance(v, list) and v and all(isinstance(x, dict) for x in v) for v in rows.values())):
                keys = ", ".join(map(repr, list(rows)[:5]))  # ...but not an object wrapping the rows, {"data": [...]}
                raise DataError(f"{path}: expected a JSON array of objects, or one JSON object per line; got one object "
                                f"wrapping the rows (keys {keys}) - put the rows themselves in the file")
            return "line", _iter_lines(path, lines, skip_bad_lines)
        items = list(enumerate(rows, start=1))
    elif fmt in ("csv", "tsv"):
        items = _csv_items(path, _decode(path, data), "\t" if fmt == "tsv" else ",", skip_bad_lines)
    else:  # parquet
        import io

        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(io.BytesIO(data)).to_pylist()
        except Exception as e:
            raise DataError(f"{path}: cannot read it as Parquet ({type(e).__name__}: {e})") from e
        items = list(enumerate(rows, start=1))
    out = []
    for pos, row in items:
        if not isinstance(row, dict):
            _skip_or_raise(DataError(f"{path} {unit} {pos}: expected an object, got {_type_name(row)}"), pos, skip_bad_lines)
            continue
        out.append((pos, row))
    if not out:
        what = f"all {len(skip_bad_lines)} invalid" if skip_bad_lines else "none in the file"
        raise DataError(f"{path}: no examples ({what})")
    return unit, out


def _csv_items(path: Source, text: str, delimiter: str, skip_bad_lines: list | None) -> list[tuple[int, dict[str, Any]]]:
    """(line a record starts on, {column: value}) for a CSV / TSV text with a header row."""
    import csv
    import io

    csv.field_size_limit(2**31 - 1)  # long documents or programs in one cell (the default stops at 128 KiB)
    # CSV: quoted cells, malformed quoting is an error; TSV: no quoting at all (a quote is text)
    quoting = {"quoting": csv.QUOTE_NONE} if delimiter == "\t" else {"strict": True}
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, **quoting)
    try:
        header = next(reader, [])
    except csv.Error as e:
        raise DataError(f"{path} line 1: invalid header ({e})") from e
    dupes = sorted({h for h in header if h and header.count(h) > 1})  # (unnamed columns: spreadsheet padding)
    if dupes:
        raise DataError(f"{path} line 1: duplicate column name {', '.join(map(repr, dupes))}")
    items = []
    start = reader.line_num + 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"{path} line {start}: invalid record ({e})") from e
        if record:
            if len(record) != len(header):
                _skip_or_raise(DataError(f"{path} line {start}: {len(record)} values for {len(header)} columns "
                                         f"({', '.join(header)})"), start, skip_bad_lines)
            else:
                items.append((start, {h: v for h, v in zip(header, record) if h}))
        start = reader.line_num + 1
    return items


def _decode(path: Source, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path} line {line}: not valid UTF-8 (byte 0x{data[e.start]:02x}); save the file as UTF-8") from e


class _RowReader:
    """Turns the rows of one file into Examples, raising DataError with file/line/field."""

    def __init__(self, path: Source, split: str, prompt_field: str, response_field: str,
                 messages_field: str | None, id_field: str | None, on_invalid: str = "error", id_prefix: str | None = None,
                 rows: Callable[[], tuple[str, Iterable[tuple[int, dict[str, Any]]]]] | None = None):
        """`rows`: where the rows come from when not from the file `path` (a dataset loaded by
        `datasets`; `path` then names it in messages): () -> (unit, (position, row)s)."""
        self.path, self.split = path, split
        self.rows = rows
        self.id_prefix = id_prefix or split  # default ids: <id_prefix>-<line>
        self.unit = "line"  # what positions count: line / row / item (set by read())
        self.on_invalid = on_invalid
        self.skipped: list[dict[str, Any]] = []  # with on_invalid="skip": {line, error} per bad row
        self.prompt_field, self.response_field = prompt_field, response_field
        self.messages_field, self.id_field = messages_field, id_field

    def error(self, line: int, msg: str, field: str | None = None) -> DataError:
        where = f"{self.path} {self.unit} {line}"
        if field is not None:
            where += f", field {field!r}"
        return DataError(f"{where}: {msg}")

    def text(self, row: dict, line: int, field: str) -> str:
        if field not in row:
            self._missing(line, field, ", ".join(map(repr, row)) or "none")
        value = row[field]
        if not isinstance(value, str) or not value.strip():
            raise self.error(line, f"expected a non-empty string, got {_type_name(value)}", field)
        return value

    def _missing(self, line: int, field: str, keys: str):
        raise self.error(line, f"missing (the row has fields: {keys})", field)

    def messages(self, row: dict, line: int) -> tuple[list[dict[str, str]], str]:
        field = self.messages_field
        assert field is not None
        if field not in row:
            self._missing(line, field, ", ".join(map(repr, row)) or "none")
        msgs = row[field]
        if not isinstance(msgs, list):
            raise self.error(line, f"expected a list of {{role, content}} messages, got {_type_name(msgs)}", field)
        if len(msgs) < 2:
            raise self.error(line, f"expected at least 2 messages (a user turn and the assistant's "
                             f"gold answer), got {len(msgs)}", field)
        clean = []
        for k, m in enumerate(msgs, start=1):
            if not isinstance(m, dict):
                raise self.error(line, f"message {k}: expected an object with 'role' and 'content', "
                                 f"got {_type_name(m)}", field)
            for key in ("role", "content"):
                if key not in m:
                    raise self.error(line, f"message {k}: missing {key!r}", field)
            if m["role"] not in ROLES:
                raise self.error(line, f"message {k}: role must be one of {', '.join(ROLES)}, "
                                 f"got {m['role']!r}", field)
            if not isinstance(m["content"], str):
                raise self.error(line, f"message {k}: 'content' must be a string, got "
                                 f"{_type_name(m['content'])}", field)
            clean.append({"role": m["role"], "content": m["content"]})
        if clean[-1]["role"] != "assistant":
            raise self.error(line, f"the last message is the gold answer and must have role "
                             f"'assistant', got {clean[-1]['role']!r}", field)
        if not clean[-1]["content"].strip():
            raise self.error(line, "the last (assistant) message is empty", field)
        if clean[-2]["role"] != "user":
            raise self.error(line, f"the message before the gold answer must have role 'user', "
                             f"got {clean[-2]['role']!r}", field)
        if not clean[-2]["content"].strip():
            raise self.error(line, f"message {len(clean) - 1} (the user turn) is empty", field)
        return clean[:-1], clean[-1]["content"]

    def example_id(self, row: dict, line: int) -> str:
        if self.id_field is None:
            return f"{self.id_prefix}-{line}"
        if self.id_field not in row:
            self._missing(line, self.id_field, ", ".join(map(repr, row)) or "none")
        value = row[self.id_field]
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            raise self.error(line, f"expected a non-empty string or an integer id, got "
                             f"{_type_name(value)}", self.id_field)
        return str(value)

    def example(self, row: dict, line: int, seen: dict[str, tuple[Source, str, int]]) -> Example:
        """One row -> Example, or DataError naming file, line and field. `seen`: id -> (file, unit,
        position) of the rows before (of every file of the split)."""
        if (problem := value_problem(row)) is not None:
            key, what = problem
            raise self.error(line, what, key if isinstance(key, str) else None)
        ex_id = self.example_id(row, line)
        if ex_id in seen:
            path, unit, pos = seen[ex_id]
            also = f"{unit} {pos}" if path == self.path else f"{path} {unit} {pos}"
            raise self.error(line, f"duplicate id {brief(ex_id)} (also on {also})", self.id_field)
        if self.messages_field is not None:
            prompt, gold = self.messages(row, line)
            question = next(m["content"] for m in reversed(prompt) if m["role"] == "user")
            used = {self.messages_field}
        else:
            question = self.text(row, line, self.prompt_field)
            gold = self.text(row, line, self.response_field)
            prompt = [{"role": "user", "content": question}]
            used = {self.prompt_field, self.response_field}
        meta = {k: v for k, v in row.items() if k not in used}
        if not (isinstance(meta.get("question"), str) and meta["question"].strip()):
            meta["question"] = question
        seen[ex_id] = (self.path, self.unit, line)  # only valid rows claim their id
        return Example(id=ex_id, prompt=prompt, gold=gold, meta=meta)

    def read(self, seen: dict[str, tuple[Source, str, int]] | None = None, require: bool = True) -> list[Example]:
        """The file's examples; `seen` carries the ids of the split's earlier files. `require`: a file
        whose every row is skipped as invalid is an error (a split of several files: when all are)."""
        examples: list[Example] = []
        seen = {} if seen is None else seen
        self.skipped = []
        if self.rows is not None:
            self.unit, rows = self.rows()
        else:
            self.unit, rows = read_rows(self.path, skip_bad_lines=self.skipped if self.on_invalid == "skip" else None)
        for line, row in rows:
            try:
                examples.append(self.example(row, line, seen))
            except DataError as e:
                if self.on_invalid != "skip":
                    raise
                self.skipped.append({"line": line, "error": str(e)})
        if not examples and require:
            raise DataError(f"{self.path}: no valid examples ({len(self.skipped)} rows skipped as invalid)")
        return examples


def iter_jsonl_rows(path: str | Path, skip_bad_lines: list | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for every non-blank line of a .jsonl / .jsonl.gz file. Raises
    DataError naming the file and line for bytes that are not UTF-8, invalid JSON, a line that
    is not an object, and a file without rows. With `skip_bad_lines` (a list), bad lines are
    appended to it as {line, error} and skipped instead."""
    path = as_source(path)
    yield from _iter_lines(path, _numbered_lines(_read_bytes(path)), skip_bad_lines)


def _iter_lines(path: Source, lines: list[tuple[int, bytes]], skip_bad_lines: list | None) -> Iterator[tuple[int, dict[str, Any]]]:
    n = 0
    for line, raw in lines:
        try:
            row = _parse_line(path, line, raw)
        except DataError as e:
            _skip_or_raise(e, line, skip_bad_lines)
            continue
        if row is None:
            continue
        n += 1
        yield line, row
    if not n:
        what = "the file is empty" if not lines else ("it has only blank lines" if not skip_bad_lines else "no line is valid JSON")
        raise DataError(f"{path}: no examples ({what})")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return obj


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def loads(text: str, where: str) -> Any:
    """json.loads, refusing what it would get silently wrong or fail on with a traceback: a key
    given twice in one object, an integer too long for Python, nesting deep enough to exhaust the
    stack. Raises json.JSONDecodeError for invalid JSON, DataError (naming `where`) for the rest."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError:
        raise
    except _DuplicateKey as e:
        raise DataError(f"{where}: key {brief(e.key)} appears twice in one object (JSON keeps only the last "
                        "silently); give each key once") from None
    except RecursionError:
        raise DataError(f"{where}: nested too deeply to read (objects or lists inside each other hundreds of "
                        "levels deep)") from None
    except ValueError as e:  # an integer of more digits than int() takes
        if "digits" not in str(e):
            raise DataError(f"{where}: invalid JSON: {e}") from None
        raise DataError(f"{where}: a number with more than {sys.get_int_max_str_digits()} digits, longer than "
                        "Python reads; write it as a string") from None


def _parse_line(path: Source, line: int, raw: bytes) -> dict[str, Any] | None:
    """One raw line -> a row dict, None for a blank line, or DataError."""
    where = f"{path} line {line}"
    try:
        text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column "
                        f"{e.start + 1}); save the file as UTF-8") from e
    if not text.strip():
        return None
    try:
        row = loads(text, where)
    except json.JSONDecodeError as e:
        hint = ""
        if line == 1 and text.lstrip().startswith("[") and _format(path) != "json":
            hint = " - this looks like a JSON array: name the file .json, or write one JSON object per line"
        raise DataError(f"{where}: invalid JSON: {e.msg} at column {e.colno}{hint}") from e
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {_type_name(row)}")
    return row


# ---------------------------------------------------------------------------------------------
# globs (shards) and datasets by name

GLOB_CHARS = "*?["


def expand(path: str, at: str) -> list[Source]:
    """The files a data_files entry names: itself, or for a glob (data/train-*.parquet,
    hf://datasets/ORG/NAME/data/train-*.parquet) the files it matches, sorted by name (a path
    that exists as written is taken as written). DataError naming `at` when a glob matches none."""
    if not any(c in path for c in GLOB_CHARS):
        return [as_source(path)]
    if is_url(path):
        try:
            import fsspec

            fs, inner = fsspec.core.url_to_fs(path)
            found = [fs.unstrip_protocol(f) for f in sorted(fs.glob(inner)) if fs.isfile(f)]
        except Exception as e:
            raise DataError(f"{path}: cannot reach it ({type(e).__name__}: {e}) ({at})") from e
    else:
        import glob
        import os

        if os.path.lexists(path):
            return [Path(path)]
        found = [Path(f) for f in sorted(glob.glob(os.path.expanduser(path), recursive=True)) if not os.path.isdir(f)]
    if not found:
        raise DataError(f"{path}: the pattern matches no file ({at})")
    return found


def dataset_label(name: str, config: str | None = None) -> str:
    return f"dataset {name}" + (f" (config {config})" if config else "")


def saved_dataset(name: str) -> Path | None:
    """The folder `name` when `datasets`' save_to_disk wrote it (a DatasetDict's
    dataset_dict.json, or one Dataset's state.json), else None."""
    folder = Path(name).expanduser()
    if folder.is_dir() and ((folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()):
        return folder
    return None


def dataset_splits(name: str, config: str | None = None, revision: str | None = None) -> list[str]:
    """The split names of a dataset `datasets` loads: a save_to_disk folder's (one saved Dataset is
    the split "train"), else datasets.get_dataset_split_names - a local folder of data files, a
    Hub name (online, or in the Hugging Face cache). DataError naming the dataset otherwise."""
    label = dataset_label(name, config)
    folder = saved_dataset(name)
    if folder is not None:
        if config or revision:
            raise DataError(f"{label}: a save_to_disk folder has no configs or revisions; leave dataset_config and "
                            "dataset_revision unset")
        if not (folder / "dataset_dict.json").is_file():
            return ["train"]
        try:
            return [str(x) for x in loads((folder / "dataset_dict.json").read_text(encoding="utf-8"), str(folder))["splits"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{label}: cannot read {folder / 'dataset_dict.json'} ({type(e).__name__}: {e})") from e
    try:
        from datasets import get_dataset_split_names

        return [str(x) for x in get_dataset_split_names(name, config, revision=revision)]
    except Exception as e:  # noqa: BLE001 - not found, offline, a config it lacks: all end the same way
        raise DataError(f"{label}: cannot load it with datasets ({type(e).__name__}: {str(e).strip()[:400]})") from e


def dataset_rows(name: str, config: str | None, revision: str | None, split: str) -> list[tuple[int, dict[str, Any]]]:
    """(row number, row) of one split of a dataset `datasets` loads (dataset_splits), 1-based."""
    folder = saved_dataset(name)
    try:
        if folder is not None:
            from datasets import load_from_disk

            ds = load_from_disk(str(folder))
            ds = ds[split] if (folder / "dataset_dict.json").is_file() else ds
        else:
            from datasets import load_dataset

            if not Path(name).expanduser().exists():
                print(f"[s3ft] loading {dataset_label(name, config)} split {split}"
                      + (f" (revision {revision})" if revision else "") + " with datasets (a Hub dataset downloads once "
                      "into the Hugging Face cache)", flush=True)
            ds = load_dataset(name, config, split=split, revision=revision)
        ds = ds.with_format(None)  # plain Python values, whatever format it was saved with
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{dataset_label(name, config)} split {split}: cannot load it ({type(e).__name__}: "
                        f"{str(e).strip()[:400]})") from e
    return list(enumerate(ds, start=1))


def task(
    data_files: dict[str, str | list[str]] | None = None,
    prompt_field: str = "prompt",
    response_field: str = "response",
    messages_field: str | None = None,
    id_field: str | None = None,
    judge: str = "qa",
    max_new_tokens: int = 256,
    paraphrase_kind: str = "generic",
    on_invalid: str = "error",
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    dataset_revision: str | None = None,
) -> Task:
    """A task over the user's data files - `data_files` maps split name -> path, a glob, or a list
    of them read one after another - or over the dataset `dataset_name` loaded by `datasets`
    (dataset_splits), its rows checked the same way."""
    if dataset_name is not None:
        if data_files:
            raise DataError("give data_files or dataset_name, not both")
    elif not data_files or not isinstance(data_files, dict):
        raise DataError(
            "the jsonl task needs data_files: a mapping split name -> JSONL path, "
            f"e.g. {{train: train.jsonl, test: test.jsonl}} (got {data_files!r}), or dataset_name"
        )
    for name, value in (("prompt_field", prompt_field), ("response_field", response_field),
                        ("messages_field", messages_field), ("id_field", id_field)):
        if value is not None and (not isinstance(value, str) or not value):
            raise DataError(f"{name} must be a non-empty field name, got {value!r}")

    if on_invalid not in ("error", "skip"):
        raise DataError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
    invalid: dict[str, list[dict[str, Any]]] = {}

    def loader(split: str, paths: list[Source]) -> Callable[[], list[Example]]:
        many = len(paths) > 1
        readers = [_RowReader(path, split, prompt_field, response_field, messages_field, id_field, on_invalid,
                              id_prefix=f"{split}-{k}" if many else split) for k, path in enumerate(paths, start=1)]

        def read() -> list[Example]:
            seen: dict[str, tuple[Source, str, int]] = {}  # ids are unique across the split's files
            examples = [e for reader in readers for e in reader.read(seen, require=not many)]
            invalid[split] = [{"file": str(reader.path), **s} for reader in readers for s in reader.skipped]
            if not examples:
                raise DataError(f"data_files[{split!r}] ({', '.join(map(str, paths))}): no valid examples "
                                f"({len(invalid[split])} rows skipped as invalid)")
            return examples

        return read

    splits = {}
    if dataset_name is not None:
        def from_dataset(split: str) -> Callable[[], list[Example]]:
            def rows() -> tuple[str, list[tuple[int, dict[str, Any]]]]:
                return "row", dataset_rows(dataset_name, dataset_config, dataset_revision, split)

            reader = _RowReader(f"{dataset_label(dataset_name, dataset_config)} split {split}", split, prompt_field,
                                response_field, messages_field, id_field, on_invalid, rows=rows)

            def read() -> list[Example]:
                examples = reader.read()
                invalid[split] = [{"dataset": dataset_name, **row} for row in reader.skipped]
                return examples

            return read

        for split in dataset_splits(dataset_name, dataset_config, dataset_revision):
            splits[split] = from_dataset(split)
    for split, value in (data_files or {}).items():
        many = isinstance(value, (list, tuple))
        if many and not value:
            raise DataError(f"data_files[{split!r}] is an empty list; give a file path or a list of them")
        paths = []
        for k, entry in enumerate(value if many else [value]):
            at = f"data_files[{split!r}]" + (f"[{k}]" if many else "")
            if not isinstance(entry, (str, Path)) or not str(entry):
                raise DataError(f"{at} must be a file path, got {brief(entry)}")
            for path in expand(str(entry), at):
                try:  # fail at once, not after hours of generation on another split
                    check_source(path)
                except DataError as e:
                    raise DataError(f"{e} ({at})") from None
                paths.append(path)
        splits[str(split)] = loader(str(split), paths)
    return Task(name="jsonl", judge=judge, max_new_tokens=max_new_tokens,
                paraphrase_kind=paraphrase_kind, splits=splits, invalid=invalid)
