"""Math judge (GSM8K style): extract the final answer from a worked solution and compare it
with the gold answer.

Extraction tries, in order (configurable with `patterns`):
  answer_is   - the last "The answer is ..." / "final answer: ..." (rest of that line)
  hash        - the last "#### ..." (GSM8K's own format)
  boxed       - the last \\boxed{...} (balanced braces)
  last_number - the last number in the text
A pattern whose span holds no usable answer falls through to the next one. Custom regular
expressions (one capture group) may be given in `patterns` too.

Numbers are normalised before comparing: thousands commas ("1,000"), currency and units
("$18", "18 dollars", "10%"), signs (unicode minus), decimals ("5.0" == "5") and fractions
("3/4" == "0.75"). Two plain numbers are compared exactly (as fractions); anything else (LaTeX
such as \\frac{3}{4}, \\sqrt{2}, expressions) is decided by math-verify: verify(gold, pred)."""
from __future__ import annotations

import re
import threading
from fractions import Fraction
from typing import Any, Sequence

from s3ft.types import Example, Verdict

DEFAULT_PATTERNS = ("answer_is", "hash", "boxed", "last_number")

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_SIGN = r"[-−–+]"
_CURRENCY = r"(?:[$€£¥₹]|US\$|USD|Rs\.?|EUR|GBP)"
# a number at the start of a span: optional sign / currency in either order, optional fraction
_LEADING = re.compile(
    rf"^\s*(?P<s1>{_SIGN})?\s*(?:{_CURRENCY})?\s*(?P<s2>{_SIGN})?\s*(?P<num>{_NUM})"
    rf"(?:\s*/\s*(?P<den>{_NUM}))?(?![\d,]*\.?\d)",
    re.I,
)
_ANY_NUMBER = re.compile(rf"(?:(?<![\w)\]}}])(?P<sign>{_SIGN}))?\s*(?:{_CURRENCY})?\s*(?P<num>{_NUM})(?:\s*/\s*(?P<den>{_NUM}))?", re.I)
_ANSWER_IS = re.compile(r"answer\s+is\b|answer\s*:", re.I)
_HASH = re.compile(r"####")
_LATEXISH = re.compile(r"\\[a-zA-Z]+|\^|_\{|\\\(|\\\[")
_WRAPPERS = re.compile(r"^(?:\s|[:：=]|\*\*|\$|\\\(|\\\[|\\displaystyle|is\b|equal\s+to\b|approximately\b|about\b)+", re.I)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...} (balanced braces), or None."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            return text[start : i - 1].strip()
    return None


def _clean_number(sign: str | None, num: str, den: str | None = None) -> str:
    out = ("-" if sign and sign != "+" else "") + num.replace(",", "")
    if den:
        out += "/" + den.replace(",", "")
    return out


def answer_from_span(span: Any) -> str | None:
    """Normalise the text after an answer marker into an answer string: a plain number
    ("1000", "-3/4", "5.0") when the span starts with one, else a LaTeX / expression span for
    math-verify, else the first number in the span; None when nothing usable is there."""
    if span is None:
        return None
    s = str(span).strip()
    if not s:
        return None
    if "\\boxed" in s or "\\fbox" in s:
        b = last_boxed(s)
        if b:
            s = b
    s = s.split("\n", 1)[0]
    s = _WRAPPERS.sub("", s)
    if not s:
        return None
    sentence = re.split(r"\.(?:\s|$)|[;!?](?:\s|$)", s, maxsplit=1)[0]
    after_eq = None
    if "=" in sentence:
        m_eq = _LEADING.match(_WRAPPERS.sub("", sentence.rsplit("=", 1)[1]))
        if m_eq:
            after_eq = _clean_number(m_eq.group("s1") or m_eq.group("s2"), m_eq.group("num"), m_eq.group("den"))
    m = _LEADING.match(s)
    if m:
        # "18 - 2 = 16": a leading number followed by arithmetic is not the result
        if after_eq and re.match(r"\s*[-+*/×÷x^]\s*[\d(]", s[m.end():]):
            return after_eq
        return _clean_number(m.group("s1") or m.group("s2"), m.group("num"), m.group("den"))
    if after_eq:
        return after_eq
    if _LATEXISH.search(s[:80]):
        s = re.split(r"(?<=[^\\])\.\s|\.$|\$", s, maxsplit=1)[0].strip()  # up to the end of the sentence
        return s or None
    nums = list(_ANY_NUMBER.finditer(sentence))
    if len(nums) == 1:  # "she has 18 apples"; several numbers without "=" are ambiguous
        m = nums[0]
        return _clean_number(m.group("sign"), m.group("num"), m.group("den"))
    return None


def _after(text: str, regex: re.Pattern) -> str | None:
    hits = list(regex.finditer(text))
    if not hits:
        return None
    rest = text[hits[-1].end() :].lstrip(" \t:：*")
    rest = rest.lstrip("\n") if not rest.split("\n", 1)[0].strip() else rest
    return rest.split("\n", 1)[0]


def extract_answer(text: Any, patterns: Sequence[str] | None = None) -> tuple[str | None, str | None]:
    """(answer, pattern name) for the first pattern that yields an answer, else (None, None)."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    for pat in patterns or DEFAULT_PATTERNS:
        if pat == "answer_is":
            ans = answer_from_span(_after(text, _ANSWER_IS))
        elif pat == "hash":
            ans = answer_from_span(_after(text, _HASH))
        elif pat == "boxed":
            b = last_boxed(text)
            ans = answer_from_span(b) if b is not None else None
        elif pat == "last_number":
            hits = list(_ANY_NUMBER.finditer(text))
            ans = _clean_number(hits[-1].group("sign"), hits[-1].group("num"), hits[-1].group("den")) if hits else None
        else:  # a custom regular expression; its first group (or the whole match) is the span
            hits = list(re.finditer(pat, text))
            ans = answer_from_span((hits[-1].group(1) if hits[-1].groups() else hits[-1].group(0))) if hits else None
        if ans:
            return ans, pat
    return None, None


def to_fraction(answer: str | None) -> Fraction | None:
    """A plain number answer as an exact Fraction (None for anything else)."""
    if answer is None:
        return None
    a = answer.replace(",", "").replace(" ", "").replace("−", "-")
    if not re.fullmatch(r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:/(?:\d+(?:\.\d+)?|\.\d+))?", a):
        return None
    try:
        if "/" in a:
            num, den = a.split("/")
            d = Fraction(den)
            return Fraction(num) / d if d != 0 else None
        return Fraction(a)
    except (ValueError, ZeroDivisionError):
        return None


def _mv_parse(s: str):
    from math_verify import parse

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    if "$" not in s and "\\" in s:
        s = f"${s}$"
    out = parse(s, parsing_timeout=timeout)
    if not out and "$" not in s:
        out = parse(f"${s}$", parsing_timeout=timeout)
    return out


def _mv_verify(gold_parsed, pred_parsed) -> bool:
    from math_verify import verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


def gold_answer(example: Example, patterns: Sequence[str] | None = None) -> str | None:
    """Gold final answer: meta["answer"] (normalised), else extracted from example.gold."""
    meta = example.meta or {}
    if meta.get("answer") is not None and str(meta["answer"]).strip():
        ans = answer_from_span(str(meta["answer"]))
        if ans:
            return ans
    ans, _ = extract_answer(example.gold, patterns)
    return ans


def judge_math(example: Example, response: Any, patterns: Sequence[str] | None = None) -> Verdict:
    """Correct if the response's final answer equals the gold answer (see module docstring)."""
    gold = gold_answer(example, patterns)
    if gold is None:
        return Verdict(None, "cannot parse gold")
    pred, how = extract_answer(response, patterns)
    if pred is None:
        return Verdict(False, "no answer found in response")
    gf, pf = to_fraction(gold), to_fraction(pred)
    if gf is not None and pf is not None:
        if gf == pf:
            return Verdict(True, f"answer {pred} == gold {gold} ({how})", pred)
        return Verdict(False, f"answer {pred} != gold {gold} ({how})", pred)
    try:
        gp = _mv_parse(gold)
    except Exception as e:
        return Verdict(None, f"cannot parse gold: {type(e).__name__}", pred)
    if not gp:
        return Verdict(None, "cannot parse gold", pred)
    try:
        pp = _mv_parse(pred)
        if not pp:
            return Verdict(False, f"cannot parse answer {pred!r}", pred)
        ok = _mv_verify(gp, pp)
    except Exception as e:  # math-verify timeouts and parser failures
        return Verdict(None, f"math-verify error: {type(e).__name__}", pred)
    if ok:
        return Verdict(True, f"answer {pred} equivalent to gold {gold} (math-verify, {how})", pred)
    return Verdict(False, f"answer {pred} not equivalent to gold {gold} (math-verify, {how})", pred)
