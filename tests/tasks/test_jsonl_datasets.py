"""Your data by name and by pattern: `dataset_name` (a dataset the `datasets` library loads - here a
save_to_disk folder and a local folder of data files, which work offline as a Hub name does
online) and `data_files` globs (shards, local and through fsspec), with every row checked as in a
data file: errors name the dataset, split, row and field."""
from __future__ import annotations

import json

import pytest

from s3ft.config import ConfigError, load_config
from s3ft.tasks.jsonl import DataError, task

ROWS = [{"question": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(5)]


def _saved(tmp_path, train=ROWS, name="saved"):
    from datasets import Dataset, DatasetDict

    folder = tmp_path / name
    DatasetDict({"train": Dataset.from_list(train), "test": Dataset.from_list(ROWS[:2])}).save_to_disk(str(folder))
    return str(folder)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_save_to_disk_folder_by_name(tmp_path):
    t = task(dataset_name=_saved(tmp_path), prompt_field="question", response_field="answer")
    assert list(t.splits) == ["train", "test"]
    train = t.load("train")
    assert [e.id for e in train] == [f"train-{i}" for i in range(1, 6)]
    assert train[2].prompt == [{"role": "user", "content": "What is 2+2?"}] and train[2].gold == "4"
    assert [e.gold for e in t.load("test")] == ["0", "2"]


def test_local_folder_of_data_files_by_name(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", ROWS)
    _jsonl(folder / "test.jsonl", ROWS[:2])
    t = task(dataset_name=str(folder), prompt_field="question", response_field="answer", id_field="answer")
    assert sorted(t.splits) == ["test", "train"]
    assert [e.id for e in t.load("train")] == ["0", "2", "4", "6", "8"]


def test_bad_rows_of_a_dataset_name_dataset_split_row_and_field(tmp_path):
    bad = ROWS[:2] + [{"question": "What is nothing?", "answer": None}] + ROWS[3:]
    name = _saved(tmp_path, bad, "bad")
    t = task(dataset_name=name, prompt_field="question", response_field="answer")
    with pytest.raises(DataError, match=rf"^dataset {name} split train row 3, field 'answer': expected a non-empty string, got null"):
        t.load("train")
    t = task(dataset_name=name, prompt_field="question", response_field="answer", on_invalid="skip")
    assert [e.id for e in t.load("train")] == ["train-1", "train-2", "train-4", "train-5"]
    assert [(r["dataset"], r["line"]) for r in t.invalid["train"]] == [(name, 3)]
    t = task(dataset_name=name, prompt_field="prompt", response_field="answer")
    with pytest.raises(DataError, match=r"split test row 1, field 'prompt': missing \(the row has fields: 'question', 'answer'\)"):
        t.load("test")


def test_dataset_that_cannot_be_loaded_is_named_at_once(tmp_path):
    with pytest.raises(DataError, match="dataset test-org/no-such-dataset: cannot load it with datasets"):
        task(dataset_name="test-org/no-such-dataset")  # offline in the tests; not found online
    with pytest.raises(DataError, match="a save_to_disk folder has no configs"):
        task(dataset_name=_saved(tmp_path), dataset_config="main")


def test_session_reads_a_dataset_by_name(tmp_path):
    from s3ft.session import Session

    cfg = load_config(None, {"task": "jsonl", "dataset_name": _saved(tmp_path), "prompt_field": "question",
                             "response_field": "answer", "output_dir": str(tmp_path / "run"), "model": "org/unused"})
    s = Session(cfg)
    assert len(s.train_examples()) == 5 and len(s.eval_examples()) == 2


def test_dataset_keys_are_checked_at_load(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: jsonl\ndata_files: {train: a.jsonl}\ndataset_name: org/name\n")
    with pytest.raises(ConfigError, match="r.yaml line 3: give data_files or dataset_name, not both"):
        load_config(recipe)
    recipe.write_text("task: squad\ndataset_name: org/name\n")
    with pytest.raises(ConfigError, match="r.yaml line 2: dataset_name is for your own data"):
        load_config(recipe)
    recipe.write_text("task: jsonl\ndata_files: {train: a.jsonl}\ndataset_config: main\n")
    with pytest.raises(ConfigError, match="r.yaml line 3: dataset_config goes with dataset_name"):
        load_config(recipe)


# ---------------------------------------------------------------- globs
def test_glob_reads_the_shards_in_name_order(tmp_path):
    for k in (2, 0, 1):
        _jsonl(tmp_path / f"train-{k:02d}.jsonl", ROWS[k : k + 2])
    t = task(data_files={"train": str(tmp_path / "train-*.jsonl"), "test": [str(tmp_path / "train-00.jsonl")]},
             prompt_field="question", response_field="answer")
    train = t.load("train")
    assert [(e.id, e.gold) for e in train] == [("train-1-1", "0"), ("train-1-2", "2"), ("train-2-1", "2"),
                                              ("train-2-2", "4"), ("train-3-1", "4"), ("train-3-2", "6")]
    assert [e.id for e in t.load("test")] == ["test-1", "test-2"]  # one file: ids as before


def test_glob_errors_name_the_file_and_the_pattern(tmp_path):
    with pytest.raises(DataError, match=r"nothing-\*\.jsonl: the pattern matches no file \(data_files\['train'\]\[1\]\)"):
        task(data_files={"train": [str(_jsonl(tmp_path / "a.jsonl", ROWS)), str(tmp_path / "nothing-*.jsonl")]})
    _jsonl(tmp_path / "s-1.jsonl", ROWS)
    (tmp_path / "s-2.jsonl").write_text('{"question": "q", "answer": "a"}\n{"question": "q2", "answer": 7}\n')
    t = task(data_files={"train": str(tmp_path / "s-*.jsonl")}, prompt_field="question", response_field="answer")
    with pytest.raises(DataError, match=r"s-2.jsonl line 2, field 'answer': expected a non-empty string, got int"):
        t.load("train")


def test_url_glob_through_fsspec():
    import fsspec

    fs = fsspec.filesystem("memory")
    for k in (1, 0):
        with fs.open(f"/s3ft-glob-test/part-{k}.jsonl", "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in ROWS[k * 2 : k * 2 + 2]))
    t = task(data_files={"train": "memory://s3ft-glob-test/part-*.jsonl"}, prompt_field="question", response_field="answer")
    assert [e.gold for e in t.load("train")] == ["0", "2", "4", "6"]
