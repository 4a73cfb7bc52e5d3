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
