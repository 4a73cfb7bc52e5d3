"""Math judge probe: is the WHOLE final expression compared, or a number taken out of it?

Competition-math golds are LaTeX expressions. The probe builds 200 of them programmatically
(integers, decimals, fractions, sqrt and pi multiples, sums with radicals, powers, complex
numbers, polynomials, intervals, tuples, sets) and judges, for each gold G:
  accepted  - G itself, boxed ("Therefore $\\boxed{G}$.") and stated ("The answer is $G$.")
  rejected  - three mutations, each boxed and stated: "+1" appended (G+1), a changed
              coefficient (one number of G + 1), a dropped term / factor / element ("3\\sqrt{13}"
              -> "3", "x^2+2x+1" -> "x^2+2x", "(1, 2, 3)" -> "(1, 2)"; none for a bare number).
Then the bundled GSM8K test golds (the number after '####', as the gsm8k task builds them): the
gold accepted ("The answer is N.", "The answer is $N$.", "#### N", "\\boxed{N}", N with its
thousands commas, and the reference solution itself), N+1 rejected, and "N+1" appended
rejected (stated and boxed).

Both the judge in the working tree and the old one (src/s3ft/judges/math.py at --old-ref, or the
file --old) are run; results go to bench/results/math_judge_probe.{json,md}. CPU only, ~1 min.

    python bench/math_judge_probe.py [--old /tmp/old_math.py | --old-ref REF] [--n 200]
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from s3ft.types import Example

OLD_REF = "8ac2225"  # the last commit with the number-first math judge


# ---------------------------------------------------------------------------------------------
# expression golds: (kind, gold, changed-coefficient mutation, dropped-part mutation or None)

def _sqfree(rng: random.Random) -> int:
    return rng.choice([2, 3, 5, 6, 7, 10, 11, 13, 14, 15, 17, 19, 21, 22, 23, 26, 29, 30])


def _frac(a: int, b: int, d: str = "\\frac") -> str:
    return f"{d}{{{a}}}{{{b}}}"


def _coprime(rng: random.Random, lo: int, hi: int) -> tuple[int, int]:
    while True:
        a, b = rng.randint(lo, hi), rng.randint(2, hi)
        if math.gcd(a, b) == 1 and a % b:
            return a, b


def _signed(c: int, first: bool = False) -> str:
    if first:
        return str(c)
    return f"+{c}" if c >= 0 else f"-{-c}"


def _gen_integer(rng):
    n = rng.choice([rng.randint(-60, -1), rng.randint(0, 99), rng.randint(100, 99999)])
    return "integer", str(n), str(n + 1), None, f"{n}.0"


def _gen_decimal(rng):
    n = rng.randint(1, 999) + rng.choice([0.25, 0.5, 0.75, 0.125, 0.2, 0.05])
    s = f"{n:g}"
    q = 1000
    frac = _frac(round(n * q) // math.gcd(round(n * q), q), q // math.gcd(round(n * q), q))
    return "decimal", s, f"{n + 1:g}", None, frac


def _gen_fraction(rng):
    a, b = _coprime(rng, 1, 40)
    d = rng.choice(["\\frac", "\\frac", "\\dfrac"])
    sign = rng.choice(["", "", "-"])
    gold = sign + _frac(a, b, d)
    return "fraction", gold, sign + _frac(a + 1, b, d), sign + str(a), f"{sign}{a}/{b}"  # dropped: the denominator


def _gen_sqrt(rng):
    a, b = rng.randint(2, 12), _sqfree(rng)
    return "sqrt multiple", f"{a}\\sqrt{{{b}}}", f"{a + 1}\\sqrt{{{b}}}", str(a), f"\\sqrt{{{a * a * b}}}"  # dropped: the radical


def _gen_frac_sqrt(rng):
    a, c = _coprime(rng, 1, 9)
    b = _sqfree(rng)
    num = f"{a}\\sqrt{{{b}}}" if a > 1 else f"\\sqrt{{{b}}}"
    num2 = f"{a + 1}\\sqrt{{{b}}}"
    equiv = _frac(a, c, "\\dfrac") + f"\\sqrt{{{b}}}"
    return "sqrt fraction", _frac_s(num, c), _frac_s(num2, c), _frac(a, c), equiv  # dropped: the radical


def _frac_s(num: str, den: int) -> str:
    return f"\\frac{{{num}}}{{{den}}}"


def _gen_pi(rng):
    if rng.random() < 0.5:
        a = rng.randint(2, 60)
        return "pi multiple", f"{a}\\pi", f"{a + 1}\\pi", str(a), f"\\pi \\cdot {a}"
    a, b = _coprime(rng, 1, 12)
    na = f"{a}\\pi" if a > 1 else "\\pi"
    return "pi fraction", _frac_s(na, b), _frac_s(f"{a + 1}\\pi", b), _frac(a, b), f"{_frac(a, b)}\\pi"


def _gen_radical_sum(rng):
    a, b, c = rng.randint(1, 20), rng.randint(2, 9), _sqfree(rng)
    op = rng.choice(["+", "-"])
    gold = f"{a}{op}{b}\\sqrt{{{c}}}"
    equiv = f"{'' if op == '+' else '-'}{b}\\sqrt{{{c}}} + {a}"
    return "radical sum", gold, f"{a + 1}{op}{b}\\sqrt{{{c}}}", str(a), equiv  # dropped: the radical term


def _gen_power(rng):
    a, b = rng.randint(2, 9), rng.randint(3, 12)
    return "power", f"{a}^{{{b}}}", f"{a + 1}^{{{b}}}", str(a), str(a**b)  # dropped: the exponent


def _gen_complex(rng):
    a, b = rng.randint(1, 15), rng.randint(2, 15)
    op = rng.choice(["+", "-"])
    return "complex", f"{a}{op}{b}i", f"{a + 1}{op}{b}i", str(a), f"{'' if op == '+' else '-'}{b}i + {a}"


def _gen_polynomial(rng):
    v = rng.choice(["x", "x", "t", "n"])
    deg = rng.choice([1, 2, 2, 3])
    coefs = [rng.randint(2, 9)] + [rng.choice([-1, 1]) * rng.randint(1, 12) for _ in range(deg)]

    def render(cs):
        out = []
        for i, c in enumerate(cs):
            p = deg - i
            term = (f"{v}^{{{p}}}" if p > 1 else v) if p else ""
            out.append(_signed(c, i == 0) + term)
        return "".join(out)

    gold = render(coefs)
    equiv = f"{coefs[-1]} + " + render(coefs[:-1]).replace("+", " + ").replace("-", " - ")
    return "polynomial", gold, render([coefs[0] + 1] + coefs[1:]), render(coefs[:-1]), equiv


def _gen_linear2(rng):
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    op = rng.choice(["+", "-"])
    return "two variables", f"{a}x{op}{b}y", f"{a + 1}x{op}{b}y", f"{a}x", f"{'' if op == '+' else '-'}{b}y + {a}x"


def _gen_interval(rng):
    a = rng.randint(-20, 10)
    b = a + rng.randint(1, 15)
    form = rng.choice(["[]", "[)", "(]", "inf-", "inf+"])
    if form == "inf-":
        return "interval", f"(-\\infty, {a}]", f"(-\\infty, {a + 1}]", None, f"\\left(-\\infty,{a}\\right]"
    if form == "inf+":
        return "interval", f"[{a}, \\infty)", f"[{a + 1}, \\infty)", None, f"\\left[{a},\\infty\\right)"
    lo, hi = form
    return "interval", f"{lo}{a}, {b}{hi}", f"{lo}{a + 1}, {b + 1}{hi}", None, f"\\left{lo}{a},{b}\\right{hi}"


def _gen_tuple(rng):
    k = rng.choice([2, 3, 3])
    xs = [rng.randint(-9, 20) for _ in range(k)]
    if k == 2 and xs[0] < xs[1]:
        xs.reverse()  # (a, b) with a < b is read as an open interval; keep tuples unambiguous
    if k == 2 and xs[0] == xs[1]:
        xs[0] += 1
    def tup(ys):
        return "(" + ", ".join(map(str, ys)) + ")"

    coef = xs.copy()
    coef[-1] += 1
    equiv = "\\left(" + ",".join(map(str, xs)) + "\\right)"
    return "tuple", tup(xs), tup(coef), (tup(xs[:-1]) if k > 2 else str(xs[0])), equiv


def _gen_set(rng):
    xs = sorted(rng.sample(range(-10, 30), rng.choice([2, 3])))
    def s(ys):
        return "\\{" + ", ".join(map(str, ys)) + "\\}"

    coef = xs.copy()
    coef[-1] += 1
    while coef[-1] in xs[:-1]:
        coef[-1] += 1
    return "set", s(xs), s(coef), s(xs[:-1]), s(xs[::-1])


GENERATORS = [_gen_integer, _gen_decimal, _gen_fraction, _gen_sqrt, _gen_frac_sqrt, _gen_pi, _gen_radical_sum,
              _gen_power, _gen_complex, _gen_polynomial, _gen_linear2, _gen_interval, _gen_tuple, _gen_set]


def expression_golds(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out, seen = [], set()
    i = 0
    while len(out) < n:
        kind, gold, coef, drop, equiv = GENERATORS[i % len(GENERATORS)](rng)
        i += 1
        if gold in seen:
            continue
        seen.add(gold)
        out.append({"kind": kind, "gold": gold, "equivalent": equiv, "coef": coef, "drop": drop})
    return out


# ---------------------------------------------------------------------------------------------

def boxed(expr: str) -> str:
    return f"We simplify step by step. Therefore $\\boxed{{{expr}}}$."


def stated(expr: str) -> str:
    return f"We simplify step by step.\nThe answer is ${expr}$."


def load_judge(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_one(judge_math, example, response):
    try:
        v = judge_math(example, response)
        return v.correct, v.reason, v.extracted
    except Exception as e:  # noqa: BLE001 - reported, never expected
        return "exception", f"{type(e).__name__}: {e}", None


def probe_expressions(mod, golds, expect_parse) -> dict:
    checks = {"gold boxed": True, "gold stated": True, "equivalent boxed": True, "equivalent stated": True,
              "+1 boxed": False, "+1 stated": False,
              "coefficient boxed": False, "coefficient stated": False, "dropped boxed": False,
              "dropped stated": False}
    res = {c: {"ok": 0, "n": 0, "accepted": 0} for c in checks}
    by_kind: dict = {}
    failures, exceptions, undecided = [], [], []
    self_accepted = plus1_accepted = 0  # stated forms: golds the judge accepts itself, and their "+1"
    for g in golds:
        ex = Example("probe", [], "", {"answer": g["gold"]})
        verdicts = {}
        variants = {"gold": g["gold"], "equivalent": g["equivalent"], "+1": g["gold"] + "+1", "coefficient": g["coef"], "dropped": g["drop"]}
        for vname, expr in variants.items():
            if expr is None:
                continue
            for form, render in (("boxed", boxed), ("stated", stated)):
                check = f"{vname} {form}"
                correct, reason, extracted = run_one(mod.judge_math, ex, render(expr))
                ok = correct is checks[check]
                res[check]["n"] += 1
                res[check]["ok"] += ok
                res[check]["accepted"] += correct is True
                verdicts[check] = correct
                k = by_kind.setdefault(g["kind"], {"golds": 0, "checks": 0, "ok": 0, "plus1_rejected": 0, "plus1": 0})
                k["checks"] += 1
                k["ok"] += ok
                if vname == "+1":
                    k["plus1"] += 1
                    k["plus1_rejected"] += correct is False
                row = {"gold": g["gold"], "check": check, "response_expr": expr, "verdict": correct,
                       "reason": reason, "extracted": extracted}
                if correct == "exception":
                    exceptions.append(row)
                elif correct is None:
                    undecided.append(row)
                if not ok:
                    failures.append(row)
        by_kind[g["kind"]]["golds"] += 1
        if verdicts["gold stated"] is True:
            self_accepted += 1
            plus1_accepted += verdicts["+1 stated"] is True
    plus1_parseable = [g for g in golds if expect_parse[g["gold"]]]
    plus1_missed = [f for f in failures if f["check"].startswith("+1") and expect_parse[f["gold"]]]
    return {"checks": res, "by_kind": by_kind, "failures": failures, "exceptions": exceptions,
            "undecided": undecided, "golds_math_verify_parses": len(plus1_parseable),
            "plus1_not_rejected_where_gold_parses": len(plus1_missed),
            "golds_accepted_stated": self_accepted, "plus1_stated_accepted_of_those": plus1_accepted}


def probe_gsm8k(mod, examples) -> dict:
    checks = {"N": True, "$N$": True, "#### N": True, "\\boxed{N}": True, "N with commas": True,
              "reference solution": True, "N+1 (number)": False, "N+1 appended": False,
              "\\boxed{N+1}": False}
    res = {c: {"ok": 0, "n": 0} for c in checks}
    failures, exceptions = [], []
    for ex in examples:
        n = ex.meta["answer"]
        commas = f"{int(n):,}" if n.lstrip("-").isdigit() else n
        responses = {
            "N": f"The answer is {n}.", "$N$": f"The answer is ${n}$.", "#### N": f"#### {n}",
            "\\boxed{N}": f"So the total is $\\boxed{{{n}}}$.", "N with commas": f"The answer is {commas}.",
            "reference solution": ex.gold, "N+1 (number)": f"The answer is {int(n) + 1}.",
            "N+1 appended": f"The answer is {n}+1.", "\\boxed{N+1}": f"So the total is $\\boxed{{{n}+1}}$.",
        }
        for check, response in responses.items():
            correct, reason, _ = run_one(mod.judge_math, ex, response)
            ok = correct is checks[check]
            res[check]["n"] += 1
            res[check]["ok"] += ok
            row = {"id": ex.id, "gold": n, "check": check, "verdict": correct, "reason": reason}
            if correct == "exception":
                exceptions.append(row)
            if not ok:
                failures.append(row)
    return {"checks": res, "failures": failures, "exceptions": exceptions}


def mv_parses(gold: str) -> bool:
    """Does math-verify (its own default LaTeX extraction) parse the gold to a sympy object?"""
    from math_verify import LatexExtractionConfig, parse

    try:
        return any(not isinstance(x, str) for x in parse(f"${gold}$", extraction_config=[LatexExtractionConfig()]))
    except Exception:  # noqa: BLE001 - a parse failure is the answer "no"
        return False


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"math-verify {version('math-verify')}, sympy {version('sympy')}")


def pct(d: dict) -> str:
    return f"{d['ok']}/{d['n']} ({100 * d['ok'] / d['n']:.1f}%)" if d["n"] else "-"


def write_markdown(path: Path, out: dict) -> None:
    L = ["# Math judge probe: whole-expression comparison", "",
         f"- date: {out['date']}", f"- machine: {out['machine']}", f"- command: `{out['command']}`",
         f"- old judge: `src/s3ft/judges/math.py` at {out['old']}; new judge: the working tree's",
         f"- {out['n_expr']} programmatic LaTeX golds (seed {out['seed']}), {out['n_gsm8k']} GSM8K test golds",
         (f"- math-verify parses {out['new']['expressions']['golds_math_verify_parses']} of the "
          f"{out['n_expr']} expression golds (to a sympy object, its default LaTeX extraction)"), "",
         ("A check passes when the verdict is the expected one (True for the gold and its "
          "equivalent form, False for a mutation); a verdict of None (cannot decide) or an exception "
          "fails it. Responses are templated (\"We simplify step by step. Therefore $\\boxed{E}$.\" / "
          "\"...\\nThe answer is $E$.\"); the equivalent form is another way to write the gold "
          "(49.0, \\frac{171}{4} for 42.75, 26/21, \\sqrt{99} for 3\\sqrt{11}, reordered sums, sets "
          "and \\left( \\right) brackets)."), "",
         "## Expression golds", "", "| check | expected | old judge | new judge |", "|---|---|---|---|"]
    for c, d in out["new"]["expressions"]["checks"].items():
        exp = "accepted" if c.startswith(("gold", "equivalent")) else "rejected"
        L.append(f"| {c} | {exp} | {pct(out['old_results']['expressions']['checks'][c])} | {pct(d)} |")
    L += ["", "By kind (all checks of that kind; '+1 rejected' counts boxed and stated):", "",
          "| kind | golds | old: checks passed | old: +1 rejected | new: checks passed | new: +1 rejected |",
          "|---|---|---|---|---|---|"]
    for kind, d in out["new"]["expressions"]["by_kind"].items():
        o = out["old_results"]["expressions"]["by_kind"][kind]
        L.append(f"| {kind} | {d['golds']} | {o['ok']}/{o['checks']} | {o['plus1_rejected']}/{o['plus1']} | "
                 f"{d['ok']}/{d['checks']} | {d['plus1_rejected']}/{d['plus1']} |")
    L += ["", "## GSM8K test golds", "", "| check | expected | old judge | new judge |", "|---|---|---|---|"]
    for c, d in out["new"]["gsm8k"]["checks"].items():
        exp = "rejected" if "+1" in c else "accepted"
        L.append(f"| {c} | {exp} | {pct(out['old_results']['gsm8k']['checks'][c])} | {pct(d)} |")
    n = out["new"]
    L += ["", "## New judge: exceptions, undecided, failures", "",
          f"- exceptions: {len(n['expressions']['exceptions']) + len(n['gsm8k']['exceptions'])}",
          f"- undecided (None) on expression golds: {len(n['expressions']['undecided'])}",
          ("- '+1' not rejected (accepted or undecided) where math-verify parses the gold: "
           f"{n['expressions']['plus1_not_rejected_where_gold_parses']}"),
          f"- failed checks: expressions {len(n['expressions']['failures'])}, GSM8K {len(n['gsm8k']['failures'])}"]
    for f in (n["expressions"]["failures"] + n["gsm8k"]["failures"])[:30]:
        L.append(f"  - {json.dumps(f, ensure_ascii=False)}")
    L += ["", "## Old judge: failed checks, one per kind and check", ""]
    seen = set()
    kinds = {g["gold"]: g["kind"] for g in out["golds"]}
    for f in out["old_results"]["expressions"]["failures"]:
        key = (kinds[f["gold"]], f["check"].split()[0])
        if key in seen or not f["check"].endswith("stated"):
            continue
        seen.add(key)
        L.append(f"- {key[0]}, {f['check']}: gold `{f['gold']}`, response `The answer is ${f['response_expr']}$.` "
                 f"-> {f['verdict']} (extracted `{f['extracted']}`)")
    for f in out["old_results"]["gsm8k"]["failures"][:2]:
        L.append(f"- GSM8K {f['id']}, {f['check']}: gold {f['gold']} -> {f['verdict']} ({f['reason']})")
    o = out["old_results"]["expressions"]["checks"]
    accepted = sum(o[c]["accepted"] for c in ("+1 boxed", "+1 stated"))
    total = sum(o[c]["n"] for c in ("+1 boxed", "+1 stated"))
    own, own_plus1 = (out["old_results"]["expressions"][k] for k in ("golds_accepted_stated", "plus1_stated_accepted_of_those"))
    L += ["", "## Notes", "",
          (f"- The old judge accepted (verdict True) the \"+1\" mutation in {accepted}/{total} "
           f"({100 * accepted / total:.1f}%) of these responses (the rest: False or None); of the {own} golds "
           f"it accepts itself (stated), it accepted \"+1\" for {own_plus1} ({100 * own_plus1 / max(own, 1):.1f}%), "
           "close to the 389/500 (77.8%) measured on a user's competition-math task: it read the leading number of the span (\"11\\sqrt{11}+1\" "
           "-> 11, \"6^{4}\" -> 6), so it also accepted dropped terms and rejected reordered equivalents, "
           "and it could not decide most tuples, sets and intervals (no answer extracted from the gold: "
           "verdict None)."),
          ("- The new judge takes the whole final expression: a plain number is compared exactly (as "
           "before); an equation chain gives its last side; anything else is parsed whole by math-verify "
           "(LaTeX extraction only, math-verify's unit stripping off) and decided by verify(gold, pred)."),
          ("- The full lists (every gold, the new judge's failures, the old judge's first 40 failures per "
           "check) are in the JSON next to this file.")]
    path.write_text("\n".join(L) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", default=None, help="path of the old math.py (default: git show OLD_REF:src/s3ft/judges/math.py)")
    ap.add_argument("--old-ref", default=OLD_REF)
    ap.add_argument("--n", type=int, default=200, help="number of expression golds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench/results/math_judge_probe.json"))
    args = ap.parse_args()

    if args.old:
        old_path, old_desc = Path(args.old), f"file {args.old}"
    else:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{args.old_ref}:src/s3ft/judges/math.py"],
                             check=True, capture_output=True, text=True).stdout
        with tempfile.NamedTemporaryFile("w", suffix="_old_math.py", delete=False) as tmp:
            tmp.write(src)
        old_path, old_desc = Path(tmp.name), f"commit {args.old_ref}"
    old = load_judge(old_path, "old_math_judge")
    new = load_judge(ROOT / "src/s3ft/judges/math.py", "new_math_judge")

    golds = expression_golds(args.n, args.seed)
    parses = {g["gold"]: mv_parses(g["gold"]) for g in golds}
    from s3ft.tasks.gsm8k import load_split

    gsm = load_split("test")

    results = {}
    for name, mod in (("old", old), ("new", new)):
        t0 = time.perf_counter()
        results[name] = {"expressions": probe_expressions(mod, golds, parses), "gsm8k": probe_gsm8k(mod, gsm)}
        results[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(name, {k: pct(v) for k, v in results[name]["expressions"]["checks"].items()})
        print(name, {k: pct(v) for k, v in results[name]["gsm8k"]["checks"].items()}, results[name]["seconds"], "s")

    for part in ("expressions", "gsm8k"):  # the old judge's failures: the first 40 of each check
        fails, kept = results["old"][part]["failures"], {}
        results["old"][part]["failures"] = [f for f in fails if kept.setdefault(f["check"], []).append(1) or len(kept[f["check"]]) <= 40]
    out = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
           "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
           "old": old_desc, "seed": args.seed, "n_expr": len(golds), "n_gsm8k": len(gsm),
           "golds": golds, "new": results["new"], "old_results": results["old"]}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False, default=str) + "\n")
    write_markdown(path.with_suffix(".md"), out)
    print("wrote", path, path.with_suffix(".md"))


if __name__ == "__main__":
    main()
