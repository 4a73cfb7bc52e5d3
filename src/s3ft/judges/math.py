"""Math judge: extract the final answer from a worked solution (GSM8K style or LaTeX) and compare
it with the gold answer.

Extraction tries, in order (configurable with `patterns`):
  answer_is   - the last "The answer is ..." / "final answer: ..." (rest of that line)
  hash        - the last "#### ..." (GSM8K's own format)
  boxed       - the last \\boxed{...} (balanced braces)
  last_number - the last number in the text
A pattern whose span holds no usable answer falls through to the next one. Custom regular
expressions (one capture group) may be given in `patterns` too.

The extracted span is the final expression, and the whole of it is the answer (never a leading
number taken out of a longer expression: "\\boxed{9+1}" is 10, not 9; "3\\sqrt{13}" is not 3):
  - a \\boxed{...} in the span is the span; "$...$" / "\\(...\\)" ends at its closing delimiter,
    plain text at the end of the sentence; prose after the expression is dropped ("18 apples",
    "\\frac{1}{2}, which is ...");
  - an equation chain "a = b = c" is its last side ("15 - 2 = 13" is 13, "x = 5" is 5);
  - a plain number is normalised - thousands commas ("1,000"), currency and units ("$18",
    "18 dollars", "10%"), signs (unicode minus), decimals ("5.0" == "5"), fractions ("3/4") -
    and two plain numbers are compared exactly (as fractions);
  - anything else (LaTeX, operators, variables, \\sqrt, \\frac, intervals, sets, tuples ...) is
    parsed whole by math-verify as LaTeX and decided by verify(gold, pred). The gold is read the
    same way, so a gold "3\\sqrt{13}" is the expression 3*sqrt(13). math-verify gets LaTeX only
    (its plain-expression fallback takes a number out of what it cannot parse: "(1,2,3)+1" -> 3)
    and without its unit stripping (which drops a trailing letter: "-12+5t" -> -12+5); trailing
    unit words and \\text{} units are removed here instead.
Prose that starts the span ("that she has 18 apples") yields its only number, or nothing when it
has several."""
from __future__ import annotations

import functools
import re
import threading
from fractions import Fraction
from typing import Any, Sequence

from s3ft.types import Example, Verdict

DEFAULT_PATTERNS = ("answer_is", "hash", "boxed", "last_number")

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_SIGN = r"[-−–+]"
_CURRENCY = r"(?:[$€£¥₹]|\\\$|US\$|USD|Rs\.?|EUR|GBP)"
# what may follow a plain number: percent, degrees, a unit (\text{ cm}, a short word after a space:
# "18 kg"), a remark in parentheses holding an "=" ("13 (15 - 2 = 13)"); longer words are prose
_UNIT = (r"%|\\%|percent\b|°|\^\s*\{?\s*\\circ\s*\}?|\\(?:text|mbox|mathrm)\s*\{[^{}]*\}"
         r"|(?<=\d)(?:st|nd|rd|th)\b"  # ordinals
         r"|(?<=\s)(?:(?!pi\b)[A-Za-z]{2}|[msghlL])\b(?!\s*[-+*/(\\])(?:\^\s*\{?[23]\}?)?"  # 18 kg, 5 m, 3 cm^2
         r"|\([^()]*=[^()]*\)")
# the whole (prose-free) final expression is one plain number
_PLAIN = re.compile(
    rf"^(?P<s1>{_SIGN})?\s*(?:{_CURRENCY})?\s*(?P<s2>{_SIGN})?\s*(?P<num>{_NUM})"
    rf"(?:\s*/\s*(?P<den>{_NUM}))?(?:\s*(?:{_UNIT}))*\s*$",
    re.I,
)
_ANY_NUMBER = re.compile(rf"(?:(?<![\w)\]}}])(?P<sign>{_SIGN}))?\s*(?:{_CURRENCY})?\s*(?P<num>{_NUM})(?:\s*/\s*(?P<den>{_NUM}))?", re.I)
_ANSWER_IS = re.compile(r"answer\s+is\b|answer\s*:", re.I)
_HASH = re.compile(r"####")
_WRAPPERS = re.compile(r"^(?:\s|[:：=]|\*\*|\$|\\\(|\\\[|\\displaystyle|is\b|equal\s+to\b|approximately\b|about\b)+", re.I)
_OPENER = re.compile(r"\$|\\\(|\\\[")
# the closing math delimiter; a "$" before a digit is a currency sign, not a closer
_CLOSER = re.compile(r"(?<!\\)\$(?![\d.])|\\\)|\\\]")
_SENTENCE_END = re.compile(r"\.(?:\s|$)|[;!?](?:\s|$)")
# LaTeX text groups and commands, blanked out before looking for prose words
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{[^{}]*\}")
_LATEX_CMD = re.compile(r"\\[A-Za-z]+")
_MATH_WORDS = {"sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "exp", "infty", "frac", "dfrac",
               "tfrac", "cdot", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "max", "min", "gcd",
               "lcm", "det", "mod", "deg", "lim"}
# a prose word: three or more letters, or a common two-letter word, standing on their own (after a
# space or punctuation)
_PROSE_WORD = re.compile(
    r"(?:^|(?<=[\s,;:(\"'“]))([A-Za-z]{3,}|(?:so|is|it|of|to|on|at|by|or|as|we|he|an|be|if|my|no|us|do|up)(?=[\s,.;:!?)]|$))"
    r"(?![A-Za-z])", re.IGNORECASE)
_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations, "<<18+2=20>>"
# LaTeX thousands separators between digit groups, and LaTeX spacing
_THOUSANDS_SPACE = re.compile(r"(?<=\d)(?:\\[,!]\s*|\{,\})(?=\d{3}(?!\d))")
_LATEX_SPACE = re.compile(r"\\[,;:! ]|\\q?quad\b|~")
# non-ASCII symbols that end a span and are not mathematics ("18 🙂")
_TRAILING_SYMBOLS = re.compile(r"(?:\s*[^\x00-\x7f−–×÷·⋅π∞≤≥√°%])+$")
# unit words / \text{} units at the end of an expression ("3\sqrt{13} cm", "5\sqrt{2}\text{ m}^2")
_TRAILING_UNITS = re.compile(
    r"(?<=[\w})\]])(?:\s+(?!pi\b)[A-Za-z]{2,}|\s*\\(?:text|mbox|mathrm)\s*\{[^{}]*\}(?:\^\d|\^\{\d\})?)+\s*$")


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


def _last_side(s: str) -> str:
    """The last side of an equation chain "a = b = c" ('=' outside brackets; not <=, >=, !=),
    or s itself when it has no such '=' or the last side is empty."""
    depth, cut = 0, None
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif ch == "=" and depth == 0 and s[i - 1 : i] not in ("<", ">", "!", "=") and s[i + 1 : i + 2] != "=":
            cut = i
    if cut is None or not s[cut + 1 :].strip():
        return s
    return _WRAPPERS.sub("", s[cut + 1 :])


def _first_prose_word(s: str) -> int | None:
    """Index of the first prose word in s (LaTeX commands and \\text{...} do not count)."""
    masked = _LATEX_CMD.sub(lambda m: "#" * len(m.group()), _LATEX_TEXT.sub(lambda m: "#" * len(m.group()), s))
    for m in _PROSE_WORD.finditer(masked):
        if m.group(1).lower() not in _MATH_WORDS:
            return m.start(1)
    return None


def _sqrt_parens(s: str) -> str:
    """sqrt(x) / \\sqrt(x) -> \\sqrt{x} (math-verify reads '3\\sqrt(13)' as 3)."""
    out, i = [], 0
    for m in re.finditer(r"(?<![A-Za-z])\\?sqrt\s*\(", s):
        if m.start() < i:
            continue
        depth, j = 1, m.end()
        while j < len(s) and depth:
            depth += {"(": 1, ")": -1}.get(s[j], 0)
            j += 1
        if depth:
            break
        out.append(s[i : m.start()] + "\\sqrt{" + _sqrt_parens(s[m.end() : j - 1]) + "}")
        i = j
    return "".join(out) + s[i:]


def _as_latex(expr: str) -> str:
    """A final expression as LaTeX for math-verify: unicode operators, plain-text sqrt( and pi,
    ** powers; currency signs and stray math delimiters dropped."""
    e = expr.replace("\\$", "").replace("$", "")
    if not re.search(r"[(\[{]", e):  # thousands commas, unless the commas may separate elements
        e = re.sub(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])", lambda m: m.group().replace(",", ""), e)
    for a, b in (("−", "-"), ("–", "-"), ("×", "\\times "), ("÷", "\\div "), ("·", "\\cdot "), ("⋅", "\\cdot "),
                 ("π", "\\pi "), ("∞", "\\infty "), ("≤", "\\le "), ("≥", "\\ge "), ("**", "^")):
        e = e.replace(a, b)
    e = re.sub(r"√\s*(\d+(?:\.\d+)?|[A-Za-z])", r"\\sqrt{\1}", e).replace("√", "\\sqrt")
    e = re.sub(r"(?<![\\A-Za-z])pi(?![A-Za-z])", r"\\pi ", e)
    e = re.sub(r"(?<=\d)\s+x\s+(?=\d)", r" \\times ", e)  # "6 x 3"
    e = re.sub(r"(?<!\\)%", r"\\%", e)
    return _sqrt_parens(e).strip()


def _final_answer(s: str) -> str | None:
    """The answer in a final-expression span that is already cut to one sentence / formula."""
    s = _THOUSANDS_SPACE.sub("", s)  # 18\,000, 18{,}000 -> 18000
    s = _LATEX_SPACE.sub(" ", _WRAPPERS.sub("", s)).strip()
    p = _first_prose_word(s)
    if p is not None:
        head = s[:p].rstrip(" \t,;:(—–-")
        if not head.strip():  # prose first: "that she has 18 apples", "she earns 18 - 2 = 16 dollars"
            side = _last_side(s)
            if side != s:  # strictly shorter: the recursion ends
                return _final_answer(side)
            nums = list(_ANY_NUMBER.finditer(s))
            if len(nums) == 1:
                m = nums[0]
                return _clean_number(m.group("sign"), m.group("num"), m.group("den"))
            return None  # several numbers without "=" are ambiguous
        s = head
    s = _last_side(s).strip().strip("$*`").strip().rstrip(".,;:").strip().strip("$*`").strip()
    s = _TRAILING_SYMBOLS.sub("", s)
    if not s:
        return None
    bracketed = s[1:-1] if s[:1] + s[-1:] in ("()", "[]") and "," not in s else ""  # "(18)", not "(1,200)"
    m = _PLAIN.match(s) or _PLAIN.match(bracketed)
    if m:
        return _clean_number(m.group("s1") or m.group("s2"), m.group("num"), m.group("den"))
    s = _TRAILING_UNITS.sub("", s).strip() or s
    return _as_latex(s) or None


def answer_from_span(span: Any) -> str | None:
    """The final answer in the text after an answer marker: a plain number ("1000", "-3/4",
    "5.0"), or the whole final expression as LaTeX for math-verify ("1+9", "3\\sqrt{13}"); None
    when nothing usable is there. See the module docstring."""
    if span is None:
        return None
    s = _CALCULATOR.sub("", str(span)).strip()
    if not s:
        return None
    whole = False  # s is exactly one formula (a \boxed{} body or a closed $...$)
    if "\\boxed" in s or "\\fbox" in s:
        b = last_boxed(s)
        if b:
            s, whole = b, True
    s = s.split("\n", 1)[0]
    if not whole:
        lead = _WRAPPERS.match(s)
        s = s[lead.end():] if lead else s
        if lead and _OPENER.search(lead.group()):
            close = _CLOSER.search(s)
            if close:
                s, whole = s[: close.start()], True
        if not whole:
            s = _SENTENCE_END.split(s, maxsplit=1)[0]
    return _final_answer(s)


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
            ans = answer_from_span(f"\\boxed{{{b}}}") if b is not None else None
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


def _timeout() -> int | None:
    # math-verify times out with signal.alarm, which only works in the main thread
    return 5 if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=1)
def _latex_config():
    """math-verify's LaTeX extraction with its default normalisation except units: math-verify
    strips a trailing unit-like word or letter ("-12+5t" -> -12+5, "5d" -> 5), which would drop a
    term; units after a number are handled here, before math-verify sees the answer."""
    from math_verify import LatexExtractionConfig, LatexNormalizationConfig

    return LatexExtractionConfig(normalization_config=LatexNormalizationConfig(
        basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False))


def _mv_parse(s: str) -> list:
    """math-verify's parse of an answer as one LaTeX formula: [sympy object, string], [string]
    when the LaTeX parser fails, [] when nothing is there. LaTeX extraction only: math-verify's
    plain-expression fallback picks a number out of what it cannot parse ("(1,2,3)+1" -> 3)."""
    from math_verify import parse

    s = s.strip()
    if not (s.startswith("$") and s.endswith("$") and len(s) > 1):
        s = f"${s}$"
    return parse(s, extraction_config=[_latex_config()], parsing_timeout=_timeout())


def _mv_verify(gold_parsed, pred_parsed) -> bool:
    from math_verify import verify

    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=_timeout()))


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
