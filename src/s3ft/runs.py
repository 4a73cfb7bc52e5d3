"""The run directory: the only state a run has.

- `manifest.json`: the resolved config, library versions, and for each stage its fingerprint,
  status (running / done), row count, wall time.
- Stage outputs are JSONL files written row by row (flushed, fsynced every few rows), keyed
  by example `id`. Rerunning a stage whose fingerprint is unchanged skips the rows already
  written; a half-written last line from a crash is cut off; a changed fingerprint (config,
  inputs, model) re-runs the stage from scratch, like make.
- `.lock` holds the pid of the process writing the directory; a second process is refused.
- Under a multi-process launch (torchrun / accelerate launch: WORLD_SIZE > 1) only the process
  of rank 0 writes the run directory: on the other ranks the manifest writes, the stage
  bookkeeping and the lock are no-ops (see `is_main_process`)."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

MANIFEST = "manifest.json"


class RunLockedError(RuntimeError):
    pass


# ---------------------------------------------------------------- JSONL
def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All complete rows of a JSONL file (a truncated last line, left by a crash, is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with path.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # half-written last line
            line = raw.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def repair_jsonl(path: Path) -> int:
    """Cut a half-written last line off `path`; returns bytes removed."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as f:
        f.truncate(keep)
    return len(data) - keep


class JsonlWriter:
    """Appends rows to a JSONL file, flushing every row and fsyncing every `sync_every` rows."""

    def __init__(self, path: Path, sync_every: int = 8):
        self.path = path
        self.sync_every = sync_every
        self._n = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_jsonl(path)
        self._f = path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._f.flush()
        self._n += 1
        if self._n % self.sync_every == 0:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write a whole JSONL file atomically (temp file + rename); streams use JsonlWriter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------- fingerprints
def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_fingerprint(path: str | Path) -> str:
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file() and "checkpoints" not in p.parts):
            h.update(str(f.relative_to(path)).encode())
            h.update(f.read_bytes())
        return h.hexdigest()[:16]
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else "missing"


def versions() -> dict[str, str]:
    """Python, platform and library versions (looked up once per process)."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("s3ft", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "math-verify", "lm_eval", "vllm"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


# ---------------------------------------------------------------- processes
def world_size() -> int:
    """Number of processes of a torchrun / accelerate launch (1 when launched plainly)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE") or 1))
    except ValueError:
        return 1


def is_main_process() -> bool:
    """False only on the ranks != 0 of a multi-process launch: those never write run state."""
    if world_size() == 1:
        return True
    try:
        return int(os.environ.get("RANK") or 0) == 0
    except ValueError:
        return True


# ---------------------------------------------------------------- run directory
class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # manifest --------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        p = self.path / MANIFEST
        return json.loads(p.read_text()) if p.exists() else {"stages": {}}

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        m = self.manifest()
        m.update(fields)
        if is_main_process():
            write_json(self.path / MANIFEST, m)
        return m

    def stage_record(self, stage: str) -> dict[str, Any] | None:
        return self.manifest().get("stages", {}).get(stage)

    def set_stage(self, stage: str, **record: Any) -> None:
        if not is_main_process():
            return
        m = self.manifest()
        m.setdefault("stages", {})[stage] = record
        write_json(self.path / MANIFEST, m)

    def is_done(self, stage: str, fp: str, outputs: Iterable[Path]) -> bool:
        rec = self.stage_record(stage)
        return bool(rec and rec.get("status") == "done" and rec.get("fingerprint") == fp and all(Path(o).exists() for o in outputs))

    @contextmanager
    def stage(self, stage: str, fp: str, outputs: Iterable[Path], force: bool = False) -> Iterator[dict[str, Any]]:
        """Bracket a stage: clears outputs written under another fingerprint (or on --force),
        keeps those of an interrupted run with the same fingerprint (so the stage resumes),
        and marks it done with its wall time at the end. Yields a dict the stage can fill with
        summary fields for the manifest."""
        if not is_main_process():  # rank 0 clears outputs and keeps the record
            yield {}
            return
        outputs = [Path(o) for o in outputs]
        rec = self.stage_record(stage)
        if force or not rec or rec.get("fingerprint") != fp:
            for o in outputs:
                _remove(o)
        self.set_stage(stage, status="running", fingerprint=fp, started=time.strftime("%Y-%m-%dT%H:%M:%S"))
        info: dict[str, Any] = {}
        t0 = time.time()
        yield info
        self.set_stage(stage, status="done", fingerprint=fp, seconds=round(time.time() - t0, 1),
                       finished=time.strftime("%Y-%m-%dT%H:%M:%S"), **info)

    # lock --------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        if not is_main_process():  # rank 0 holds the lock for the whole launch
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / ".lock"
        me = f"{os.getpid()} {platform.node()}"
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, me.encode())
                os.close(fd)
                break
            except FileExistsError:
                other = lock.read_text().strip() if lock.exists() else ""
                pid = int(other.split()[0]) if other.split() and other.split()[0].isdigit() else None
                if pid is not None and _alive(pid) and other.split()[1:2] == [platform.node()]:
                    raise RunLockedError(
                        f"{self.path} is in use by process {pid} ({other}); wait for it to finish, or stop it first"
                    ) from None
                lock.unlink(missing_ok=True)  # stale lock from a dead process
        try:
            yield
        finally:
            if lock.exists() and lock.read_text().strip() == me:
                lock.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
