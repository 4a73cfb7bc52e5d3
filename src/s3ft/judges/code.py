"""Code judge (MBPP style): extract the program from the reply, run it with the example's test
asserts in a sandbox (see `s3ft.judges.sandbox`), correct only if every assert passes.

Running model-written code is opt-in, as in lm-evaluation-harness and
bigcode-evaluation-harness: `make_code_judge(allow_code_execution=True)`, i.e.
`--allow-code-execution` on the command line or `allow_code_execution: true` in a recipe."""
from __future__ import annotations

import re
from typing import Any, Sequence

from s3ft.judges.sandbox import RunResult, Sandbox
from s3ft.types import Example, Verdict

_BEGIN_DONE = re.compile(r"\[BEGIN\](.*?)(?:\[DONE\]|$)", re.S)
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\r?\n(.*?)(?:```|$)", re.S | re.I)
_FENCE_LANG = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)")

CODE_EXECUTION_OPT_IN = (
    "the code judge runs model-written programs on this machine; this is opt-in: pass "
    "--allow-code-execution on the command line or set `allow_code_execution: true` in the "
    "recipe (programs run in a sandbox: separate process, resource limits, bubblewrap namespaces "
    "when available)"
)


def extract_code(response: Any) -> str:
    """The program in a reply: the text between [BEGIN] and [DONE] (or to the end when the
    generation stopped at [DONE]), else the ```python fenced block(s) joined, else the whole
    reply. Code fences inside a [BEGIN] block are removed. Returns "" when there is nothing."""
    text = response if isinstance(response, str) else ("" if response is None else str(response))
    text = text.replace("\r\n", "\n")
    m = _BEGIN_DONE.search(text)
    if m and m.group(1).strip():
        inner = m.group(1)
        fenced = _fenced_blocks(inner)
        return (fenced if fenced is not None else inner).strip("\n").rstrip()
    fenced = _fenced_blocks(text)
    if fenced is not None:
        return fenced.strip("\n").rstrip()
    if m:  # an empty [BEGIN] [DONE] block and no fenced code
        return ""
    return text.strip("\n").rstrip() if text.strip() else ""


def _fenced_blocks(text: str) -> str | None:
    blocks = []
    for m in _FENCE.finditer(text):
        lang = _FENCE_LANG.match(text, m.start()).group(1).lower()
        if lang in ("", "python", "python3", "py"):
            blocks.append(m.group(1))
    blocks = [b for b in blocks if b.strip()]
    return "\n\n".join(b.rstrip() for b in blocks) if blocks else None


def example_tests(example: Example, include_challenge: bool = False) -> tuple[list[str], str]:
    """(asserts, setup code) for an example: meta["test_list"] (+ meta["challenge_test_list"]
    when asked) and meta["test_setup_code"]; user data without them falls back to meta["tests"]
    or to the `assert` lines of the prompt."""
    meta = example.meta or {}
    tests = meta.get("test_list")
    if tests is None:
        tests = meta.get("tests")
    if isinstance(tests, str):
        tests = [t for t in tests.splitlines() if t.strip()]
    tests = [str(t).replace("\r\n", "\n") for t in (tests or [])]
    if include_challenge:
        tests += [str(t).replace("\r\n", "\n") for t in (meta.get("challenge_test_list") or [])]
    if not tests:
        text = "\n".join(m.get("content", "") for m in (example.prompt or []) if isinstance(m, dict))
        tests = [line.strip() for line in text.splitlines() if line.strip().startswith("assert ")]
    setup = str(meta.get("test_setup_code") or "").replace("\r\n", "\n")
    return tests, setup


def make_code_judge(
    allow_code_execution: bool = False,
    workers: int = 0,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    file_size_mb: int = 64,
    nproc: int = 64,
    isolation: str = "auto",
    guard: bool = True,
    include_challenge_tests: bool = False,
    python: str | None = None,
):
    """Build the batch code judge `judge(examples, responses) -> list[Verdict]`.

    Raises ValueError unless allow_code_execution is True. workers: programs run in parallel
    (0 = os.cpu_count()); timeout: wall-clock seconds per program (the CPU limit is one second more);
    memory_mb / file_size_mb / nproc: resource limits; isolation: auto | bwrap | none (see
    `Sandbox`); guard: audit-hook guard; include_challenge_tests: also run MBPP's
    challenge_test_list."""
    if not allow_code_execution:
        raise ValueError(CODE_EXECUTION_OPT_IN)
    sandbox = Sandbox(timeout=timeout, memory_mb=memory_mb, file_size_mb=file_size_mb, nproc=nproc,
                      isolation=isolation, guard=guard, python=python)

    def judge(examples: Sequence[Example], responses: Sequence[str]) -> list[Verdict]:
        if len(examples) != len(responses):
            raise ValueError(f"{len(examples)} examples but {len(responses)} responses")
        verdicts: list[Verdict | None] = [None] * len(examples)
        jobs, where = [], []
        for i, (ex, resp) in enumerate(zip(examples, responses)):
            try:
                code = extract_code(resp)
                if not code.strip():
                    verdicts[i] = Verdict(False, "no code found", None)
                    continue
                tests, setup = example_tests(ex, include_challenge_tests)
                if not tests:
                    verdicts[i] = Verdict(None, "no tests for this example", code)
                    continue
            except Exception as e:  # never raise on a model's output
                verdicts[i] = Verdict(None, f"judge error: {type(e).__name__}: {e}")
                continue
            jobs.append((code, tests, setup))
            where.append(i)
        for i, (job, res) in zip(where, zip(jobs, sandbox.run_many(jobs, workers))):
            verdicts[i] = _verdict(res, job[0])
        return verdicts  # type: ignore[return-value]

    judge.sandbox = sandbox  # type: ignore[attr-defined]
    return judge


def _verdict(res: RunResult, code: str) -> Verdict:
    if res.ok:
        return Verdict(True, res.reason, code)
    if res.status in ("bad_test", "sandbox_error"):  # broken tests or sandbox: not the model's fault
        return Verdict(None, res.reason, code)
    return Verdict(False, res.reason, code)
