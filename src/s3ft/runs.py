"""The run directory: the only state a run has.

- `manifest.json`: the resolved config, library versions, and for each stage its fingerprint,
  status (running / done), row count, wall time.
- Stage outputs are JSONL files written row by row (flushed, fsynced every few rows), keyed
  by example `id`. Rerunning a stage whose fingerprint is unchanged skips the rows already
  written; a half-written last line from a crash is cut off; a changed fingerprint (config,
  inputs, model) re-runs the stage from scratch, like make.
- `manifest.json` says that the folder is an s3ft run (its `s3ft_run` entry; a manifest with
  `stages` / `config` written before that entry existed counts too). s3ft writes into a new or
  empty folder or an s3ft run directory only: any other folder is refused before any work
  (`RunDir.check_usable`), naming the files a run would overwrite.
- `.lock` holds the pid and host of the process writing the directory; a second process is
  refused. A lock left by a process of this host that is no longer running is taken over; one
  written on another host (a shared filesystem), or one still empty, is never removed silently.
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

from s3ft.checks import brief, path_problem

MANIFEST = "manifest.json"
RUN_MARKER = "s3ft_run"  # the manifest entry that makes a folder an s3ft run directory
MANIFEST_FORMAT = 1
IGNORED = (".lock", MANIFEST + ".tmp")  # what a folder may hold and still count as empty


class RunLockedError(RuntimeError):
    pass


class RunDirError(ValueError):
    """output_dir cannot be used: a file, not writable, or a folder that is not an s3ft run."""


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
        line = json.dumps(row, ensure_ascii=False) + "\n"
        try:
            self._f.write(line)
            self._f.flush()
            self._n += 1
            if self._n % self.sync_every == 0:
                os.fsync(self._f.fileno())
        except OSError as e:  # a full disk, a quota, a vanished mount: say which file, and that nothing is lost
            raise OSError(e.errno, f"{e.strerror or e} (the rows written before are kept; free the space and run the "
                                   "same command again to continue)", str(self.path)) from e

    def close(self, quiet: bool = False) -> None:
        """Flush, fsync and close; `quiet`: an error is already on its way, do not raise another
        (what could not be written is at most a half line, cut off when the file is next opened)."""
        if self._f.closed:
            return
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as e:
            if not quiet:
                raise OSError(e.errno, e.strerror, str(self.path)) from e
        finally:
            try:
                self._f.close()
            except OSError:
                pass

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close(quiet=exc[0] is not None)


@contextmanager
def gzip_text(path: Path) -> Iterator[Any]:
    """A gzip file opened for writing text (UTF-8), its header's time set to 0 so that the same
    content gives the same bytes: a rerun leaves a recorded archive unchanged."""
    import gzip
    import io

    with gzip.GzipFile(path, "wb", mtime=0) as raw, io.TextIOWrapper(raw, encoding="utf-8") as f:
        yield f


def read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    """Every row of a gzipped JSONL file, such as one written with `gzip_text`."""
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename; a failed write, e.g. a full disk, leaves the old
    file and no temp file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n"
    _atomic(path, lambda f: f.write(text))


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write a whole JSONL file atomically (temp file + rename); streams use JsonlWriter."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(f) -> None:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    _atomic(path, write)


def _atomic(path: Path, write) -> None:
    """`write(f)` into PATH.tmp, fsync, rename over `path`; on any failure the temp file goes."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- fingerprints
def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


PRUNED = "pruned.json"  # left by `s3ft prune` in a model folder whose weights it removed (s3ft.prune)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt")
CHECKPOINTS = "checkpoints"  # a training run's Trainer checkpoints (s3ft.training): scratch, not the model


def weight_files(folder: str | Path) -> list[Path]:
    """The weight files directly in `folder` (safetensors, bin, pt, ...)."""
    return sorted(f for f in Path(folder).iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES)


def pruned_record(path: str | Path) -> dict[str, Any] | None:
    """The record `s3ft prune` left in model folder `path` (its fingerprint before the weights were
    removed, the files removed), or None when the folder holds weights again or was never pruned."""
    path = Path(path)
    rec = path / PRUNED
    if not rec.is_file() or weight_files(path):
        return None
    return json.loads(rec.read_text())


def file_fingerprint(path: str | Path) -> str:
    """What a file's or folder's contents hash to (a folder's Trainer checkpoints and prune record
    left out); a pruned model folder keeps the fingerprint its weights had, so that the stages
    evaluated on it stay up to date."""
    path = Path(path)
    if path.is_dir():
        pruned = pruned_record(path)
        if pruned:
            return pruned["fingerprint"]
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*")
                        if p.is_file() and CHECKPOINTS not in p.relative_to(path).parts and p.name != PRUNED):
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
        if not p.exists():
            return {"stages": {}}
        m, problem = read_manifest(p)
        if problem:
            raise RunDirError(f"{p}: not an s3ft manifest: {problem}")
        return m

    def _write_manifest(self, m: dict[str, Any]) -> None:
        m[RUN_MARKER] = run_marker()
        write_json(self.path / MANIFEST, m)

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        m = self.manifest()
        m.update(fields)
        if is_main_process():
            self._write_manifest(m)
        return m

    def stage_record(self, stage: str) -> dict[str, Any] | None:
        return self.manifest().get("stages", {}).get(stage)

    def set_stage(self, stage: str, **record: Any) -> None:
        if not is_main_process():
            return
        m = self.manifest()
        m.setdefault("stages", {})[stage] = record
        self._write_manifest(m)

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

    # is it ours ---------------------------------------------------------------
    def check_usable(self) -> None:
        """Refuse, before any work, an output_dir s3ft must not write into: a file (or a path under
        one), a folder that cannot be written (read-only filesystem, permissions), or a folder that
        holds anything but is not an s3ft run directory (no manifest.json saying so) - a run would
        replace the files that have an output's name and merge itself into the folder. A new or
        empty folder, and an s3ft run directory, are fine."""
        path = self.path
        if os.path.lexists(path) and not path.is_dir():
            what = path_problem(path) or "is a file"
            raise RunDirError(f"output_dir {path} {what if what.startswith('is ') else 'is ' + what}, not a folder; "
                              "give a folder for the run (a new one, or an s3ft run directory)")
        existing = path
        while not os.path.lexists(existing):
            existing = existing.parent
        if not existing.is_dir():
            raise RunDirError(f"output_dir {path}: {existing} is a file, so the folder cannot be made under it")
        if not _writable(existing):
            why = "is on a read-only filesystem" if _read_only(existing) else "is not writable (permission denied)"
            raise RunDirError(f"output_dir {path}: {existing} {why}; give a folder s3ft can write")
        if existing != path:
            return  # a new folder
        entries = sorted(e for e in os.listdir(path) if e not in IGNORED and not e.startswith(".lock."))
        if not entries:
            return
        if MANIFEST in entries:
            m, problem = read_manifest(path / MANIFEST)
            if problem is None and is_run_manifest(m):
                return
            why = (f"its {MANIFEST} is {problem}" if problem else f"its {MANIFEST} was not written by s3ft (no "
                   f"{RUN_MARKER!r} entry; keys: {', '.join(map(brief, list(m)[:6])) or 'none'})")
        else:
            why = f"it has no {MANIFEST}"
        clash = would_overwrite(entries)
        files = (f"a run would overwrite {', '.join(clash[:8])}" + (f" and {len(clash) - 8} more" if len(clash) > 8 else "")
                 if clash else f"it holds {', '.join(entries[:5])}" + (f" and {len(entries) - 5} more" if len(entries) > 5 else ""))
        raise RunDirError(f"output_dir {path} is not empty and is not an s3ft run directory ({why}); {files}. "
                          "Give a new or empty folder, or the folder of an earlier s3ft run")

    # lock --------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold `.lock` (pid and host) while a process writes the run directory. Checks first that
        the folder may be written (check_usable). A lock of a process of this host that is no
        longer running is taken over; a live one, one from another host (a shared filesystem:
        s3ft cannot tell whether it still runs) or an empty one (a process between creating it
        and writing its pid) refuses the run, saying what to do."""
        if not is_main_process():  # rank 0 holds the lock for the whole launch
            yield
            return
        self.check_usable()
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / ".lock"
        me = f"{os.getpid()} {platform.node()}"
        for _ in range(3):
            try:
                _create_lock(lock, me)
            except FileExistsError:
                self._stale_or_raise(lock)
                continue
            break
        else:
            raise RunLockedError(f"{self.path}: could not take {lock}: another process keeps creating it")
        try:
            yield
        finally:
            if _read(lock) == me:
                lock.unlink(missing_ok=True)

    def _stale_or_raise(self, lock: Path) -> None:
        """`lock` exists: remove it when its process (on this host) is gone, else raise."""
        other = _read(lock)
        for _ in range(20):  # a process between creating the lock and writing its pid: give it 2 s
            if other:
                break
            time.sleep(0.1)
            other = _read(lock)
            if other is None:
                return  # gone meanwhile
        if other is None:
            return
        words = other.split()
        if not words:
            raise RunLockedError(f"{lock} is empty: another s3ft process may be starting in {self.path} (or one died "
                                 f"while starting). If no s3ft process uses {self.path}, delete {lock} and run again")
        pid = int(words[0]) if words[0].isdigit() else None
        host = words[1] if len(words) > 1 else None
        if pid is None:
            raise RunLockedError(f"{lock} holds {brief(other[:80])}, not an s3ft lock (pid host); if no s3ft process "
                                 f"uses {self.path}, delete {lock} and run again")
        if host is not None and host != platform.node():
            raise RunLockedError(f"{self.path} is locked by process {pid} on host {host} (this is {platform.node()}; "
                                 f"a shared filesystem?) and s3ft cannot tell from here whether it still runs. If it "
                                 f"does not, delete {lock} and run again")
        if _alive(pid):
            raise RunLockedError(
                f"{self.path} is in use by process {pid} ({other}); wait for it to finish, or stop it first")
        lock.unlink(missing_ok=True)  # stale: its process is gone


def _create_lock(lock: Path, content: str) -> None:
    """Create `lock` holding `content`, or raise FileExistsError. Written to a file of its own and
    hard-linked into place, so that no one ever reads it empty; where the filesystem has no hard
    links, created exclusively and then written (readers wait for the pid: `_stale_or_raise`)."""
    tmp = lock.with_name(f"{lock.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(content)
        try:
            os.link(tmp, lock)
            return
        except FileExistsError:
            raise
        except OSError:  # no hard links here
            pass
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        try:
            os.write(fd, content.encode())
        finally:
            os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> str | None:
    """A small file's text, stripped; None when it is not there."""
    try:
        return path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return None


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK) and not _read_only(folder)


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def run_marker() -> dict[str, Any]:
    """The manifest entry that says "an s3ft run directory": s3ft's version and the format."""
    return {"format": MANIFEST_FORMAT, "version": versions().get("s3ft", "unknown")}


def read_manifest(path: Path) -> tuple[dict[str, Any], str | None]:
    """(the manifest, None), or ({}, what is wrong with it): not readable, not JSON, not an object."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return {}, f"not readable ({getattr(e, 'strerror', None) or e})"
    try:
        m = json.loads(text)
    except (ValueError, RecursionError) as e:
        return {}, f"not JSON ({str(e)[:120]})"
    if not isinstance(m, dict):
        return {}, f"a JSON {type(m).__name__}, not an object"
    return m, None


def is_run_manifest(m: dict[str, Any]) -> bool:
    """An s3ft run's manifest: it carries the marker, or (written before the marker existed) it
    has s3ft's `stages` / `config` entries in their shapes."""
    return any(isinstance(m.get(k), dict) for k in (RUN_MARKER, "stages", "config"))


def would_overwrite(entries: Iterable[str]) -> list[str]:
    """The names among a folder's `entries` that an s3ft run writes (and would replace)."""
    from s3ft.methods import METHODS

    fixed = {MANIFEST, "own.jsonl", "own_judged.jsonl", "samples.jsonl", "samples_judged.jsonl", "likelihood.jsonl",
             "paraphrase.jsonl", "metrics.json", "summary.md",
             "compare.json", "logprob.jsonl", "eval", "general", "report", "tune", *METHODS}
    out = []
    for e in entries:
        if e in fixed or (e.startswith("train.") and e.endswith(".jsonl")) or e.startswith(("seed-", "llm_judge_cache.")):
            out.append(e + "/" if e in ("eval", "general", "report", "tune", *METHODS) or e.startswith("seed-") else e)
    return out


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
