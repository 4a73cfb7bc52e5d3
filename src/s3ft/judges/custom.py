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
into silent "cannot judge" verdicts (every target falls back to the gold). The rows judged
before it are kept; fix the judge and run again to resume.

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
import sys
import types
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


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


_MODULE_HASHES: dict[str, str] = {}  # module name -> hash of its source when first loaded here


def _load_module(spec: str) -> tuple[Any, str]:
    """(module, hash of the source it runs). A file is read once and that text is what runs and
    what is hashed; an edited file is a new module. A module named by import path is imported
    once per process (not reloaded); its source file is hashed when first loaded here."""
    where, _ = _split(spec)
    if _is_file(where):
        path = Path(where)
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
            exec(compile(source, str(resolved), "exec", dont_inherit=True), module.__dict__)  # (not this file's __future__)
        except Exception as e:
            del sys.modules[name]
            raise JudgeError(f"judge {spec!r}: importing {where} failed: {type(e).__name__}: {e}") from e
        return module, digest
    try:
        module = importlib.import_module(where)
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


def load_function(spec: str) -> tuple[Callable[..., Any], str]:
    """(the judge function `spec` names, checked to be callable with (example, response); the hash
    of the source it comes from)."""
    module, digest = _load_module(spec)
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


def make_custom_judge(spec: str) -> Callable[[Sequence[Example], Sequence[str]], list[Verdict]]:
    """The batch judge over the user's function (per example, or per batch when `fn.batched`).
    Its `source_hash` is the hash of the code it runs (what the judging stages fingerprint)."""
    fn, digest = load_function(spec)

    def judge(examples: Sequence[Example], responses: Sequence[str]) -> list[Verdict]:
        if getattr(fn, "batched", False) is True:
            try:
                values = fn(list(examples), list(responses))
            except Exception as e:
                raise JudgeError(f"judge {spec!r} raised on a batch of {len(examples)} starting with example "
                                 f"{examples[0].id!r}: {type(e).__name__}: {e}") from e
            if not isinstance(values, (list, tuple)) or len(values) != len(examples):
                got = f"a list of {len(values)}" if isinstance(values, (list, tuple)) else repr(values)[:80]
                raise JudgeError(f"judge {spec!r} (batched) returned {got} for {len(examples)} responses; "
                                 "a batched judge returns a list with one value per response")
            return [to_verdict(v, spec, ex) for v, ex in zip(values, examples)]
        out = []
        for ex, resp in zip(examples, responses, strict=True):
            try:
                value = fn(ex, resp)
            except Exception as e:
                raise JudgeError(f"judge {spec!r} raised on example {ex.id!r} (response {resp[:80]!r}): "
                                 f"{type(e).__name__}: {e}") from e
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
