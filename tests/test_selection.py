"""The selection logic of every method on hand-made judged rows (and hand-made log-likelihoods for
the methods that pick by them)."""
import itertools

import pytest

from s3ft.methods import METHODS, failure_sources, paraphrase_scope, scored_sources
from s3ft.selection import accepted_samples, build_training_set, choose, mix, needs_paraphrase, targets
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


# the methods built from own answers, paraphrases and gold alone (the k-sample ones are tested below)
ONE_PASS = [m for m in METHODS if "samples" not in METHODS[m].needs]


@pytest.mark.parametrize("method,own_state,para_state", list(itertools.product(ONE_PASS, OWN_STATES, PARA_STATES)))
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
    got = {m: [(r["source"], r["completion"]) for r in build_training_set(m, exs, own, para)] for m in ONE_PASS}
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
        choose("xft", ex(0), None, None)


def test_needs_paraphrase():
    assert needs_paraphrase("all", OWN_STATES["own_ok"])
    assert not needs_paraphrase("failed", OWN_STATES["own_ok"])
    assert needs_paraphrase("failed", OWN_STATES["own_bad"])
    assert needs_paraphrase("failed", OWN_STATES["own_unknown"])
    assert needs_paraphrase("failed", None)
    assert not needs_paraphrase("none", None)


def test_mix_empty():
    assert mix([])["n"] == 0


# ---------------------------------------------------------------- the k-sample methods (rft, grape, s3ft_k)
def smp(response, correct=True, stop="end_of_turn"):
    return {"response": response, "correct": correct, "stop": stop}


SAMPLES = {"samples": [smp("A  b"), smp("A b"), smp("wrong", False), smp("cut", True, "length"), smp("unsure", None),
                       smp("  "), smp("C"), smp("A b\n")]}


def test_accepted_samples_are_the_distinct_correct_uncut_ones():
    # "A  b", "A b" and "A b\n" are one answer after normalising whitespace: the first is kept
    assert accepted_samples(SAMPLES) == [(0, "A  b"), (6, "C")]
    assert accepted_samples(None) == [] and accepted_samples({"samples": []}) == []


def test_rft_keeps_one_row_per_distinct_correct_sample_and_the_gold_as_the_key_says():
    exs = [ex(0), ex(1)]
    samples = {"e0": SAMPLES, "e1": {"samples": [smp("no", False), smp("cut", True, "length")]}}
    rows = build_training_set("rft", exs, {}, {}, samples, gold="fallback")
    assert [(r["id"], r["source"], r["completion"], r.get("sample")) for r in rows] == [
        ("e0", "sampled", "A  b", 0), ("e0", "sampled", "C", 6), ("e1", "gold", "gold1", None)]
    assert rows[2]["cut_off"] == ["sampled"]  # a correct sample was passed over for its length
    assert [r["id"] for r in build_training_set("rft", exs, {}, {}, samples, gold="never")] == ["e0", "e0"]
    always = build_training_set("rft", exs, {}, {}, samples, gold="always")
    assert [(r["id"], r["source"]) for r in always] == [("e0", "sampled"), ("e0", "sampled"), ("e0", "gold"), ("e1", "gold")]
    # a sample equal to the gold (after normalising whitespace) is not given twice
    same = {"e0": {"samples": [smp(" gold0 ")]}}
    assert [r["completion"] for r in build_training_set("rft", [ex(0)], {}, {}, same, gold="always")] == [" gold0 "]
    m = mix(build_training_set("rft", exs, {}, {}, samples), METHODS["rft"].sources)
    assert (m["n"], m["inputs"]) == (3, 2)
    assert m["counts"] == {"self": 0, "sampled": 2, "paraphrase": 0, "gold": 1}
    assert m["cut_off"] == {"self": 0, "sampled": 1, "paraphrase": 0}
    # the methods without samples keep the mix they always had
    assert list(mix(build_training_set("sft", exs, {}, {}))["counts"]) == ["self", "paraphrase", "gold"]


def test_grape_trains_on_the_highest_scoring_candidate():
    exs = [ex(i) for i in range(5)]
    para = {f"e{i}": {"response": f"para{i}", "correct": True, "filtered": False} for i in range(5)}
    samples = {f"e{i}": {"samples": [smp(f"s{i}a"), smp(f"s{i}b"), smp(f"x{i}", False)]} for i in range(5)}
    scores = {}
    # e0: a sample wins; e1: the paraphrase; e2: the gold; e3: a tie between a sample and the gold -> the
    # preferred source (sampled); e4: no correct sample, the paraphrase is rejected -> gold alone, no score needed
    for i, (a, b, p, g) in enumerate([(-1.5, -0.2, -0.9, -3.0), (-1.0, -1.2, -0.3, -2.5), (-2.0, -2.1, -1.9, -0.4),
                                      (-0.7, -1.0, -0.9, -0.7)]):
        scores |= {(f"e{i}", f"s{i}a"): a, (f"e{i}", f"s{i}b"): b, (f"e{i}", f"para{i}"): p, (f"e{i}", f"gold{i}"): g}
    # x* are wrong: never candidates, even with the best score
    scores |= {(f"e{i}", f"x{i}"): 0.0 for i in range(5)}
    samples["e4"] = {"samples": [smp("x4", False)]}
    para["e4"] = {"response": "the reference answer says", "correct": None, "filtered": True}
    rows = build_training_set("grape", exs, {}, para, samples, scores)
    assert [(r["source"], r["completion"]) for r in rows] == [
        ("sampled", "s0b"), ("paraphrase", "para1"), ("gold", "gold2"), ("sampled", "s3a"), ("gold", "gold4")]
    assert rows[0]["likelihood"] == {"per_token": -0.2, "candidates": 4} and rows[0]["sample"] == 1
    assert "likelihood" not in rows[4]  # one candidate: nothing to pick between
    with pytest.raises(ValueError, match="no log-likelihood"):
        targets("grape", ex(0), None, para["e0"], samples["e0"], {})


def test_s3ft_k_takes_the_likeliest_correct_sample_else_paraphrase_else_gold():
    samples = {"e0": {"samples": [smp("s0a"), smp("s0b"), smp("s0c")]},
               "e1": {"samples": [smp("s1a"), smp("wrong", False)]},
               "e2": {"samples": [smp("wrong", False), smp("cut", True, "length")]},
               "e3": {"samples": [smp("wrong", False)]}}
    para = {"e2": {"response": "para2", "correct": True, "filtered": False},
            "e3": {"response": "para3", "correct": False, "filtered": False}}
    scores = {("e0", "s0a"): -1.1, ("e0", "s0b"): -0.6, ("e0", "s0c"): -0.9, ("e0", "gold0"): 0.0}
    rows = build_training_set("s3ft_k", [ex(i) for i in range(4)], {}, para, samples, scores)
    assert [(r["source"], r["completion"]) for r in rows] == [
        ("sampled", "s0b"), ("sampled", "s1a"), ("paraphrase", "para2"), ("gold", "gold3")]
    assert rows[0]["likelihood"] == {"per_token": -0.6, "candidates": 3}  # the gold's better score does not count
    assert rows[2]["cut_off"] == ["sampled"]


def test_what_each_method_needs():
    assert METHODS["rft"].needs == {"samples"} and METHODS["rft"].scored == ()
    assert METHODS["grape"].needs == {"samples", "paraphrases", "likelihood"}
    assert METHODS["s3ft_k"].needs == {"samples", "paraphrases", "likelihood"} and METHODS["s3ft_k"].scored == ("sampled",)
    assert METHODS["s3ft"].needs == {"own", "paraphrases"} and METHODS["sft"].needs == frozenset()
    # one likelihood pass and one paraphrase pass serve several methods
    assert scored_sources(["s3ft_k", "rft"]) == ("sampled",)
    assert scored_sources(["s3ft_k", "grape", "sft"]) == ("sampled", "paraphrase", "gold")
    assert paraphrase_scope(["s3ft_k", "rft"]) == "failed" and paraphrase_scope(["s3ft_k", "grape"]) == "all"
    assert failure_sources(["s3ft"]) == ("self",) and failure_sources(["s3ft_k", "rft"]) == ("sampled",)
    assert failure_sources(["s3ft", "s3ft_k"]) == ("self", "sampled") and failure_sources(["sft"]) == ("self",)


def test_needs_paraphrase_when_the_samples_failed():
    none_right = {"samples": [smp("a", False), smp("b", True, "length")]}
    one_right = {"samples": [smp("a", False), smp("b")]}
    assert needs_paraphrase("failed", None, none_right, ("sampled",))
    assert not needs_paraphrase("failed", None, one_right, ("sampled",))
    # s3ft and s3ft_k side by side: an example failed by either pass gets one
    assert needs_paraphrase("failed", OWN_STATES["own_bad"], one_right, ("self", "sampled"))
    assert needs_paraphrase("failed", OWN_STATES["own_ok"], none_right, ("self", "sampled"))
    assert not needs_paraphrase("failed", OWN_STATES["own_ok"], one_right, ("self", "sampled"))
