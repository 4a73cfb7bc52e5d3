"""Code-judge throughput on the MBPP reference solutions.

Compares `s3ft.judges.code.make_code_judge` (a fresh sandboxed interpreter per program, run in
parallel) with a checker in the style of human-eval's `check_correctness`: one
`multiprocessing.Process` per program (fork), `exec` of program + setup + asserts, a timeout,
programs one after another. Two variants of the baseline: exactly like human-eval (a
`multiprocessing.Manager().list()` per program to return the result) and a lean one (a Pipe).
Checks that all methods give the same verdicts.

    python bench/judge_throughput.py                  # 974 reference solutions
    python bench/judge_throughput.py --mutants        # + 974 "return None" mutants (must fail)
    python bench/judge_throughput.py --limit 100 --workers 1
    python bench/judge_throughput.py --parent-rss-mb 4096 --skip-manager   # judging process holds 4 GB
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import gzip
import io
import json
import multiprocessing
import os
import platform
import signal
import sys
import tempfile
import time
import warnings

from pathlib import Path

import s3ft
from s3ft.judges.code import make_code_judge
from s3ft.types import Example

MBPP = Path(s3ft.__file__).parent / "data" / "mbpp" / "mbpp.jsonl.gz"  # the bundled copy


def load(limit: int | None):
    with gzip.open(MBPP, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return rows[:limit] if limit else rows


def lf(s: str) -> str:
    return s.replace("\r\n", "\n")


def return_none(code: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(tree)


# -- human-eval style baseline ----------------------------------------------------------------
class TimeoutException(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    def handler(signum, frame):
        raise TimeoutException("timed out")

    signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.signal(signal.SIGALRM, handler)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def unsafe_execute(check_program: str, timeout: float, result) -> None:
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)
        try:
            exec_globals: dict = {}
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                with time_limit(timeout):
                    exec(check_program, exec_globals)
            outcome = "passed"
        except TimeoutException:
            outcome = "timed out"
        except BaseException as e:  # noqa: BLE001 - as in human-eval
            outcome = f"failed: {e}"
        if hasattr(result, "append"):
            result.append(outcome)
        else:
            result.send(outcome)


def check_correctness_manager(check_program: str, timeout: float) -> bool:
    """As human-eval: a Manager list per program."""
    manager = multiprocessing.Manager()
    result = manager.list()
    p = multiprocessing.Process(target=unsafe_execute, args=(check_program, timeout, result))
    p.start()
    p.join(timeout=timeout + 1)
    if p.is_alive():
        p.kill()
    ok = len(result) > 0 and result[0] == "passed"
    manager.shutdown()
    return ok


def check_correctness_pipe(check_program: str, timeout: float) -> bool:
    recv, send = multiprocessing.Pipe(duplex=False)
    p = multiprocessing.Process(target=unsafe_execute, args=(check_program, timeout, send))
    p.start()
    p.join(timeout=timeout + 1)
    if p.is_alive():
        p.kill()
    return recv.poll() and recv.recv() == "passed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--workers", type=int, default=0, help="make_code_judge workers (0 = cpu count)")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--isolation", default="auto", choices=["auto", "bwrap", "none"])
    ap.add_argument("--mutants", action="store_true", help="also judge 'return None' mutants")
    ap.add_argument("--skip-manager", action="store_true", help="skip the (slow) Manager baseline")
    ap.add_argument("--parent-rss-mb", type=int, default=0,
                    help="hold this much touched memory in the judging process first (as a process that "
                         "holds a model does): fork-based checkers copy its page tables per program")
    args = ap.parse_args()
    ballast = bytearray(args.parent_rss_mb << 20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1

    rows = load(args.limit)
    programs = [lf(r["code"]) for r in rows]
    expected = [True] * len(rows)
    if args.mutants:
        rows = rows + rows
        programs = programs + [return_none(p) for p in programs]
        expected = expected + [False] * (len(expected))
    examples = [
        Example(str(r["task_id"]), [], "", {"test_list": [lf(t) for t in r["test_list"]], "test_setup_code": lf(r["test_setup_code"])})
        for r in rows
    ]
    responses = ["[BEGIN]\n" + p + "\n[DONE]" for p in programs]
    check_programs = [
        p + "\n" + ex.meta["test_setup_code"] + "\n" + "\n".join(ex.meta["test_list"]) + "\n" for p, ex in zip(programs, examples)
    ]

    results = {}
    judge = make_code_judge(allow_code_execution=True, workers=args.workers, timeout=args.timeout,
                            isolation=args.isolation)
    t = time.perf_counter()
    verdicts = [v.correct is True for v in judge(examples, responses)]
    results[f"s3ft make_code_judge ({judge.sandbox.isolation}, workers={args.workers or os.cpu_count()})"] = (time.perf_counter() - t, verdicts)

    t = time.perf_counter()
    verdicts = [check_correctness_pipe(cp, args.timeout) for cp in check_programs]
    results["human-eval style, Process + Pipe, sequential"] = (time.perf_counter() - t, verdicts)

    if not args.skip_manager:
        t = time.perf_counter()
        verdicts = [check_correctness_manager(cp, args.timeout) for cp in check_programs]
        results["human-eval check_correctness (Process + Manager), sequential"] = (time.perf_counter() - t, verdicts)

    n = len(programs)
    print(f"# judge throughput, {n} programs ({'reference + return-None mutants' if args.mutants else 'MBPP reference solutions'})")
    print(f"date {datetime.datetime.now().isoformat(timespec='seconds')}, {platform.platform()}, "
          f"python {platform.python_version()}, cpu_count {os.cpu_count()}, loadavg(1 min) at the end {os.getloadavg()[0]:.2f}, "
          f"parent ballast {args.parent_rss_mb} MB")
    print()
    print("| method | seconds | programs/s | verdicts = expected |")
    print("|---|---|---|---|")
    base = None
    for name, (secs, verdicts) in results.items():
        agree = sum(v == e for v, e in zip(verdicts, expected))
        print(f"| {name} | {secs:.1f} | {n / secs:.1f} | {agree}/{n} |")
        base = base or secs
    names = list(results)
    for other in names[1:]:
        print(f"\nspeed ratio s3ft / {other.split(',')[0]}: {results[other][0] / results[names[0]][0]:.2f}x")
    same = all(results[k][1] == results[names[0]][1] for k in names)
    print(f"all methods give the same verdicts: {same}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
