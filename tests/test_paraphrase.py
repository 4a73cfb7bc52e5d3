import pytest

from s3ft.paraphrase import leak_reason, paraphrase_prompt
from s3ft.types import Example


@pytest.mark.parametrize("text", [
    "According to the reference answer, it is 23 years.",
    "Your response should be 23 years.",
    "My response: 23 years",
    "Using the provided answer as a guide, 23.",
    "Here is my rewritten answer: 23 years",
    "I will paraphrase: 23 years",
    "",
    "   ",
])
def test_filter_rejects(text):
    assert leak_reason(text) is not None


@pytest.mark.parametrize("text", [
    "The regatta predates The Game by 23 years.",
    "23 years",
    "Let's think step by step. 48/2 = 24, 48 + 24 = 72. The answer is 72",
    "[BEGIN]\ndef f(x):\n    return x\n[DONE]",
    "He responded to the question by referencing history.",
])
def test_filter_keeps(text):
    assert leak_reason(text) is None


def test_prompt_contains_question_and_gold_and_keeps_system():
    e = Example("1", [{"role": "system", "content": "S"}, {"role": "user", "content": "Context: c\n\nQuestion: q"}], "the gold", {})
    msgs = paraphrase_prompt(e, "generic")
    assert msgs[0] == {"role": "system", "content": "S"}
    assert msgs[-1]["role"] == "user"
    assert "Question: q" in msgs[-1]["content"] and "the gold" in msgs[-1]["content"]
    assert "Let's think step by step" in paraphrase_prompt(e, "math")[-1]["content"]
    assert "[BEGIN]" in paraphrase_prompt(e, "code")[-1]["content"]
    with pytest.raises(ValueError):
        paraphrase_prompt(e, "poetry")


def test_worked_answer_cut_to_its_last_line_is_rejected():
    """A paraphrase must keep a worked gold's working: 'The answer is N.' for a 30-word solution is
    rejected (the math judge would accept it: same final number); short golds are never length-checked."""
    from s3ft.paraphrase import MIN_WORKED_GOLD_WORDS, filter_reason

    worked = "Natalia sold 48 clips in April and half as many in May, so 48 / 2 = 24 clips in May. " \
             "Altogether she sold 48 + 24 = 72 clips. The answer is 72"
    assert len(worked.split()) >= MIN_WORKED_GOLD_WORDS
    why = filter_reason("The answer is 72.", worked)
    assert why is not None and "working is gone" in why and "4 words" in why
    kept = "In May she sold half of 48, which is 24, so over both months she sold 48 + 24 = 72. The answer is 72."
    assert filter_reason(kept, worked) is None
    assert filter_reason("The answer is 72.", worked, min_length_ratio=0) is None  # off
    assert filter_reason("Paris.", "The capital of France is Paris") is None  # a short gold: no length check
    assert filter_reason("The reference answer says 72.", worked, 0) is not None  # the leak filter still applies
    with pytest.raises(Exception, match="paraphrase_min_length_ratio"):
        from s3ft.config import load_config

        load_config(None, {"paraphrase_min_length_ratio": 1.5})
