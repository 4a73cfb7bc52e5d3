"""Your own judge: a Python function named in the recipe as `judge: FILE.py:FUNCTION` (a path,
relative to the working directory like `data_files`) or `judge: package.module:FUNCTION` (an
importable module).

The function is a per-example judge, like the built-in ones:

    def judge(example, response):      # example: s3ft.types.Example (id, prompt, gold, meta)
        return ...                     # True / False, None (cannot judge), a Verdict,
                                       # or a tuple (correct, reason[, extracted])

A function with the attribute `batched = True` is called once per batch instead, as
`judge(examples, responses)`, and returns a list with one such value per response (for a judge
that calls a reward model or a remote service).

`example.meta` holds every extra field of a JSONL row. Unlike the built-in judges, whose every
exception becomes "cannot judge", an exception or a return value of another type stops the
stage with the example's id: a judge that fails on every row would otherwise turn a whole run
into silent "cannot judge" verdicts (every target falls back to the gold). So does a call that
takes longer than `judge_timeout` seconds (a batched judge: one batch), and a judge that calls
`sys.exit()` - in a call or when its file is imported - which would otherwise end the run with
nothing done. The rows judged before it are kept; fix the judge and run again to resume.

The stages that judge (own answers, paraphrases, evaluation) fingerprint the code the judge
runs - the file as it was read when the run loaded it - so editing it re-judges in the next run;
a helper module it imports (the file's folder is on the import path, after installed packages) is not
covered (then `--force judge --force paraphrase --force eval`). A judge named by module path is
imported once per process."""
from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
import signal
import sys
import threading
import time
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Sequence

from s3ft.types import Example, Verdict

RETURNS = "True / False, None (cannot judge), a Verdict, or a tuple (correct, reason[, extracted])"


class JudgeError(ValueError):
    """A user-written judge cannot be loaded, or misbehaved on an example."""


def is_custom(name: str | None) -> bool:
    """A judge name that points at a function rather than a built-in judge."""
    return bool(name) and ":" in name


def _split(spec: str) -> tuple[str, str]:
    where, _, func = spec.rpartition(":")
    if not where or not func.isidentifier():
        raise JudgeError(f"judge {spec!r}: expected FILE.py:FUNCTION or package.module:FUNCTION")
    return where, func


class JudgeTimeout(BaseException):
    """Raised inside a judge call that ran past its time (a BaseException, so that the judge's own
    `except Exception` does not swallow it)."""


@contextmanager
def _deadline(seconds: float | None) -> Any:
    """Raise JudgeTimeout in the code run under it once `seconds` have passed (SIGALRM: the main
    thread on a Unix; elsewhere no deadline - `call_with_deadline` runs the call in a thread)."""
    if seconds is None:
        yield
        return
    armed = [True]

    def ring(signum, frame):
        if armed[0]:
            raise JudgeTimeout()

    old = signal.signal(signal.SIGALRM, ring)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)  # an alarm set by someone else: put back after
    start = time.monotonic()
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 0.001))


def call_with_deadline(fn: Callable[..., Any], args: tuple, seconds: float | None) -> Any:
    """fn(*args), raising JudgeTimeout when it has not returned after `seconds` (None: no limit).
    In the main thread of a Unix process an alarm interrupts the call itself; elsewhere the call
    runs in a daemon thread that is abandoned when it overruns."""
    if seconds is None or (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()):
        with _deadline(seconds):
            return fn(*args)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the caller below
            box["error"] = e

    worker = threading.Thread(target=target, daemon=True, name="s3ft-judge-call")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise JudgeTimeout()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _exit_text(e: SystemExit) -> str:
    return f"sys.exit({e.code!r})" if e.code is not None else "sys.exit()"


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


_MODULE_HASHES: dict[str, str] = {}  # module name -> hash of its source when first loaded here


def _load_module(spec: str, timeout: float | None = None) -> tuple[Any, str]:
    """(module, hash of the source it runs). A file is read once and that text is what runs and
    what is hashed; an edited file is a new module. A module named by import path is imported
    once per process (not reloaded); its source file is hashed when first loaded here. Importing
    may take `timeout` seconds, and must not exit the process."""
    where, _ = _split(spec)
    if _is_file(where):
        path = Path(where).expanduser()
        if not path.is_file():
            what = "is a folder" if path.is_dir() else f"file not found (resolved to {path.resolve()})"
            raise JudgeError(f"judge {spec!r}: {where}: {what}")
        resolved = path.resolve()
        source = resolved.read_bytes()
        digest = hashlib.sha256(source).hexdigest()
        name = "s3ft_user_judge_" + hashlib.sha256(f"{resolved}\0{digest}".encode()).hexdigest()[:16]
        if name in sys.modules:
            return sys.modules[name], digest
        if str(resolved.parent) not in sys.path:  # its helper modules import as in a script
            sys.path.append(str(resolved.parent))
        module = types.ModuleType(name)
        module.__file__ = str(resolved)
        sys.modules[name] = module  # dataclasses and pickling look a module up by name
        try:
            code = compile(source, str(resolved), "exec", dont_inherit=True)  # (not this file's __future__)
            call_with_deadline(exec, (code, module.__dict__), timeout)
        except (Exception, SystemExit, JudgeTimeout) as e:
            del sys.modules[name]
            if isinstance(e, SystemExit):
                raise JudgeError(f"judge {spec!r}: importing {where} called {_exit_text(e)}; a judge file must not "
                                 "exit the process (put script code under `if __name__ == \"__main__\":`)") from None
            if isinstance(e, JudgeTimeout):
                raise JudgeError(f"judge {spec!r}: importing {where} did not finish within {timeout:g} s "
                                 "(judge_timeout)") from None
            raise JudgeError(f"judge {spec!r}: importing {where} failed: {type(e).__name__}: {e}") from e
        return module, digest
    try:
        module = call_with_deadline(importlib.import_module, (where,), timeout)
    except SystemExit as e:
        raise JudgeError(f"judge {spec!r}: importing module {where!r} called {_exit_text(e)}; a judge module must "
                         "not exit the process") from None
    except JudgeTimeout:
        raise JudgeError(f"judge {spec!r}: importing module {where!r} did not finish within {timeout:g} s "
                         "(judge_timeout)") from None
    except Exception as e:
        raise JudgeError(f"judge {spec!r}: cannot import module {where!r} ({type(e).__name__}: {e}); "
                         "a module must be importable (installed, or on PYTHONPATH) - or give a file path, "
                         "e.g. judges/my_judge.py:FUNCTION") from e
    if module.__name__ not in _MODULE_HASHES:
        try:
            source = inspect.getsourcefile(module)
        except TypeError:
            source = None
        _MODULE_HASHES[module.__name__] = (hashlib.sha256(Path(source).read_bytes()).hexdigest()
                                           if source and Path(source).is_file()
                                           else f"module {module.__name__} {getattr(module, '__version__', '')}")
    return module, _MODULE_HASHES[module.__name__]


def load_function(spec: str, timeout: float | None = None) -> tuple[Callable[..., Any], str]:
    """(the judge function `spec` names, checked to be callable with (example, response); the hash
    of the source it comes from). Importing its file may take `timeout` seconds."""
    module, digest = _load_module(spec, timeout)
    where, func = _split(spec)
    fn = getattr(module, func, None)
    if fn is None:
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                 and getattr(v, "__module__", None) == module.__name__]
        close = difflib.get_close_matches(func, names, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else (f"; functions there: {', '.join(names)}" if names else "")
        raise JudgeError(f"judge {spec!r}: {where} has no function {func!r}{hint}")
    if not callable(fn):
        raise JudgeError(f"judge {spec!r}: {func} is a {type(fn).__name__}, not a function")
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        raise JudgeError(f"judge {spec!r}: {func}{inspect.signature(fn)} cannot be called as "
                         f"{func}(example, response)") from None
    except ValueError:  # builtins without a signature: let the first call tell
        pass
    return fn, digest


def _is_bool(value: Any) -> bool:
    return type(value).__name__ in ("bool", "bool_")  # Python or NumPy bool


def to_verdict(value: Any, spec: str, example: Example) -> Verdict:
    """Normalise what a user's judge returned into a Verdict."""
    if isinstance(value, Verdict):
        return value
    if value is None:
        return Verdict(None, "cannot judge")
    if _is_bool(value):
        return Verdict(bool(value), "")
    if isinstance(value, tuple) and 2 <= len(value) <= 3:
        correct, reason, *extracted = value
        if correct is None or _is_bool(correct):
            return Verdict(None if correct is None else bool(correct), str(reason),
                           None if not extracted or extracted[0] is None else str(extracted[0]))
    raise JudgeError(f"judge {spec!r} returned {value!r} ({type(value).__name__}) for example {example.id!r}; "
                     f"a judge returns {RETURNS}")


def make_custom_judge(spec: str, timeout: float | None = 60.0) -> Callable[[Sequence[Example], Sequence[str]], list[Verdict]]:
    """The batch judge over the user's function (per example, or per batch when `fn.batched`).
    Its `source_hash` is the hash of the code it runs (what the judging stages fingerprint). A call
    that takes more than `timeout` seconds (None: no limit) or calls sys.exit() stops the stage
    with a JudgeError naming the example."""
    fn, digest = load_function(spec, timeout)

    def stopped(e: BaseException, on: str) -> JudgeError:
        if isinstance(e, JudgeTimeout):
            return JudgeError(f"judge {spec!r} did not return within {timeout:g} s on {on} (judge_timeout: "
                              f"{timeout:g}; raise it if the judge needs longer)")
        if isinstance(e, SystemExit):
            return JudgeError(f"judge {spec!r} called {_exit_text(e)} on {on}; a judge returns {RETURNS}, "
                              "it must not exit the process")
        return JudgeError(f"judge {spec!r} raised on {on}: {type(e).__name__}: {e}")

    def judge(examples: Sequence[Example], responses: Sequence[str]) -> list[Verdict]:
        if getattr(fn, "batched", False) is True:
            try:
                values = call_with_deadline(fn, (list(examples), list(responses)), timeout)
            except (Exception, SystemExit, JudgeTimeout) as e:  # noqa: BLE001
                raise stopped(e, f"a batch of {len(examples)} starting with example {examples[0].id!r}") from (
                    e if isinstance(e, Exception) else None)
            if not isinstance(values, (list, tuple)) or len(values) != len(examples):
                got = f"a list of {len(values)}" if isinstance(values, (list, tuple)) else repr(values)[:80]
                raise JudgeError(f"judge {spec!r} (batched) returned {got} for {len(examples)} responses; "
                                 "a batched judge returns a list with one value per response")
            return [to_verdict(v, spec, ex) for v, ex in zip(values, examples)]
        out = []
        for ex, resp in zip(examples, responses, strict=True):
            try:
                value = call_with_deadline(fn, (ex, resp), timeout)
            except (Exception, SystemExit, JudgeTimeout) as e:  # noqa: BLE001
                raise stopped(e, f"example {ex.id!r} (response {resp[:80]!r})") from (e if isinstance(e, Exception) else None)
            out.append(to_verdict(value, spec, ex))
        return out

    judge.source_hash = digest  # type: ignore[attr-defined]
    return judge


def check_on_gold(judge: Callable[[Sequence[Example], Sequence[str]], list[Verdict]],
                  examples: Sequence[Example]) -> tuple[int, int]:
    """Run a custom judge on the gold answers of `examples` (a preflight: it must not raise or
    return something else than a verdict). Returns (gold answers judged correct, examples checked)."""
    try:
        verdicts = judge(examples, [e.gold for e in examples])
    except JudgeError as e:
        raise JudgeError(f"before any work, on the gold answers of the first {len(examples)} training examples: {e}") from e
    return sum(v.correct is True for v in verdicts), len(verdicts)
