"""Small checks on user input, shared by the recipe loader, the data readers, the run directory
and the `s3ft` command: a value shown in a message at a bounded size (`brief`), why a path is not a
readable file (`path_problem`), text that is not valid Unicode (`text_problem`) and a JSON-like
value nested too deeply or holding such text (`value_problem`). Standard library only."""
from __future__ import annotations

import errno
import os
import reprlib
import stat
from pathlib import Path
from typing import Any

MAX_DEPTH = 64  # nesting a row's values may have (lists and objects inside each other)


class _Brief(reprlib.Repr):
    def __init__(self, limit: int):
        super().__init__()
        self.maxlevel = 2
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = self.maxarray = 6
        self.maxdict = 6
        self.maxstring = limit
        self.maxother = limit
        self.maxlong = limit

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:  # (repr() of an int of more than 4300 digits raises ValueError)
            return f"<an integer of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


def brief(value: Any, limit: int = 120) -> str:
    """repr(value), cut to a readable size: a YAML 'billion laughs' value (lists of lists sharing
    one object) or an integer of thousands of digits is shown in a few dozen characters."""
    try:
        text = _Brief(limit).repr(value)
    except Exception:  # noqa: BLE001 - (a user object whose repr raises)
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def path_problem(path: str | Path, what: str = "file") -> str | None:
    """Why `path` cannot be read as a regular file, or None when it can: not found (with the
    resolved path), a broken symbolic link, a symbolic link loop, under something that is not a
    folder, a folder, a FIFO / socket / device (reading one would block or never end), or not
    readable."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symbolic link loop (it points back at itself)"
        if e.errno == errno.ENOTDIR:
            return "a folder on its path is a file"
        if e.errno == errno.ENAMETOOLONG:
            return "the path is too long"
        if os.path.islink(path):
            return f"is a broken symbolic link (to {os.readlink(path)})"
        if e.errno == errno.ENOENT:
            return f"{what} not found (resolved to {path.resolve()})"
        return f"cannot be read ({e.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        return f"is {kind}, not a regular {what}"
    if not os.access(path, os.R_OK):
        return "is not readable (permission denied)"
    return None


def file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` when it is a file (so `path` cannot be made under
    it), else None."""
    parent = Path(path).parent
    while not os.path.lexists(parent):
        parent = parent.parent
    return None if parent.is_dir() else parent


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (also through links)."""
    return Path(a).resolve() == Path(b).resolve() or (Path(a).exists() and Path(b).exists() and os.path.samefile(a, b))


def text_problem(text: str) -> str | None:
    """Why `text` cannot be written as UTF-8 (a lone surrogate: a byte that was not UTF-8 on the
    command line, or a "\\ud800" escape in JSON / YAML), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        ch = ord(text[e.start])
        if 0xDC80 <= ch <= 0xDCFF:  # how Python carries a byte that is not UTF-8 (surrogateescape)
            return f"holds the byte 0x{ch - 0xDC00:02x}, which is not UTF-8, at character {e.start + 1}"
        return f"holds a lone surrogate \\u{ch:04x} at character {e.start + 1}, which is not valid Unicode text"
    return None


def value_problem(value: Any, max_depth: int = MAX_DEPTH) -> tuple[Any, str] | None:
    """(the top-level key or index it is under - None for `value` itself -, what is wrong) for the
    first string that is not valid Unicode text or the first list / object nested deeper than
    `max_depth`, or None. Iterative, so any depth is safe."""
    stack: list[tuple[Any, tuple, int]] = [(value, (), 0)]
    while stack:
        v, keys, depth = stack.pop()
        problem = None
        if isinstance(v, str):
            problem = text_problem(v)
        elif isinstance(v, (list, dict)):
            if depth >= max_depth:
                problem = f"nested more than {max_depth} levels deep"
            else:
                items = list(v.items() if isinstance(v, dict) else enumerate(v))
                for k, x in reversed(items):  # (popped in order)
                    if isinstance(k, str) and (p := text_problem(k)) is not None:
                        return (keys or (k,))[0], f"a key {p}"
                    stack.append((x, (*keys, k), depth + 1))
        if problem is not None:
            return (keys[0] if keys else None), problem
    return None
