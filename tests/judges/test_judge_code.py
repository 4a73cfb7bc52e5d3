"""Code judge: opt-in, program extraction, MBPP canonical solutions pass their own tests and
mutated solutions fail."""
from __future__ import annotations

import ast
import gzip
import json
import os
import random
import warnings
from pathlib import Path

import pytest

from s3ft.judges import get_judge
from s3ft.judges.code import example_tests, extract_code, make_code_judge
from s3ft.types import Example

MBPP = Path("/work/shared/data/mbpp/mbpp.jsonl.gz")

# Canonical MBPP solutions that do not pass their own tests in this sandbox, with the reason.
# Empty: on this copy of mbpp.jsonl (974 rows, the HF/OpenCompass version) every reference
# solution passes its test_list (with test_setup_code), and also its challenge_test_list, under
# PYTHONHASHSEED 0, 1, 2 and random, both with bubblewrap and without (measured 974/974).
# Known upstream issues live in rows other copies edited, not in this one.
EXPECTED_FAILURES: dict[int, str] = {}


@pytest.fixture(scope="module")
def mbpp_rows():
    if not MBPP.exists():
        pytest.skip(f"{MBPP} not available")
    with gzip.open(MBPP, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 974
    return rows


@pytest.fixture(scope="module")
def judge():
    return make_code_judge(allow_code_execution=True, timeout=20.0)


def to_example(row) -> Example:
    lf = lambda s: s.replace("\r\n", "\n")  # noqa: E731
    return Example(
        str(row["task_id"]),
        [{"role": "user", "content": row["text"]}],
        "[BEGIN]\n" + lf(row["code"]) + "\n[DONE]",
        {"test_list": [lf(t) for t in row["test_list"]], "test_setup_code": lf(row["test_setup_code"]),
         "challenge_test_list": [lf(t) for t in row["challenge_test_list"]], "question": row["text"]},
    )


def canonical(row) -> str:
    return "[BEGIN]\n" + row["code"].replace("\r\n", "\n") + "\n[DONE]"


# -- mutations ------------------------------------------------------------------------------
def _parse(code: str) -> ast.Module:
    with warnings.catch_warnings():  # some reference solutions have invalid escape sequences
        warnings.simplefilter("ignore")
        return ast.parse(code)


def return_none(code: str) -> str:
    """Every function body replaced by `return None`."""
    tree = _parse(code)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(tree)


_WRAP = '''
def _s3ft_mutate(r):
    if isinstance(r, bool): return not r
    if isinstance(r, (int, float)): return r + 1
    if isinstance(r, str): return r + "x"
    if isinstance(r, list): return r + [None]
    if isinstance(r, tuple): return r + (None,)
    if isinstance(r, (set, frozenset)): return set(r) | {None}
    if isinstance(r, dict): return {**r, None: None}
    if r is None: return 0
    return None
_s3ft_orig = NAME
def NAME(*a, **k):
    return _s3ft_mutate(_s3ft_orig(*a, **k))
'''


def off_by_one(code: str, tests: list[str]) -> str:
    """The function the tests call, wrapped so its result is off by one (ints +1, strings +"x",
    lists/tuples one element longer, booleans negated, ...)."""
    defs = {n.name for n in _parse(code).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    for t in tests:
        for n in ast.walk(ast.parse(t)):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in defs:
                return code + "\n" + _WRAP.replace("NAME", n.func.id)
    raise AssertionError(f"no tested function in {tests}")


def run_mbpp(judge, rows):
    examples = [to_example(r) for r in rows]
    verdicts = judge(examples, [canonical(r) for r in rows])
    failing = {r["task_id"]: v.reason for r, v in zip(rows, verdicts) if v.correct is not True}
    unexpected = {k: v for k, v in failing.items() if k not in EXPECTED_FAILURES}
    assert not unexpected, unexpected
    for k in EXPECTED_FAILURES:
        if any(r["task_id"] == k for r in rows):
            assert k in failing, f"task {k} is listed as an expected failure but passed"
    ok = [r for r in rows if r["task_id"] not in EXPECTED_FAILURES]
    for name, mutate in (("return_none", lambda r: return_none(r["code"].replace("\r\n", "\n"))),
                         ("off_by_one", lambda r: off_by_one(r["code"].replace("\r\n", "\n"), r["test_list"]))):
        mutated = judge([to_example(r) for r in ok], ["[BEGIN]\n" + mutate(r) + "\n[DONE]" for r in ok])
        still = [(r["task_id"], v.reason) for r, v in zip(ok, mutated) if v.correct is not False]
        assert not still, (name, still)
    return verdicts


def test_mbpp_sample_canonical_pass_and_mutants_fail(judge, mbpp_rows):
    sample = random.Random(0).sample(mbpp_rows, 100)
    verdicts = run_mbpp(judge, sample)
    assert all(v.reason == f"passed {len(r['test_list'])}/{len(r['test_list'])} tests" for r, v in zip(sample, verdicts))


def _slow_enabled(config) -> bool:
    expr = config.getoption("markexpr") or ""
    return os.environ.get("S3FT_SLOW") == "1" or ("slow" in expr and "not slow" not in expr)


@pytest.mark.slow
def test_mbpp_all_974_canonical_pass_and_mutants_fail(judge, mbpp_rows, request):
    """~100 s on 2 cores: runs with `-m slow` or S3FT_SLOW=1."""
    if not _slow_enabled(request.config):
        pytest.skip("slow: run with -m slow or S3FT_SLOW=1")
    run_mbpp(judge, mbpp_rows)


def test_code_execution_is_opt_in():
    with pytest.raises(ValueError, match="allow-code-execution"):
        make_code_judge()
    with pytest.raises(ValueError, match="allow_code_execution: true"):
        get_judge("code")


EXTRACTION = [
    ("[BEGIN]\ndef f():\n    return 1\n[DONE]", "def f():\n    return 1"),
    ("Here you go:\n[BEGIN]\ndef f():\n    return 1\n[DONE]\nExplanation ...", "def f():\n    return 1"),
    ("[BEGIN]\ndef f():\n    return 1\n", "def f():\n    return 1"),  # generation stopped at [DONE]
    ("[BEGIN]\n```python\ndef f():\n    return 1\n```\n[DONE]", "def f():\n    return 1"),
    ("Sure!\n```python\nimport math\n```\ntext\n```python\ndef f():\n    return 1\n```", "import math\n\ndef f():\n    return 1"),
    ("```py\nx = 1\n```\n```bash\nrm -rf /\n```", "x = 1"),
    ("```\nx = 1\n```", "x = 1"),
    ("```python\nx = 1", "x = 1"),  # unterminated fence
    ("def f():\r\n    return 1", "def f():\n    return 1"),  # the whole reply
    ("", ""),
    ("[BEGIN]\n\n[DONE]", ""),
    ("[BEGIN]\n[DONE]\n```python\nx = 2\n```", "x = 2"),
    (None, ""),
]


@pytest.mark.parametrize("response,code", EXTRACTION)
def test_extract_code(response, code):
    assert extract_code(response) == code


def test_reasons_and_fallbacks(judge):
    ex = Example("t", [{"role": "user", "content": "Write f.\nassert f(1) == 2\nassert f(2) == 3"}], "", {})
    assert example_tests(ex) == (["assert f(1) == 2", "assert f(2) == 3"], "")  # asserts from the prompt
    with_setup = Example("s", [], "", {"test_list": ["assert f(K) == 4"], "test_setup_code": "K = 3"})
    responses = ["def f(x): return x + 1", "def f(x): return x", "def f(x) return x", "", "Sorry, I can't."]
    out = judge([ex] * 5, responses)
    assert [v.correct for v in out] == [True, False, False, False, False]
    assert out[0].reason == "passed 2/2 tests" and out[0].extracted == "def f(x): return x + 1"
    assert out[1].reason == "failed: AssertionError in test 1"
    assert out[2].reason.startswith("syntax error")
    assert out[3].reason == "no code found"
    assert out[4].reason.startswith("syntax error")
    out = judge([with_setup, with_setup, Example("n", [], "", {})], ["def f(x): return x + 1", "1/0", "x = 1"])
    assert out[0].correct is True
    assert out[1].correct is False and out[1].reason == "failed: ZeroDivisionError while running the program"
    assert out[2].correct is None and out[2].reason == "no tests for this example"
    bad_test = Example("b", [], "", {"test_list": ["assert f(1) =="]})
    assert judge([bad_test], ["def f(x): return x"])[0].correct is None  # broken test: not the model's fault


def test_timeout_reason():
    j = make_code_judge(allow_code_execution=True, timeout=1.5)
    ex = Example("t", [], "", {"test_list": ["assert f() == 1"]})
    v = j([ex], ["def f():\n    while True:\n        pass"])[0]
    assert v.correct is False and v.reason == "timeout after 1.5s"


def test_challenge_tests_are_optional(judge):
    ex = Example("c", [], "", {"test_list": ["assert f(1) == 2"], "challenge_test_list": ["assert f(-1) == 0"]})
    prog = "def f(x): return abs(x) + 1"
    assert judge([ex], [prog])[0].correct is True
    j = make_code_judge(allow_code_execution=True, include_challenge_tests=True)
    v = j([ex], [prog])[0]
    assert v.correct is False and v.reason == "failed: AssertionError in test 2"
