"""QA judges: SQuAD normalisation, EM / F1 / containment, the four policies."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3ft.judges import get_judge
from s3ft.judges.qa import (
    contains_score,
    exact_match_score,
    f1_score,
    judge_exact,
    judge_qa,
    normalize_answer,
)
from s3ft.types import Example


def qa(answers, gold=None):
    return Example("q", [{"role": "user", "content": "Q?"}], gold or answers[0], {"answers": answers, "question": "Q?"})


def test_normalize_matches_squad_script():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear and THE end.") == "apple pear and end"
    assert normalize_answer("theater") == "theater"  # articles only as whole words
    assert normalize_answer(None) == ""


def test_f1_is_squad_token_f1():
    assert f1_score("Denver Broncos", "denver broncos") == 1.0
    assert f1_score("the Broncos", "Denver Broncos") == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert f1_score("Paris", "London") == 0.0
    assert f1_score("", "London") == 0.0
    assert exact_match_score("  PARIS. ", "paris")


def test_contains_is_on_token_boundaries():
    assert contains_score("It is Paris, France.", "paris")
    assert not contains_score("the start of it", "art")
    assert not contains_score("anything", "the")  # gold empty after normalisation


# response, answers, policy, expected
TABLE = [
    ("Denver Broncos", ["Denver Broncos"], "em", True),
    ("The Denver Broncos won.", ["Denver Broncos"], "em", False),
    ("The Denver Broncos won.", ["Denver Broncos"], "contains", True),
    ("The Denver Broncos won.", ["Denver Broncos"], "f1", True),  # f1 = 0.8
    ("The Denver Broncos won.", ["Denver Broncos"], "contains_or_f1", True),
    ("Broncos", ["Denver Broncos"], "em", False),
    ("Broncos", ["Denver Broncos"], "contains", False),
    ("Broncos", ["Denver Broncos"], "f1", True),  # f1 = 0.67
    ("Broncos", ["Denver Broncos"], "contains_or_f1", True),
    ("I think it was the team from Denver, namely the Broncos", ["Denver Broncos"], "contains", False),
    ("I think it was the team from Denver, namely the Broncos", ["Denver Broncos"], "f1", False),  # f1 = 0.36
    ("Carolina Panthers", ["Denver Broncos"], "contains_or_f1", False),
    ("December 1972", ["14 December 1972 UTC", "December 1972"], "em", True),
    ("in December 1972", ["14 December 1972 UTC", "December 1972"], "contains", True),
    ("1972", ["14 December 1972 UTC", "December 1972"], "contains", False),
    ("1972", ["14 December 1972 UTC", "December 1972"], "f1", True),  # 0.67 vs "December 1972"
    ("", ["Paris"], "contains_or_f1", False),
    ("   ...  ", ["Paris"], "f1", False),
    ("the", ["Paris"], "em", False),
    ("?!", ["Paris"], "contains_or_f1", False),
    ("Paris", ["paris", "City of Light"], "em", True),
    ("The City of Light!", ["paris", "City of Light"], "em", True),
]


@pytest.mark.parametrize("response,answers,policy,expected", TABLE)
def test_policy_table(response, answers, policy, expected):
    v = judge_qa(qa(answers), response, policy=policy)
    assert v.correct is expected, v
    if expected:
        assert v.extracted in answers
        assert any(a in v.reason for a in answers)
    else:
        assert v.extracted is None


def test_reason_says_which_gold_and_how():
    v = judge_qa(qa(["14 December 1972 UTC", "December 1972"]), "It was in December 1972.")
    assert v.correct and v.extracted == "December 1972" and "contains" in v.reason
    v = judge_qa(qa(["Denver Broncos"]), "Broncos")
    assert v.correct and v.reason.startswith("f1=0.67")
    v = judge_qa(qa(["Denver Broncos"]), "Broncos", f1_threshold=0.7)
    assert v.correct is False and "best f1=0.67" in v.reason


def test_falls_back_to_gold_without_meta_answers():
    ex = Example("x", [], "Mount Everest", {})
    assert judge_qa(ex, "It is Mount Everest.").correct is True
    assert judge_qa(Example("x", [], "", {}), "anything").correct is None
    assert judge_qa(Example("x", [], "", {}), "").correct is None


def test_golds_that_squad_normalisation_empties():
    # NQ-open has golds like "A+" (blood type): SQuAD normalisation leaves "" ("a" is an article)
    ex = qa(["A+", "AB+"])
    assert judge_qa(ex, "A+").correct is True
    assert judge_qa(ex, "The blood type is A+.").correct is True
    assert judge_qa(ex, "The blood type is A+.", policy="em").correct is False
    assert judge_qa(ex, "B+").correct is False
    assert judge_qa(ex, "A").correct is False
    assert judge_qa(ex, "AB+").correct is True
    assert judge_qa(qa(["The The"]), "the the").correct is True
    assert judge_qa(qa(["The The"]), "The Who").correct is False
    assert judge_exact(Example("x", [], "A+", {}), "a+").correct is True
    assert judge_exact(Example("x", [], "A+", {}), "A").correct is False


def test_unknown_policy_is_a_config_error():
    with pytest.raises(ValueError):
        judge_qa(qa(["a"]), "a", policy="fuzzy")


def test_judge_exact():
    ex = Example("x", [], "The Eiffel Tower", {})
    assert judge_exact(ex, "eiffel tower.").correct is True
    assert judge_exact(ex, "It is the Eiffel Tower").correct is False
    assert judge_exact(ex, "").correct is False


def test_batch_interface():
    judge = get_judge("qa", policy="em")
    out = judge([qa(["Paris"]), qa(["Rome"])], ["paris", "Paris"])
    assert [v.correct for v in out] == [True, False]
    assert get_judge("exact")([Example("x", [], "a b", {})], ["A  B"])[0].correct is True


@settings(max_examples=200, deadline=None)
@given(st.text(), st.lists(st.text(min_size=1), min_size=1, max_size=3), st.sampled_from(["em", "contains", "f1", "contains_or_f1"]))
def test_never_raises_and_em_implies_correct(response, answers, policy):
    v = judge_qa(qa(answers), response, policy=policy)
    assert v.correct in (True, False, None)
    if any(normalize_answer(a) and normalize_answer(a) == normalize_answer(response) for a in answers):
        assert v.correct is True
    assert 0.0 <= f1_score(response, answers[0]) <= 1.0
    assert normalize_answer(normalize_answer(response)) == normalize_answer(response)


# ------------------------------------------------------------------ judge_squad (the squad task's default)
def _sq(answers, question):
    from s3ft.types import Example

    return Example("s", [{"role": "user", "content": question}], answers[0], {"answers": answers, "question": question})


@pytest.mark.parametrize("reply, ok", [
    ("Denver Broncos", True),
    ("The Denver Broncos won Super Bowl 50.", True),
    ("The answer is the Broncos.", True),
    ("According to the context, the Denver Broncos.", True),
    ("Broncos. They beat the Carolina Panthers 24-10 in the game.", True),  # the first sentence answers
    ("Denver", False),  # part of the span is not the answer
    ("Denver Colts", False),  # a wrong span of the right shape
    ("The American Football Conference (AFC) champion Denver Broncos defeated the National Football Conference "
     "(NFC) champion Carolina Panthers 24-10 to earn their third Super Bowl title.", False),  # a quoted sentence
    ("Super Bowl 50 was won by a team.", False),  # restates the question, states no answer
    ("", False),
])
def test_squad_judge_wants_a_stated_answer(reply, ok):
    from s3ft.judges.qa import judge_squad

    ex = _sq(["Denver Broncos", "Broncos"], "Which NFL team won Super Bowl 50?")
    assert judge_squad(ex, reply).correct is ok, judge_squad(ex, reply)


def test_squad_judge_probes_on_the_test_split():
    """No model: the gold and sentences stating it pass; the quoting probe (the context sentence
    sharing most words with the question), a gold-free context sentence and a mutated gold fail
    - the lenient qa judge accepts the quoting probe most of the time."""
    import importlib.util
    from pathlib import Path

    from s3ft.judges import get_judge
    from s3ft.tasks import get_task

    spec = importlib.util.spec_from_file_location("probe", Path(__file__).resolve().parents[2] / "bench" / "squad_judge_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    exs = get_task("squad").load("test")
    rows = [probe.probes(e, other) for e, other in zip(exs, [probe.gold_answers(e)[0] for e in exs[1:] + exs[:1]])]

    def rate(name, kind):
        pairs = [(e, r[kind]) for e, r in zip(exs, rows) if r[kind]]
        verdicts = get_judge(name)([e for e, _ in pairs], [t for _, t in pairs])
        return sum(v.correct is True for v in verdicts) / len(pairs)

    assert rate("squad", "gold") == 1.0 and rate("squad", "The answer is GOLD.") == 1.0
    assert rate("squad", "According to the context, GOLD.") == 1.0
    assert rate("squad", "quoting probe: best-overlap context sentence") <= 0.30
    assert rate("qa", "quoting probe: best-overlap context sentence") >= 0.70  # the probe does fool the lenient judge
    assert rate("squad", "best-overlap sentence without a gold answer") <= 0.01
    assert rate("squad", "gold with its last word replaced") <= 0.15


# ------------------------------------------------------------------ judge_squad_sentence (the squad_sentence task's)
SB_CONTEXT = (
    "Super Bowl 50 was an American football game to determine the champion of the National Football League (NFL) "
    "for the 2015 season. In the end, the AFC champion Denver Broncos defeated the Carolina Panthers 24-10 to earn "
    "their third Super Bowl title. The game was played on February 7, 2016, at Levi's Stadium in Santa Clara, California."
)


def _sentence(answers, question, context=SB_CONTEXT):
    from s3ft.types import Example

    meta = {"answers": answers, "question": question}
    if context is not None:
        meta["context"] = context
    return Example("s", [{"role": "user", "content": question}], answers[0], meta)


@pytest.mark.parametrize("reply, ok", [
    # one-sentence answers in the model's own words
    ("Super Bowl 50 was won by the Denver Broncos, who beat the Carolina Panthers.", True),
    ("The AFC champion Denver Broncos won Super Bowl 50, beating the Carolina Panthers 24-10.", True),
    ("The answer is Denver Broncos, according to the passage.", True),
    ("The team from Colorado, the Denver Broncos, won Super Bowl 50 against Carolina.", True),
    ("Denver Broncos", True),
    # must fail
    ("In the end, the AFC champion Denver Broncos defeated the Carolina Panthers 24-10 to earn their third "
     "Super Bowl title.", False),  # a quoted context sentence
    ("Super Bowl 50 was an American football game to determine the champion of the National Football League "
     "(NFL) for the 2015 season.", False),  # the best-overlap context sentence, no gold in it
    ("Super Bowl 50 was won by the Denver Colts, who beat the Carolina Panthers.", False),  # a wrong span
    ("In a game played at Levi's Stadium in Santa Clara, the Denver Broncos won.", False),  # 6 words of its own first
    ("Super Bowl 50 was won by a team.", False),  # restates the question
    ("Tesla was born in Smiljan in 1856.", False),  # off topic
    ("", False),
    (None, False),
])
def test_squad_sentence_judge_on_sentences(reply, ok):
    from s3ft.judges.qa import judge_squad_sentence

    ex = _sentence(["Denver Broncos", "Broncos"], "Which NFL team won Super Bowl 50?")
    assert judge_squad_sentence(ex, reply).correct is ok, judge_squad_sentence(ex, reply)


def test_squad_sentence_judge_fixes_what_the_squad_judge_gets_wrong():
    """Sentences the squad judge rejects: words of its own before the gold, and a question word
    that is also a gold word restated before the answer."""
    from s3ft.judges.qa import judge_squad, judge_squad_sentence

    cases = [
        (_sentence(["double coronation", "double"], "What kind of coronation happened?", None),
         "The coronation of King Richard the Lion-Heart was a double coronation, where both Richard and "
         "Berengaria were crowned."),
        (_sentence(["speed-up theorem"], "What theorem was implicated by Manuel Blum's axioms?", None),
         "The theorem that was implicated by Manuel Blum's axioms is the speed-up theorem, which was proved "
         "by Leonid Levin in 1972."),
        (_sentence(["1784", "the Methodist Episcopal Church was not founded until 1784."],
                   "When was the Methodist Episcopal Church founded?", None),
         "The Methodist Episcopal Church was founded in 1784."),
    ]
    for ex, reply in cases:
        assert judge_squad(ex, reply).correct is False, reply
        v = judge_squad_sentence(ex, reply)
        assert v.correct is True and v.extracted == ex.meta["answers"][0], v


def test_squad_sentence_judge_copy_check_and_lead_words():
    """A sentence copied from the context gets the squad judge's verdict alone; the same sentence
    with no context to compare passes the lead-word rule. lead_words sets how many words of its own
    may come before the gold."""
    from s3ft.judges.qa import copied_share, judge_squad_sentence

    quote = "In the end, the AFC champion Denver Broncos defeated the Carolina Panthers 24-10 to earn their third title."
    q, golds = "Which NFL team won Super Bowl 50?", ["Denver Broncos", "Broncos"]
    assert copied_share(quote, SB_CONTEXT) >= 0.75 > copied_share("The AFC champion Denver Broncos won it.", SB_CONTEXT)
    copied = judge_squad_sentence(_sentence(golds, q), quote)
    assert copied.correct is False and "copied from the context" in copied.reason
    assert judge_squad_sentence(_sentence(golds, q, None), quote).correct is True
    six = "In a game played at Levi's Stadium in Santa Clara, the Denver Broncos won."
    assert judge_squad_sentence(_sentence(golds, q), six).correct is False
    assert judge_squad_sentence(_sentence(golds, q), six, lead_words=6).correct is True
    assert get_judge("squad_sentence")([_sentence(golds, q)], ["Denver won it: the Denver Broncos."])[0].correct is True


def test_squad_sentence_judge_probes_on_the_test_split():
    """No model, the squad_sentence task's examples: one-sentence answers pass (the squad judge
    rejects many), the quoting probe passes no more often than under the squad judge, wrong
    spans, gold-free and off-topic sentences and empty replies fail; whatever the squad judge
    accepts, the sentence judge accepts."""
    import importlib.util
    import random
    from pathlib import Path

    from s3ft.tasks import get_task

    spec = importlib.util.spec_from_file_location("probe", Path(__file__).resolve().parents[2] / "bench" / "squad_judge_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    squad, sentence = get_task("squad").load("test"), get_task("squad_sentence").load("test")
    perm = list(range(len(squad)))
    random.Random(0).shuffle(perm)
    rows = [probe.probes(e, probe.gold_answers(squad[j])[0], squad[j]) for e, j in zip(squad, perm)]
    verdicts = {}
    for name, exs in (("squad", squad), ("squad_sentence", sentence)):
        for kind in rows[0]:
            pairs = [(e, r[kind]) for e, r in zip(exs, rows) if r[kind] is not None]
            verdicts[name, kind] = [v.correct is True for v in get_judge(name)([e for e, _ in pairs], [t for _, t in pairs])]

    def rate(name, kind):
        return sum(verdicts[name, kind]) / len(verdicts[name, kind])

    for kind in probe.MUST_PASS:
        assert rate("squad_sentence", kind) == 1.0, kind
    for kind in probe.MUST_PASS_SENTENCE:
        assert rate("squad_sentence", kind) >= 0.95, kind
    assert rate("squad", "question's words, GOLD, a clause") <= 0.85  # the squad judge misses sentence answers
    for kind in ("quoting probe: best-overlap context sentence", "quoting probe cut to 20 words"):
        assert rate("squad_sentence", kind) <= rate("squad", kind) <= 0.30, kind
    assert rate("squad_sentence", "best-overlap sentence without a gold answer") <= 0.01
    assert rate("squad_sentence", "gold with its last word replaced") <= 0.15
    assert rate("squad_sentence", "question's words, replaced gold (no gold left in it), a clause") <= 0.02
    assert rate("squad_sentence", "off topic: a sentence of another context") == 0.0
    assert rate("squad_sentence", "empty reply") == 0.0
    for kind in rows[0]:
        assert all(b for a, b in zip(verdicts["squad", kind], verdicts["squad_sentence", kind]) if a), kind
