"""Run model-written Python programs against test asserts, isolated from the host.

Threat model. The programs come from the model being fine-tuned: mostly honest attempts, some
broken (infinite loops, huge allocations, stray prints), occasionally "reward hacks" (exit early
with status 0, print "passed", patch builtins) and, rarely, code that damages its surroundings
(deletes files, forks, kills its parent). The sandbox must (1) decide pass/fail from the test
outcome only, (2) keep the host and the judging process intact, (3) bound each program's time
and resources. It is not meant to contain a deliberately adversarial program written by someone
who knows this harness (see "Limits" below).

How one program runs (`Sandbox.run`):

* A fresh process per program: `python -S -B -c HARNESS FD`, started with `start_new_session`
  so that on a wall-clock timeout the whole process group is SIGKILLed. No `preexec_fn` (unsafe
  with the thread pool); the resource limits are set by the harness itself, in the child, before
  any untrusted code runs: RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_FSIZE, RLIMIT_NPROC,
  RLIMIT_CORE=0.
* The environment is replaced (PATH, LANG/LC_ALL, HOME=TMPDIR=workdir, PYTHONHASHSEED=0 for
  reproducible set/dict order, thread counts 1). `-S` skips `site` (the site-packages folders are
  appended to sys.path without running .pth hooks: ~18 ms instead of ~80 ms per start).
* Where `bwrap` (bubblewrap) works: a namespace sandbox. Read-only view of `/`, fresh /dev and
  /proc, the working directory is a private size-limited tmpfs at /tmp (nothing is written on the
  host at all), /dev/shm a tiny tmpfs, new user (uid 65534 inside, all capabilities dropped),
  network, pid, ipc and uts namespaces, `--die-with-parent`, `--new-session`.
  Without bwrap: a fresh temporary directory on the host (deleted afterwards) is the working
  directory, and a warning says ONCE per process that programs run without namespace isolation.
* In both modes an audit hook (PEP 578, `guard=True`) installed before the program runs
  refuses: process creation (fork, exec, spawn, system, subprocess), signals (kill, killpg),
  sockets, calling C functions through ctypes (importing ctypes is allowed: numpy does), gc
  object enumeration, rlimit changes, and any file write, delete, rename, chmod ... outside the
  working directory. Without bwrap it is the main protection of the host.
* Pass/fail: the parent sends the job and a random per-run nonce on stdin (marshal, so the child
  needs no json import); the harness reads them, writes "S3FT-RESULT <nonce> started" (no such
  line = the sandbox itself failed: Verdict None, not the program's fault), points fd 0 at
  /dev/null, and keeps the nonce only in its own local variables. It then compiles and runs
  the program, the setup code and every assert in one namespace, catching every exception
  (SystemExit included). Only after the last assert has returned does it write
  "S3FT-RESULT <nonce> passed N" to a pipe fd, then `os._exit`s (no atexit/finalisers run). The
  parent accepts a pass only from a line carrying the right nonce. Exit codes and printed text
  are ignored (stdout/stderr go to /dev/null), so `sys.exit(0)`, `os._exit(0)` before the
  asserts, printing "passed", killing the parent, or replacing builtins/AssertionError cannot
  fake a pass: the harness uses only references it captured before the program ran, and the
  `assert` statement raises the real AssertionError whatever the program rebinds.

Limits (documented, not solved): code in the same interpreter can in principle walk the stack
frames back into the harness and read the nonce, or return objects whose `__eq__` always says
True; RLIMIT_NPROC is not enforced by Linux for uid 0 (root), so as root a fork bomb is stopped
by the audit hook, the pid namespace and the timeout rather than by the rlimit; the audit hook
is a guard-rail, not a security boundary (without bwrap a determined program can get around it).
"""
from __future__ import annotations

import logging
import marshal
import math
import os
import secrets
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

log = logging.getLogger("s3ft.sandbox")

RESULT_TAG = "S3FT-RESULT"

# ---------------------------------------------------------------------------------------------
# The harness: runs inside the sandboxed interpreter (python -S -B -c HARNESS <result fd>).
# Everything it needs after the untrusted program has started is bound to local variables
# first, so rebinding builtins / module attributes cannot change what it does or reports.
# ---------------------------------------------------------------------------------------------
HARNESS = r'''
import sys, os
def _install_guard(workdir, write_ok):
    import sys, os
    realpath, fspath, fsdecode = os.path.realpath, os.fspath, os.fsdecode
    isinstance_, str_, bytes_, int_, PermissionError_ = isinstance, str, bytes, int, PermissionError
    len_, tuple_, Exception_ = len, tuple, Exception
    prefixes = tuple(os.path.join(realpath(p), "") for p in write_ok)
    exact = frozenset(("/dev/null",))
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    block = frozenset((
        "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
        "os.startfile", "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg",
        "signal.pthread_kill", "socket.__new__", "socket.connect", "socket.bind",
        "socket.getaddrinfo", "socket.sendto", "socket.sendmsg",
        # ctypes may be imported (numpy does: that is "ctypes.dlopen"), but not used to look up or
        # call C functions or to read/write raw memory
        "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.call_function", "ctypes.cdata",
        "ctypes.addressof", "ctypes.string_at", "ctypes.wstring_at", "ctypes.cdata/buffer",
        "gc.get_objects", "gc.get_referrers", "gc.get_referents", "resource.setrlimit",
        "resource.prlimit", "os.setxattr", "os.removexattr", "msvcrt.open_osfhandle",
    ))
    path_events = {
        "os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.link": (0, 1),
        "os.symlink": (1,), "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,),
        "os.mkdir": (0,), "os.utime": (0,), "os.chflags": (0,), "os.lchflags": (0,),
        "os.lchmod": (0,), "os.lchown": (0,), "shutil.rmtree": (0,), "shutil.copyfile": (1,),
        "shutil.copymode": (1,), "shutil.copystat": (1,), "shutil.copytree": (1,),
        "shutil.move": (0, 1), "shutil.chown": (0,), "os.mkfifo": (0,), "os.mknod": (0,),
    }

    def inside(p):
        if isinstance_(p, int_):  # an already-open fd
            return True
        try:
            p = fspath(p)
            if isinstance_(p, bytes_):
                p = fsdecode(p)
            rp = realpath(p)
        except Exception_:
            return False
        return rp in exact or (rp + "/").startswith(prefixes)

    def hook(event, args):
        if event in block:
            raise PermissionError_("s3ft sandbox: " + event + " is not allowed")
        if event == "open":
            path, mode, flags = (tuple_(args) + (None, None, None))[:3]
            writing = (isinstance_(flags, int_) and flags & WRITE) or (
                isinstance_(mode, str_) and ("w" in mode or "a" in mode or "x" in mode or "+" in mode))
            if writing and not inside(path):
                raise PermissionError_("s3ft sandbox: writing outside the working directory")
        elif event in path_events:
            for i in path_events[event]:
                if i < len_(args) and not inside(args[i]):
                    raise PermissionError_("s3ft sandbox: " + event + " outside the working directory")

    sys.addaudithook(hook)

def _main():
    _write, _exit, _close = os.write, os._exit, os.close
    _fd = int(sys.argv[1])
    _BaseException, _SyntaxError, _ValueError, _Exception = BaseException, SyntaxError, ValueError, Exception
    _compile, _exec, _type, _len, _enumerate, _dict, _str = compile, exec, type, len, enumerate, dict, str
    import marshal, resource, builtins
    payload = marshal.loads(sys.stdin.buffer.read())
    nonce = payload["nonce"]
    del payload["nonce"]
    _write(_fd, ("S3FT-RESULT " + nonce + " started\n").encode())
    dn = os.open(os.devnull, os.O_RDONLY)
    os.dup2(dn, 0)
    os.close(dn)
    for p in payload["sys_path"]:
        if p not in sys.path:
            sys.path.append(p)
    lim = payload["limits"]
    for name, value in (("RLIMIT_CORE", 0), ("RLIMIT_CPU", lim["cpu"]), ("RLIMIT_AS", lim["as"]),
                        ("RLIMIT_FSIZE", lim["fsize"]), ("RLIMIT_NPROC", lim["nproc"])):
        if value is not None and hasattr(resource, name):
            try:
                hard = value + 1 if name == "RLIMIT_CPU" else value
                resource.setrlimit(getattr(resource, name), (value, hard))
            except (_ValueError, OSError):
                pass

    def report(kind, a="", b=""):
        msg = "\n" + "S3FT-RESULT " + nonce + " " + kind + " " + a + " " + b + "\n"
        try:
            _write(_fd, msg.encode("utf-8", "replace"))
        except _BaseException:
            pass
        _exit(0)

    def ename(e):
        try:
            n = _type(e).__name__
            return n if _type(n) is _str and n.isidentifier() else "Exception"
        except _BaseException:
            return "Exception"

    try:
        code = _compile(payload["program"], "<solution>", "exec")
    except (_SyntaxError, _ValueError) as e:
        line = getattr(e, "lineno", None)
        report("syntax_error", _str(line) if _type(line) is int else "?")
    try:
        setup = _compile(payload["setup"], "<test setup>", "exec")
    except _BaseException as e:
        report("bad_test", "setup", ename(e))
    tests = []
    for i, t in _enumerate(payload["tests"]):
        try:
            tests.append(_compile(t, "<test %d>" % (i + 1), "exec"))
        except _BaseException as e:
            report("bad_test", _str(i + 1), ename(e))
    n = _len(tests)
    if payload["guard"]:
        _install_guard(os.getcwd(), [os.getcwd()])
    g = _dict(__name__="__solution__", __builtins__=builtins)
    del payload
    try:
        _exec(code, g)
    except _BaseException as e:
        report("program_error", ename(e))
    try:
        _exec(setup, g)
    except _BaseException as e:
        report("setup_error", ename(e))
    for i, t in _enumerate(tests):
        try:
            _exec(t, g)
        except _BaseException as e:
            report("failed", _str(i + 1), ename(e))
    report("passed", _str(n), _str(n))

_main()
'''


@dataclass
class RunResult:
    """Outcome of one program: status is passed | failed | program_error | setup_error |
    syntax_error | timeout | crashed | bad_test | sandbox_error; reason is the short text for
    the Verdict (bad_test and sandbox_error are not the program's fault)."""

    status: str
    reason: str
    passed: int = 0
    total: int = 0
    seconds: float = 0.0
    detail: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "passed"


_WARN_LOCK = threading.Lock()
_WARNED = False
_BWRAP_OK: dict[tuple, tuple[bool, str]] = {}


def _warn_once(msg: str) -> None:
    global _WARNED
    with _WARN_LOCK:
        if _WARNED:
            return
        _WARNED = True
    log.warning(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _site_dirs() -> list[str]:
    dirs: list[str] = []
    try:
        dirs.extend(site.getsitepackages())
    except Exception:  # some virtualenv layouts lack it
        pass
    for p in sys.path:
        if p.endswith(("site-packages", "dist-packages")) and p not in dirs:
            dirs.append(p)
    return [d for d in dirs if os.path.isdir(d)]


def _user_process_count() -> int:
    uid = os.getuid()
    n = 0
    try:
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if os.stat(f"/proc/{pid}").st_uid == uid:
                        n += 1
                except OSError:
                    pass
    except OSError:
        return 0
    return n


class Sandbox:
    """Runs (program, setup, tests) jobs; see the module docstring.

    timeout: wall-clock seconds per program (the CPU limit is one second more, rounded up);
    memory_mb: RLIMIT_AS; file_size_mb: RLIMIT_FSIZE and the size of the private tmpfs;
    nproc: processes/threads the program may add (RLIMIT_NPROC; ignored by Linux for root);
    isolation: "auto" (bwrap when it works, else none with a warning), "bwrap" (required),
    "none"; guard: install the audit-hook guard; python: interpreter to run programs with."""

    def __init__(
        self,
        timeout: float = 10.0,
        memory_mb: int = 1024,
        file_size_mb: int = 64,
        nproc: int = 64,
        isolation: str = "auto",
        guard: bool = True,
        python: str | None = None,
    ):
        if isolation not in ("auto", "bwrap", "none"):
            raise ValueError(f"isolation must be auto, bwrap or none, not {isolation!r}")
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self.file_size_mb = int(file_size_mb)
        self.nproc = int(nproc)
        self.guard = bool(guard)
        self.python = python or sys.executable
        self.sys_path = _site_dirs()
        if isolation in ("auto", "bwrap"):
            ok, why = self._probe_bwrap()
            if ok:
                self.isolation = "bwrap"
            elif isolation == "bwrap":
                raise RuntimeError(f"isolation='bwrap' requested but bubblewrap does not work here: {why}")
            else:
                self.isolation = "none"
                _warn_once(
                    "s3ft: model-written programs run WITHOUT namespace isolation (" + why + "); "
                    "they run as separate processes with resource limits, a scrubbed environment, "
                    "a temporary working directory and an audit-hook guard, but can still read "
                    "your files. Install bubblewrap (apt-get install bubblewrap) for a read-only, "
                    "network-less sandbox."
                )
        else:
            self.isolation = "none"
            _warn_once(
                "s3ft: model-written programs run WITHOUT namespace isolation (isolation='none'); "
                "only resource limits, a temporary working directory and an audit-hook guard apply."
            )

    # -- command construction -------------------------------------------------------------
    def _bwrap_prefix(self) -> list[str]:
        size = str(self.file_size_mb << 20)
        return [
            shutil.which("bwrap") or "bwrap",
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--size", str(1 << 20), "--tmpfs", "/dev/shm",
            "--proc", "/proc",
            "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
            "--chdir", "/tmp",
            "--unshare-user", "--uid", "65534", "--gid", "65534",
            "--cap-drop", "ALL",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--hostname", "sandbox",
            "--die-with-parent", "--new-session",
        ]

    def _probe_bwrap(self) -> tuple[bool, str]:
        key = (self.python, self.file_size_mb)
        if key in _BWRAP_OK:
            return _BWRAP_OK[key]
        if shutil.which("bwrap") is None:
            res = (False, "bwrap not found on PATH")
        else:
            try:
                p = subprocess.run(
                    self._bwrap_prefix() + [self.python, "-S", "-B", "-c", "import os; open('probe', 'w').write('x')"],
                    stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                )
                res = (p.returncode == 0, f"bwrap probe failed: {p.stderr.decode(errors='replace').strip()[:300]}")
            except Exception as e:  # pragma: no cover - odd hosts
                res = (False, f"bwrap probe failed: {type(e).__name__}: {e}")
        _BWRAP_OK[key] = res
        return res

    def _env(self, workdir: str) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": workdir,
            "TMPDIR": workdir,
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }

    def _limits(self) -> dict:
        nproc = self.nproc
        if os.getuid() != 0:
            # RLIMIT_NPROC counts all processes of the user: leave room for the ones already running
            nproc = _user_process_count() + self.nproc
        return {
            # a backstop beyond the wall-clock timeout: equal to it, a busy-looping program could
            # hit it first when the parent's timer wakes late (as it does on a loaded machine),
            # and report "CPU time limit" where "timeout" is the truth
            "cpu": math.ceil(self.timeout) + 1,
            "as": self.memory_mb << 20,
            "fsize": self.file_size_mb << 20,
            "nproc": nproc,
        }

    # -- running ----------------------------------------------------------------------------
    def run(self, program: str, tests: Sequence[str], setup: str = "") -> RunResult:
        """Run one program with its setup code and asserts. Never raises on the program."""
        t0 = time.monotonic()
        nonce = secrets.token_hex(16)
        host_dir = None
        if self.isolation == "bwrap":
            workdir = "/tmp"
            cmd = self._bwrap_prefix()
            cwd = "/"
        else:
            host_dir = tempfile.mkdtemp(prefix="s3ft-sandbox-")
            workdir = cwd = host_dir
            cmd = []
        payload = marshal.dumps(
            {
                "nonce": nonce,
                "program": program,
                "setup": setup or "",
                "tests": list(tests),
                "limits": self._limits(),
                "sys_path": self.sys_path,
                "guard": self.guard,
            },
            4,  # a format every Python 3 reads; no json import in the child (saves ~15 ms)
        )
        r, w = os.pipe()
        timed_out = False
        proc = None
        try:
            cmd = cmd + [self.python, "-S", "-B", "-c", HARNESS, str(w)]
            try:
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    pass_fds=(w,), start_new_session=True, cwd=cwd, env=self._env(workdir),
                )
            finally:
                os.close(w)
            try:
                proc.communicate(payload, timeout=self.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                self._kill_group(proc)
                proc.wait()
            data = self._drain(r)
        finally:
            os.close(r)
            if proc is not None and proc.returncode is None:  # pragma: no cover - defensive
                self._kill_group(proc)
                proc.wait()
            if proc is not None and self.isolation == "none":
                self._kill_group(proc, reaped=True)  # anything the program left behind
            if host_dir is not None:
                _rmtree(host_dir)
        res = self._interpret(data, nonce, proc.returncode if proc else None, timed_out, len(tests))
        res.seconds = time.monotonic() - t0
        return res

    def run_many(self, jobs: Sequence[tuple[str, Sequence[str], str]], workers: int = 0) -> list[RunResult]:
        """Run (program, tests, setup) jobs in parallel, `workers` at a time (0 = cpu count)."""
        workers = workers or os.cpu_count() or 1
        if workers == 1 or len(jobs) <= 1:
            return [self._safe_run(*j) for j in jobs]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3ft-sandbox") as pool:
            return list(pool.map(lambda j: self._safe_run(*j), jobs))

    def _safe_run(self, program: str, tests: Sequence[str], setup: str = "") -> RunResult:
        try:
            return self.run(program, tests, setup)
        except Exception as e:  # a judge never takes the run down
            log.exception("sandbox failure")
            return RunResult("sandbox_error", f"sandbox error: {type(e).__name__}: {e}")

    @staticmethod
    def _kill_group(proc: subprocess.Popen, reaped: bool = False) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
        if not reaped:
            try:
                proc.kill()
            except OSError:
                pass

    @staticmethod
    def _drain(fd: int, cap: int = 1 << 20) -> bytes:
        os.set_blocking(fd, False)
        chunks, total = [], 0
        while total < cap:
            try:
                b = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                break
            if not b:
                break
            chunks.append(b)
            total += len(b)
        return b"".join(chunks)

    def _interpret(self, data: bytes, nonce: str, rc: int | None, timed_out: bool, n_tests: int) -> RunResult:
        line, started = None, False
        for raw in data.decode("utf-8", "replace").splitlines():
            parts = raw.split()
            if len(parts) >= 3 and parts[0] == RESULT_TAG and parts[1] == nonce:
                if parts[2] == "started":
                    started = True
                else:
                    line = parts[2:]
        if not started:  # the harness never ran: an infrastructure problem, not the program's
            what = "did not start within the timeout" if timed_out else f"failed to start (exit status {rc})"
            return RunResult("sandbox_error", f"sandbox error: the sandbox {what}", total=n_tests,
                             detail={"returncode": rc})
        if line is None:
            if timed_out:
                return RunResult("timeout", f"timeout after {self.timeout:g}s", total=n_tests)
            return RunResult("crashed", _crash_reason(rc), total=n_tests, detail={"returncode": rc})
        kind, args = line[0], line[1:]
        if kind == "passed":
            n = int(args[0]) if args and args[0].isdigit() else n_tests
            if n != n_tests:  # cannot happen unless the harness was subverted
                return RunResult("crashed", "harness reported an inconsistent test count", total=n_tests)
            return RunResult("passed", f"passed {n}/{n} tests", passed=n, total=n)
        if kind == "failed":
            i = int(args[0]) if args and args[0].isdigit() else 0
            exc = args[1] if len(args) > 1 else "Exception"
            return RunResult("failed", f"failed: {exc} in test {i}", passed=max(0, i - 1), total=n_tests,
                             detail={"test": i, "exception": exc})
        if kind == "syntax_error":
            where = f" (line {args[0]})" if args and args[0].isdigit() else ""
            return RunResult("syntax_error", f"syntax error{where}", total=n_tests)
        if kind == "program_error":
            exc = args[0] if args else "Exception"
            return RunResult("program_error", f"failed: {exc} while running the program", total=n_tests,
                             detail={"exception": exc})
        if kind == "setup_error":
            exc = args[0] if args else "Exception"
            return RunResult("setup_error", f"failed: {exc} in test setup code", total=n_tests,
                             detail={"exception": exc})
        if kind == "bad_test":
            return RunResult("bad_test", f"cannot compile test {' '.join(args)}", total=n_tests)
        return RunResult("crashed", f"unknown harness result {kind!r}", total=n_tests)


def _crash_reason(rc: int | None) -> str:
    if rc is None:
        return "crashed: no exit status"
    if rc < 0:
        sig = -rc
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        extra = {"SIGXCPU": " (CPU time limit)", "SIGXFSZ": " (file size limit)",
                 "SIGKILL": "", "SIGSEGV": " (segmentation fault)"}.get(name, "")
        return f"crashed: killed by {name}{extra} before the tests finished"
    # bwrap reports a child killed by signal N as exit status 128+N
    if rc > 128 and rc - 128 in signal.Signals._value2member_map_:
        return f"crashed: killed by {signal.Signals(rc - 128).name} before the tests finished"
    return f"no test result: the process exited with code {rc} before the tests finished"


def _rmtree(path: str) -> None:
    def onerror(func, p, exc):  # programs may leave read-only files or folders behind
        try:
            os.chmod(p, 0o700)
            parent = os.path.dirname(p)
            os.chmod(parent, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)
    if os.path.exists(path):  # pragma: no cover
        shutil.rmtree(path, ignore_errors=True)
