"""Math judge: every GSM8K train solution is judged correct against its own final number, the
same solution with the number changed is judged wrong, and the usual answer formats work. The
whole final expression is compared: a boxed or stated expression that differs from the gold by
any term is wrong ("\\boxed{9+1}" is not 9, "3\\sqrt{13}" is not 3), equivalent forms are right."""
from __future__ import annotations

import gzip
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3ft.judges import get_judge
from s3ft.judges.math import extract_answer, gold_answer, judge_math, last_boxed, to_fraction
from s3ft.types import Example

GSM8K_TRAIN = Path("/work/shared/data/gsm8k/train.jsonl.gz")
GSM8K_TEST = Path(__file__).resolve().parents[2] / "src/s3ft/data/gsm8k/test.jsonl.gz"


def ex(answer=None, gold=""):
    return Example("m", [{"role": "user", "content": "Q"}], gold, {} if answer is None else {"answer": answer})


def gsm8k_rows():
    if not GSM8K_TRAIN.exists():
        pytest.skip(f"{GSM8K_TRAIN} not available")
    with gzip.open(GSM8K_TRAIN, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def as_response(solution: str) -> tuple[str, str, str]:
    """(worked solution ending 'The answer is N.', N as written, N without commas)."""
    body = re.sub(r"<<.*?>>", "", solution)
    n = body.rsplit("####", 1)[1].strip()
    text = re.sub(r"####\s*(.+)\s*$", lambda m: f"The answer is {m.group(1).strip()}.", body.rstrip())
    return text, n, n.replace(",", "")


def test_all_gsm8k_train_solutions_judged_correct_and_perturbed_wrong():
    rows = gsm8k_rows()
    assert len(rows) == 7473
    wrong, accepted_perturbed = [], []
    for i, row in enumerate(rows):
        text, n_written, n = as_response(row["answer"])
        v = judge_math(ex(n, gold=text), text)
        if v.correct is not True:
            wrong.append((i, v.reason))
        bumped = str(int(n) + 1)
        perturbed = text[: text.rindex(n_written)] + bumped + "."
        if judge_math(ex(n, gold=text), perturbed).correct is not False:
            accepted_perturbed.append(i)
    assert not wrong, wrong[:10]
    assert not accepted_perturbed, accepted_perturbed[:10]


def test_gsm8k_gold_without_meta_is_parsed_from_the_solution():
    rows = gsm8k_rows()[:500]
    for row in rows:
        text, _, n = as_response(row["answer"])
        gold_only = Example("g", [], text, {})
        assert judge_math(gold_only, f"So the total is {n}.").correct is True
        assert judge_math(gold_only, f"The answer is {int(n) + 1}").correct is False


# gold answer, response, expected
CASES = [
    ("1000", "The answer is 1,000.", True),
    ("1000", "The answer is $1,000 dollars.", True),
    ("1000", "The answer is 1000.00", True),
    ("18", "She makes $18 every day. The answer is $18.", True),
    ("18", "The answer is 18 dollars.", True),
    ("10", "The answer is 10%.", True),
    ("5", "The answer is 5.0", True),
    ("0.5", "The answer is 1/2.", True),
    ("0.5", "The answer is .5", True),
    ("0.75", "The answer is \\frac{3}{4}.", True),
    ("1.5", "The answer is $\\dfrac{3}{2}$", True),
    ("2", "The answer is \\sqrt{4}.", True),
    ("42", "Thus \\boxed{42}.", True),
    ("42", "The final answer is $\\boxed{42}$", True),
    ("42", "#### 42", True),
    ("-3", "The answer is -3.", True),
    ("-3", "The answer is −3", True),
    ("16", "The answer is 18 - 2 = 16.", True),
    ("13", "The answer is 15 - 2 = 13", True),  # the result after the last '='
    ("13", "The answer is 13, since 15 - 2 = 13.", True),
    ("13", "The answer is 13 (15 - 2 = 13).", True),
    ("16", "The answer is: she earns 18 - 2 = 16 dollars.", True),
    ("8", "The answer is $5 + $3 = $8.", True),
    ("72", "The answer is \\boxed{72 \\text{ dollars}}", True),
    ("5", "The answer is 5 kg.", True),
    ("18", "The answer is **18**.", True),
    ("18", "The answer is 18 cm^2.", True),
    ("8", "The answer is 5 + 3 = 8, so she has 8 apples", True),
    ("23", "The answer is: 18 + 2 + 3 = <<18+2+3=23>>23", True),  # calculator annotations
    ("18000", "The answer is 18\\,000", True),
    ("18", "The answer is 18\\,000", False),
    ("5", "The answer is x = 5", True),
    ("18", "The answer is that she has 18 apples.", True),
    ("72", "The answer is:\n\n72", True),
    ("72", "**Final Answer:** 72", True),
    ("72", "48 + 24 = 72 clips", True),  # last number
    ("72", "The answer is 72. Earlier I wrote 73.", True),  # last "The answer is" wins over the last number
    ("72", "The answer is 70. No wait, the answer is 72.", True),
    ("72", "The answer is 73.", False),
    ("72", "The answer is 72.5", False),
    ("72", "The answer is 1/72", False),
    ("1000", "The answer is 100.", False),
    ("0.75", "The answer is \\frac{4}{3}.", False),
    ("72", "no numbers here", False),
    ("72", "", False),
    ("72", None, False),
    ("3", "The answer is three", False),  # number words are not read
]


@pytest.mark.parametrize("gold,response,expected", CASES)
def test_answer_formats(gold, response, expected):
    v = judge_math(ex(gold), response)
    assert v.correct is expected, v


# gold expression, response, expected: the whole final expression is compared
EXPRESSION_CASES = [
    # differs from the gold by a term, a factor or a coefficient: wrong
    ("9", "The answer is $\\boxed{9+1}$.", False),
    ("9", "So we get \\boxed{9+1}", False),
    ("9", "The answer is 9 + 1.", False),
    ("9", "#### 9+1", False),
    ("3\\sqrt{13}", "The answer is 3\\sqrt{13}+1", False),
    ("3\\sqrt{13}", "The answer is $3\\sqrt{13}+1$.", False),
    ("3\\sqrt{13}", "The answer is 3", False),  # the gold is 3*sqrt(13), not its leading 3
    ("3\\sqrt{13}", "\\boxed{4\\sqrt{13}}", False),
    ("\\frac{1}{2}", "The answer is \\frac{1}{2}+x", False),
    ("\\frac{1}{2}", "\\boxed{\\frac{1}{2}+x}", False),
    ("\\frac{3}{4}", "\\boxed{3}", False),
    ("x^2-1", "\\boxed{x^2}", False),
    ("2\\pi", "The answer is $2\\pi + 1$", False),
    ("[0, 1)", "The answer is $[0, 1)+1$.", False),
    ("3", "\\boxed{(1,2,3)+1}", False),  # math-verify's plain-expression fallback would read 3
    ("5", "\\boxed{5t}", False),  # math-verify's unit stripping would read 5
    ("-12+5t", "\\boxed{-7}", False),
    # equivalent forms: right
    ("\\frac{1}{2}", "The answer is 0.5", True),
    ("0.5", "\\boxed{\\frac{1}{2}}", True),
    ("\\frac{1}{2}", "The answer is $\\dfrac{1}{2}$.", True),
    ("0.5", "\\boxed{\\dfrac12}", True),
    ("\\frac{1}{2}", "The answer is \\frac{1}{2}, which is half of it.", True),
    ("x^2-1", "The answer is x^2 - 1.", True),
    ("x^2-1", "\\boxed{(x-1)(x+1)}", True),
    ("3\\sqrt{13}", "\\boxed{3\\sqrt{13}}", True),
    ("3\\sqrt{13}", "The answer is $\\sqrt{117}$.", True),
    ("3\\sqrt{13}", "The answer is 3 sqrt(13).", True),
    ("3\\sqrt{13}", "The answer is $3\\sqrt{13}$ square units.", True),
    ("3\\sqrt{13}", "The answer is $3\\sqrt{13}\\text{ cm}^2$", True),
    ("2\\pi", "The answer is 2 pi", True),
    ("[0, 1)", "The answer is $\\left[0,1\\right)$.", True),
    ("\\{1, 2\\}", "\\boxed{\\{2, 1\\}}", True),
    ("(1, 2, 3)", "The answer is $(1,2,3)$", True),
    ("y = 2x + 1", "The answer is y = 2x+1", True),
    ("120", "The answer is $5!$", True),
    ("90", "The answer is $90^\\circ$.", True),
]


@pytest.mark.parametrize("gold,response,expected", EXPRESSION_CASES)
def test_whole_expression_is_compared(gold, response, expected):
    v = judge_math(ex(gold), response)
    assert v.correct is expected, v


def test_extracted_span_is_the_whole_final_expression():
    assert extract_answer("The answer is $\\boxed{9+1}$.") == ("9+1", "answer_is")
    assert extract_answer("The answer is 3\\sqrt{13}+1")[0] == "3\\sqrt{13}+1"
    assert extract_answer("The answer is 15 - 2 = 13") == ("13", "answer_is")
    assert extract_answer("The answer is x = 5")[0] == "5"
    assert extract_answer("we get \\boxed{\\frac{1}{2}+x}") == ("\\frac{1}{2}+x", "boxed")
    assert gold_answer(ex("3\\sqrt{13}")) == "3\\sqrt{13}"  # an expression, not 3
    assert gold_answer(ex("$1,000")) == "1000"


def gsm8k_test_rows():
    with gzip.open(GSM8K_TEST, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_gsm8k_test_gold_plus_one_appended_is_wrong():
    rows = gsm8k_test_rows()[::6]
    for row in rows:
        n = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        e = ex(n)
        assert judge_math(e, f"The answer is {n}.").correct is True
        assert judge_math(e, f"The answer is {n}+1.").correct is False, n
        assert judge_math(e, f"So the total is $\\boxed{{{n}+1}}$.").correct is False, n


def test_gold_forms():
    assert judge_math(ex("1,000"), "1000").correct is True  # commas in meta["answer"]
    assert judge_math(ex("$5"), "The answer is 5").correct is True
    assert judge_math(ex("\\frac{1}{3}"), "The answer is 1/3").correct is True
    assert judge_math(Example("x", [], "The answer is 7.", {}), "I get 7").correct is True
    v = judge_math(Example("x", [], "no gold here", {}), "7")
    assert v.correct is None and v.reason == "cannot parse gold"
    v = judge_math(ex("72"), "nothing")
    assert v.correct is False and "no answer" in v.reason


def test_extraction_order_is_configurable():
    text = "\\boxed{3}\nThe answer is 4.\n#### 5\nfinally 6"
    assert extract_answer(text) == ("4", "answer_is")
    assert extract_answer(text, ["hash", "answer_is"]) == ("5", "hash")
    assert extract_answer(text, ["boxed"]) == ("3", "boxed")
    assert extract_answer(text, ["last_number"]) == ("6", "last_number")
    assert extract_answer("Result => 17 <=", [r"=>\s*(\d+)"]) == ("17", r"=>\s*(\d+)")
    v = judge_math(ex("6"), text, patterns=["last_number"])
    assert v.correct is True and v.extracted == "6"


def test_helpers():
    assert last_boxed("\\boxed{\\frac{1}{2}} and \\boxed{x^{2}}") == "x^{2}"
    assert last_boxed("\\boxed{unclosed") is None
    assert to_fraction("1,234.50") == to_fraction("1234.5")
    assert to_fraction("3/0") is None and to_fraction("abc") is None


def test_math_verify_path_works_off_the_main_thread():
    # math-verify uses signal.alarm in the main thread; elsewhere the judge must disable timeouts
    pairs = [("0.75", "The answer is \\frac{3}{4}", True), ("2", "The answer is \\sqrt{5}", False),
             ("3\\sqrt{13}", "\\boxed{3\\sqrt{13}+1}", False), ("3\\sqrt{13}", "\\boxed{\\sqrt{117}}", True)] * 4
    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(lambda p: judge_math(ex(p[0]), p[1]), pairs))
    assert [v.correct for v in out] == [p[2] for p in pairs]


def test_batch_interface():
    out = get_judge("math")([ex("3"), ex("4")], ["The answer is 3", "The answer is 3"])
    assert [v.correct for v in out] == [True, False]


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(-10**6, 10**6))
def test_never_raises(response, n):
    v = judge_math(ex(str(n)), response)
    assert v.correct in (True, False)
    assert judge_math(ex(str(n)), f"{response}\nThe answer is {n:,}.").correct is True
