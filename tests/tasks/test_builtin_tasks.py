"""Built-in tasks: exact split sizes, disjoint splits, stable ids, prompt and gold formats."""
from __future__ import annotations

import json
import re
from functools import lru_cache

import pytest

from s3ft.tasks import Task, get_task

EXPECTED_SIZES = {
    "squad": {"train": 578, "validation": 119, "test": 303},
    "squad_sentence": {"train": 578, "validation": 119, "test": 303},
    "gsm8k": {"train": 7473, "test": 1319},
    "mbpp": {"train": 374, "validation": 90, "test": 500, "prompt": 10},
    "nq_open": {"train": 2310, "validation": 300, "test": 1000},
}
TASK_DEFAULTS = {  # judge, (own answer, paraphrase, evaluation) token limits, paraphrase_kind
    "squad": ("squad", (128, 192, 128), "generic"),
    "squad_sentence": ("squad_sentence", (64, 192, 64), "generic"),
    "gsm8k": ("math", (448, 384, 448), "math"),
    "mbpp": ("code", (448, 256, 448), "code"),
    "nq_open": ("qa", (128, 128, 128), "generic"),
}


@lru_cache(maxsize=None)
def _split(name: str, split: str):
    return tuple(get_task(name).load(split))


@pytest.mark.parametrize("name", list(EXPECTED_SIZES))
def test_split_sizes_and_defaults(name):
    task = get_task(name)
    assert isinstance(task, Task) and task.name == name
    limits = (task.max_new_tokens, task.paraphrase_max_new_tokens, task.eval_max_new_tokens)
    assert (task.judge, limits, task.paraphrase_kind) == TASK_DEFAULTS[name]
    assert set(task.splits) == set(EXPECTED_SIZES[name])
    for split, n in EXPECTED_SIZES[name].items():
        assert len(_split(name, split)) == n, (name, split)


@pytest.mark.parametrize("name", list(EXPECTED_SIZES))
def test_examples_well_formed_ids_unique_and_splits_disjoint(name):
    seen: dict[str, str] = {}
    for split in EXPECTED_SIZES[name]:
        for ex in _split(name, split):
            assert isinstance(ex.id, str) and ex.id
            assert ex.id not in seen, f"{ex.id} in {seen.get(ex.id)} and {split}"
            seen[ex.id] = split
            assert len(ex.prompt) == 1 and ex.prompt[0]["role"] == "user"
            assert set(ex.prompt[0]) == {"role", "content"}
            assert ex.prompt[0]["content"].strip()
            assert isinstance(ex.gold, str) and ex.gold.strip()
            q = ex.meta["question"]
            assert isinstance(q, str) and q.strip() and q in ex.prompt[0]["content"]
            json.dumps(ex.meta)  # JSON-serialisable
    assert len(seen) == sum(EXPECTED_SIZES[name].values())


@pytest.mark.parametrize("name", list(EXPECTED_SIZES))
def test_loading_is_stable(name):
    a = get_task(name).load("test")
    b = get_task(name).load("test")
    assert [e.to_dict() for e in a] == [e.to_dict() for e in b]
    # mutating a loaded example does not leak into the next load
    a[0].meta["question"] = "changed"
    a[0].prompt[0]["content"] = "changed"
    c = get_task(name).load("test")
    assert c[0].to_dict() == b[0].to_dict()


@pytest.mark.parametrize("name,split", [("squad", "train"), ("gsm8k", "test"), ("nq_open", "validation"), ("mbpp", "test")])
def test_load_limit_is_seeded_subset_in_order(name, split):
    task = get_task(name)
    full = [e.id for e in _split(name, split)]
    a = [e.id for e in task.load(split, limit=25, seed=3)]
    b = [e.id for e in task.load(split, limit=25, seed=3)]
    c = [e.id for e in task.load(split, limit=25, seed=4)]
    assert a == b and len(a) == 25 and len(set(a)) == 25
    assert a != c
    pos = {i: k for k, i in enumerate(full)}
    assert all(i in pos for i in a)
    assert [pos[i] for i in a] == sorted(pos[i] for i in a)
    assert [e.id for e in task.load(split, limit=10**6)] == full


def test_unknown_split_and_task():
    with pytest.raises(ValueError, match="no split 'dev'"):
        get_task("squad").load("dev")
    with pytest.raises(ValueError, match="unknown task"):
        get_task("squadd")


# ---- squad ----------------------------------------------------------------------------------


def test_squad_split_by_title():
    titles = {s: {e.meta["title"] for e in _split("squad", s)} for s in EXPECTED_SIZES["squad"]}
    assert not titles["train"] & titles["test"]
    assert not titles["train"] & titles["validation"]
    assert not titles["validation"] & titles["test"]
    assert sum(len(t) for t in titles.values()) == 48
    assert (len(titles["train"]), len(titles["validation"]), len(titles["test"])) == (28, 5, 15)


def test_squad_format():
    for split in EXPECTED_SIZES["squad"]:
        for ex in _split("squad", split):
            answers = ex.meta["answers"]
            assert answers and ex.gold == answers[0]
            assert len(set(answers)) == len(answers)
            content = ex.prompt[0]["content"]
            assert content.startswith("Answer the question using the context.")
            assert "Context: " in content and content.endswith("Question: " + ex.meta["question"])
            # SQuAD answers are spans of the context
            assert any(a in content for a in answers)
    first = _split("squad", "train")[0]
    assert first.id == "5727dd2e4b864d1900163eba"
    assert first.meta["answers"] == ["23 years", "23"]


# ---- gsm8k ----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_gsm8k_gold_all_rows(split):
    for k, ex in enumerate(_split("gsm8k", split)):
        assert ex.id == f"gsm8k-{split}-{k}"
        n = ex.meta["answer"]
        assert re.fullmatch(r"-?\d+(\.\d+)?", n), n
        assert "<<" not in ex.gold and ">>" not in ex.gold and "####" not in ex.gold
        assert ex.gold.endswith(f"\nThe answer is {n}.")
        lines = ex.gold.split("\n")
        assert lines[-1] == f"The answer is {n}." and lines[-2] != lines[-1]  # said once, last
        assert ex.prompt[0]["content"].startswith("Solve the following math problem step by step.")
        assert ex.prompt[0]["content"].endswith("\n\n" + ex.meta["question"])


def test_gsm8k_first_example():
    ex = _split("gsm8k", "train")[0]
    assert ex.gold == (
        "Natalia sold 48/2 = 24 clips in May.\n"
        "Natalia sold 48+24 = 72 clips altogether in April and May.\n"
        "The answer is 72."
    )
    assert ex.meta["answer"] == "72"
    # thousands commas are removed from the answer
    assert any(
        ex.meta["answer"].isdigit() and int(ex.meta["answer"]) >= 1000 for ex in _split("gsm8k", "train")
    )


# ---- mbpp -----------------------------------------------------------------------------------


def test_mbpp_id_ranges_and_format():
    ranges = {"test": (11, 510), "train": (601, 974), "validation": (511, 600), "prompt": (1, 10)}
    for split, (lo, hi) in ranges.items():
        ids = [int(e.id) for e in _split("mbpp", split)]
        assert ids == list(range(lo, hi + 1))
        for ex in _split("mbpp", split):
            assert ex.meta["task_id"] == int(ex.id)
            assert ex.gold.startswith("[BEGIN]\n") and ex.gold.endswith("\n[DONE]")
            assert "\r" not in ex.gold and "\r" not in ex.meta["test_setup_code"]
            assert len(ex.meta["test_list"]) == 3
            assert ex.meta["question"] == ex.meta["text"]
            content = ex.prompt[0]["content"]
            assert content.startswith("You are an expert Python programmer, and here is your task: ")
            assert "\n\n" + "\n".join(ex.meta["test_list"]) + "\n\n" in content
            assert content.endswith("Write the code between [BEGIN] and [DONE].")
            assert isinstance(ex.meta["challenge_test_list"], list)


def test_mbpp_gold_code_passes_its_tests():
    """The reference code of a few tasks, unwrapped from [BEGIN]/[DONE], passes its asserts."""
    for ex in _split("mbpp", "test")[:5]:
        code = ex.gold[len("[BEGIN]\n"): -len("\n[DONE]")]
        env: dict = {}
        exec(ex.meta["test_setup_code"] + "\n" + code + "\n" + "\n".join(ex.meta["test_list"]), env)


# ---- nq_open --------------------------------------------------------------------------------


def test_nq_open_ids_partition_rows():
    idx = {s: {int(e.id.removeprefix("nq-")) for e in _split("nq_open", s)} for s in EXPECTED_SIZES["nq_open"]}
    assert set().union(*idx.values()) == set(range(3610))
    for split in idx:
        ids = [e.id for e in _split("nq_open", split)]
        assert all(i.startswith("nq-") for i in ids)
        assert [int(i[3:]) for i in ids] == sorted(int(i[3:]) for i in ids)
    for ex in _split("nq_open", "test"):
        assert ex.gold == ex.meta["answers"][0]
        assert ex.prompt[0]["content"] == f"Answer the question with a short answer only.\n\nQuestion: {ex.meta['question']}"


def test_bundled_data_is_inside_the_package():
    from importlib import resources

    data = resources.files("s3ft") / "data"
    for parts in [("squad", "squad_v1_dev_subsample1000.jsonl.gz"), ("squad", "SOURCE.txt"),
                  ("gsm8k", "train.jsonl.gz"), ("gsm8k", "test.jsonl.gz"), ("gsm8k", "LICENSE"),
                  ("gsm8k", "SOURCE.txt"), ("mbpp", "mbpp.jsonl.gz"), ("mbpp", "SOURCE.txt"),
                  ("nq_open", "NQ-open.dev.jsonl.gz"), ("nq_open", "README.nq_open.md"),
                  ("nq_open", "SOURCE.txt"), ("README.md",)]:
        assert data.joinpath(*parts).is_file(), parts


@pytest.mark.parametrize("name", ["squad", "squad_sentence", "gsm8k", "mbpp", "nq_open"])
def test_builtin_tasks_reject_options(name):
    with pytest.raises(TypeError, match="takes no options"):
        get_task(name, data_files={"train": "x.jsonl"})


def test_squad_sentence_is_squad_asked_for_one_sentence():
    """The same questions, ids, splits, gold answers and meta as squad; only the prompt differs: it
    asks for one complete sentence, with the same context and question. meta adds the context."""
    from s3ft.tasks.squad import PROMPT as SQUAD_PROMPT
    from s3ft.tasks.squad_sentence import PROMPT

    assert "one complete sentence" in PROMPT and "short answer" not in PROMPT
    for split in EXPECTED_SIZES["squad"]:
        squad, sentence = _split("squad", split), _split("squad_sentence", split)
        assert [e.id for e in sentence] == [e.id for e in squad]
        for a, b in zip(squad, sentence):
            assert b.gold == a.gold
            assert {k: v for k, v in b.meta.items() if k != "context"} == a.meta
            context = b.meta["context"]
            assert context and a.prompt[0]["content"] == SQUAD_PROMPT.format(context=context, question=a.meta["question"])
            assert b.prompt[0]["content"] == PROMPT.format(context=context, question=b.meta["question"])
    assert "one complete sentence" in _split("squad_sentence", "test")[0].prompt[0]["content"]
