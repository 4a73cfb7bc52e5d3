"""The selection logic of all four methods on hand-made judged rows."""
import itertools

import pytest

from s3ft.methods import METHODS
from s3ft.selection import build_training_set, choose, mix, needs_paraphrase
from s3ft.types import Example


def ex(i):
    return Example(id=f"e{i}", prompt=[{"role": "user", "content": f"q{i}"}], gold=f"gold{i}")


OWN_STATES = {
    "own_ok": {"response": "own", "correct": True},
    "own_bad": {"response": "own", "correct": False},
    "own_unknown": {"response": "own", "correct": None},
    "own_missing": None,
}
PARA_STATES = {
    "para_ok": {"response": "para", "correct": True, "filtered": False},
    "para_bad": {"response": "para", "correct": False, "filtered": False},
    "para_filtered": {"response": "para", "correct": None, "filtered": True},
    "para_unknown": {"response": "para", "correct": None, "filtered": False},
    "para_missing": None,
}


def expected(method, own_state, para_state):
    for source in METHODS[method].sources:
        if source == "self" and own_state == "own_ok":
            return "self", "own"
        if source == "paraphrase" and para_state == "para_ok":
            return "paraphrase", "para"
        if source == "gold":
            return "gold", "gold0"


@pytest.mark.parametrize("method,own_state,para_state", list(itertools.product(METHODS, OWN_STATES, PARA_STATES)))
def test_choose_exhaustive(method, own_state, para_state):
    assert choose(method, ex(0), OWN_STATES[own_state], PARA_STATES[para_state]) == expected(method, own_state, para_state)


def test_paper_table():
    # four examples: own right; own wrong + paraphrase right; own wrong + paraphrase filtered; both wrong
    exs = [ex(i) for i in range(4)]
    own = {"e0": {"response": "o0", "correct": True}, "e1": {"response": "o1", "correct": False},
           "e2": {"response": "o2", "correct": False}, "e3": {"response": "o3", "correct": False}}
    para = {"e0": {"response": "p0", "correct": True, "filtered": False},
            "e1": {"response": "p1", "correct": True, "filtered": False},
            "e2": {"response": "the reference answer says p2", "correct": None, "filtered": True},
            "e3": {"response": "p3", "correct": False, "filtered": False}}
    got = {m: [(r["source"], r["completion"]) for r in build_training_set(m, exs, own, para)] for m in METHODS}
    assert got["sft"] == [("gold", "gold0"), ("gold", "gold1"), ("gold", "gold2"), ("gold", "gold3")]
    assert got["ssr"] == [("self", "o0"), ("gold", "gold1"), ("gold", "gold2"), ("gold", "gold3")]
    assert got["sdft"] == [("paraphrase", "p0"), ("paraphrase", "p1"), ("gold", "gold2"), ("gold", "gold3")]
    assert got["s3ft"] == [("self", "o0"), ("paraphrase", "p1"), ("gold", "gold2"), ("gold", "gold3")]
    rows = build_training_set("s3ft", exs, own, para)
    assert [r["id"] for r in rows] == ["e0", "e1", "e2", "e3"]
    assert rows[0]["prompt"] == exs[0].prompt
    m = mix(rows)
    assert m["counts"] == {"self": 1, "paraphrase": 1, "gold": 2}
    assert m["percent"] == {"self": 25.0, "paraphrase": 25.0, "gold": 50.0}


def test_empty_own_response_is_not_used():
    assert choose("ssr", ex(0), {"response": "", "correct": True}, None) == ("gold", "gold0")


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method"):
        choose("rft", ex(0), None, None)


def test_needs_paraphrase():
    assert needs_paraphrase("all", OWN_STATES["own_ok"])
    assert not needs_paraphrase("failed", OWN_STATES["own_ok"])
    assert needs_paraphrase("failed", OWN_STATES["own_bad"])
    assert needs_paraphrase("failed", OWN_STATES["own_unknown"])
    assert needs_paraphrase("failed", None)
    assert not needs_paraphrase("none", None)


def test_mix_empty():
    assert mix([])["n"] == 0
