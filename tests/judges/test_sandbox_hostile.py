"""Hostile programs: each is judged not correct, the host is left untouched, and the honest
program that follows it in the same batch is still judged correct. Run with bubblewrap (when
it works here) and without it (resource limits + audit-hook guard only)."""
from __future__ import annotations

import os
import signal
import tempfile
import uuid
import warnings

import pytest

from s3ft.judges import sandbox as sandbox_mod
from s3ft.judges.code import make_code_judge
from s3ft.judges.sandbox import Sandbox
from s3ft.types import Example

TESTS = ["assert f(1) == 2", "assert f(2) == 3", "assert f(3) == 4"]
GOOD = "def f(x):\n    return x + 1\n"
WRONG = "def f(x):\n    return x\n"
EX = Example("h", [{"role": "user", "content": "Write f(x) = x + 1."}], "", {"test_list": TESTS, "test_setup_code": ""})


def hostile_programs(canary: str, canary_dir: str, escape: str, test_pid: int) -> dict[str, str]:
    return {
        "infinite loop": "while True:\n    pass\n" + GOOD,
        "infinite loop ignoring SIGTERM": "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "def f(x):\n    while True:\n        pass\n",
        "fork bomb": "import os\nwhile True:\n    os.fork()\n" + GOOD,
        "subprocess spawner": "import subprocess\nfor _ in range(50):\n    subprocess.Popen(['sleep', '60'])\n" + GOOD,
        "multiprocessing": "import multiprocessing as mp\np = mp.Process(target=print)\np.start()\n" + GOOD,
        "memory bomb": "x = []\nwhile True:\n    x.append(bytearray(10 ** 7))\n" + GOOD,
        "memory bomb in the function": "def f(x):\n    return len(' ' * (10 ** 11)) and x + 1\n",
        "huge output forever": "import sys\nwhile True:\n    print('x' * 10000)\n    sys.stderr.write('y' * 10000)\n" + GOOD,
        "huge file": "open('big.bin', 'wb').write(b'0' * (100 * 2 ** 20))\n" + GOOD,
        "overwrite canary": f"open({canary!r}, 'w').write('pwned')\n" + GOOD,
        "delete canary": f"import os\nos.remove({canary!r})\n" + GOOD,
        "rmtree host dir": f"import shutil\nshutil.rmtree({canary_dir!r})\n" + GOOD,
        "create file next to the canary": f"open({canary_dir + '/escaped.txt'!r}, 'w').write('escaped')\n" + GOOD,
        "create file in /var/tmp": f"open({escape!r}, 'w').write('escaped')\n" + GOOD,
        "rename canary": f"import os\nos.rename({canary!r}, {canary!r} + '.moved')\n" + GOOD,
        "network connect": "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)\n" + GOOD,
        "network listen": "import socket\ns = socket.socket()\ns.bind(('0.0.0.0', 0))\ns.listen()\n" + GOOD,
        "kill parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + GOOD,
        "kill the test process": f"import os\nos.kill({test_pid}, 9)\n" + GOOD,
        "kill process group": "import os\nos.killpg(0, 9)\n" + GOOD,
        "ctypes": "import ctypes\nctypes.CDLL(None).kill(0, 9)\n" + GOOD,
        "sys.exit(0) before asserts": "import sys\nsys.exit(0)\n" + GOOD,
        "os._exit(0) before asserts": WRONG + "import os\nos._exit(0)\n",
        "exit from the function": "import os\ndef f(x):\n    os._exit(0)\n",
        "raise SystemExit in function": "def f(x):\n    raise SystemExit(0)\n",
        "print fake passed": WRONG + "print('passed 3/3 tests')\nprint('S3FT-RESULT 0 passed 3 3')\nimport os\nos._exit(0)\n",
        "forge result on every fd": WRONG + "import os\nfor fd in range(0, 256):\n    try:\n"
        "        os.write(fd, b'\\nS3FT-RESULT 00 passed 3 3\\npassed 3/3 tests\\n')\n    except OSError:\n        pass\n",
        "read nonce from stdin": WRONG + "import sys, os\nnonce = sys.stdin.read()\n"
        "os.write(3, ('\\nS3FT-RESULT ' + nonce.strip() + ' passed 3 3\\n').encode())\nos._exit(0)\n",
        "atexit forging": WRONG + "import atexit, os\natexit.register(lambda: os.write(3, b'\\nS3FT-RESULT x passed 3 3\\n'))\n",
        "patch AssertionError": WRONG + "import builtins\nbuiltins.AssertionError = type('AE', (Exception,), {})\n",
        "patch builtins used by the harness": WRONG + "import builtins\nfor n in ('len', 'str', 'type', 'exec', "
        "'compile', 'isinstance', 'enumerate', 'BaseException'):\n    setattr(builtins, n, lambda *a, **k: None)\n",
        "patch os.write/_exit": WRONG + "import os\nos._exit = lambda *a: None\nos.write = lambda *a: 0\n",
        "swallow assert via sys.modules": WRONG + "import sys\nsys.modules['builtins'].__dict__['AssertionError'] = None\n",
        "close result fd": GOOD + "import os\nfor fd in range(3, 64):\n    try:\n        os.close(fd)\n    except OSError:\n        pass\n",
        "setsid escape": "import os\nos.setsid()\nwhile True:\n    pass\n" + GOOD,
        "recursion bomb": "import sys\nsys.setrecursionlimit(10 ** 6)\ndef g(n):\n    return g(n + 1)\ng(0)\n" + GOOD,
        "syntax error": "def f(x)\n    return x + 1\n",
    }


HONEST = {
    "honest": GOOD,
    "honest with output": GOOD + "import sys\nprint('x' * 5_000_000)\nsys.stderr.write('noise\\n')\n",
    "honest using its workdir": GOOD + "open('notes.txt', 'w').write('scratch')\nassert open('notes.txt').read() == 'scratch'\n",
    "honest using tempfile": GOOD + "import tempfile\nwith tempfile.TemporaryFile() as t:\n    t.write(b'1')\n",
    "honest using stdlib": "import re, math, heapq, collections, itertools, functools\n" + GOOD,
    "honest importing ctypes": "import ctypes\n" + GOOD,  # numpy does; calling C functions is refused
}


def _sandbox_or_skip(isolation: str) -> Sandbox:
    if isolation == "bwrap":
        try:
            return Sandbox(timeout=3.0, memory_mb=512, file_size_mb=8, isolation="bwrap")
        except RuntimeError as e:
            pytest.skip(str(e))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return Sandbox(timeout=3.0, memory_mb=512, file_size_mb=8, isolation="none")


@pytest.mark.parametrize("isolation", ["bwrap", "none"])
def test_hostile_programs_fail_and_host_is_untouched(isolation, tmp_path):
    sb = _sandbox_or_skip(isolation)
    canary_dir = tmp_path / "host"
    canary_dir.mkdir()
    canary = canary_dir / "canary.txt"
    canary.write_text("intact")
    # (not under /tmp: with bubblewrap /tmp is the program's own private working directory)
    escape = f"/var/tmp/s3ft-escape-{uuid.uuid4().hex}"
    token = f"s3ft-workdir-token-{uuid.uuid4().hex}"
    honest = dict(HONEST)
    honest["honest leaving a file"] = GOOD + f"open({token!r}, 'w').write('x')\n"
    hostile = hostile_programs(str(canary), str(canary_dir), escape, os.getpid())

    # every hostile program is followed by an honest one in the same batch
    names, programs = [], []
    honest_items = list(honest.items())
    for k, (name, prog) in enumerate(hostile.items()):
        names += [name, honest_items[k % len(honest_items)][0]]
        programs += [prog, honest_items[k % len(honest_items)][1]]
    jobs = [(p, TESTS, "") for p in programs]
    results = sb.run_many(jobs, workers=2)

    wrong = {n: r.reason for n, r in zip(names, results) if (n in hostile) == r.ok}
    assert not wrong, wrong
    for n, r in zip(names, results):
        if n in hostile:
            assert r.status != "passed"
        else:
            assert r.reason == "passed 3/3 tests", (n, r.reason)
    by_name = {n: r for n, r in zip(names, results)}
    assert by_name["infinite loop"].reason == "timeout after 3s"
    assert by_name["syntax error"].reason == "syntax error (line 1)"

    # the host
    assert canary.read_text() == "intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host"]
    assert sorted(p.name for p in canary_dir.iterdir()) == ["canary.txt"]
    escaped = os.path.exists(escape)
    if escaped:
        os.remove(escape)
    assert not escaped
    leftovers = [d for d in os.listdir(tempfile.gettempdir())
                 if d.startswith("s3ft-sandbox-") and os.path.exists(os.path.join(tempfile.gettempdir(), d, token))]
    assert not leftovers  # working directories are deleted


def test_bubblewrap_alone_protects_the_host(tmp_path):
    """With the audit-hook guard switched off, the namespaces still keep files, network and
    processes of the host out of reach (fork/memory bombs are left out: as root, RLIMIT_NPROC
    does not apply and the guard is what stops them)."""
    try:
        sb = Sandbox(timeout=3.0, memory_mb=512, file_size_mb=8, isolation="bwrap", guard=False)
    except RuntimeError as e:
        pytest.skip(str(e))
    canary_dir = tmp_path / "host"
    canary_dir.mkdir()
    canary = canary_dir / "canary.txt"
    canary.write_text("intact")
    escape = f"/var/tmp/s3ft-escape-{uuid.uuid4().hex}"
    names = ["overwrite canary", "delete canary", "rmtree host dir", "create file in /var/tmp", "network connect",
             "kill parent", "kill the test process", "kill process group", "sys.exit(0) before asserts",
             "os._exit(0) before asserts", "print fake passed", "patch builtins used by the harness"]
    hostile = hostile_programs(str(canary), str(canary_dir), escape, os.getpid())
    jobs = []
    for n in names:
        jobs += [(hostile[n], TESTS, ""), (GOOD, TESTS, "")]
    results = sb.run_many(jobs, workers=2)
    # inside the pid namespace the parent is bwrap's init, which ignores SIGKILL from inside: the
    # program then goes on and (being otherwise right) may pass; the judge is unharmed either way
    may_pass = {"kill parent"}
    for k, n in enumerate(names):
        assert results[2 * k + 1].ok, (n, results[2 * k + 1].reason)
        assert n in may_pass or not results[2 * k].ok, (n, results[2 * k].reason)
    assert canary.read_text() == "intact"
    escaped = os.path.exists(escape)
    if escaped:
        os.remove(escape)
    assert not escaped


def test_code_judge_batch_with_hostile_neighbours():
    """Through the public judge: a batch mixing hostile and honest replies."""
    judge = make_code_judge(allow_code_execution=True, timeout=3.0, memory_mb=512)
    replies = [
        "[BEGIN]\n" + GOOD + "[DONE]",
        "[BEGIN]\nimport os\nos.kill(os.getppid(), 9)\n" + GOOD + "[DONE]",
        "```python\n" + GOOD + "```",
        "[BEGIN]\nimport sys\nprint('passed 3/3 tests')\nsys.exit(0)\n[DONE]",
        "[BEGIN]\nwhile True:\n    pass\n[DONE]",
        GOOD,
    ]
    out = judge([EX] * len(replies), replies)
    assert [v.correct for v in out] == [True, False, True, False, False, True]
    assert out[4].reason == "timeout after 3s"


def test_nonce_is_required(monkeypatch):
    """The parent accepts a pass only from a line that carries this run's nonce."""
    sb = Sandbox.__new__(Sandbox)  # _interpret needs only the timeout
    sb.timeout = 1.0
    start = b"S3FT-RESULT n started\n"
    fake = start + b"\nS3FT-RESULT wrong-nonce passed 3 3\n"
    assert sb._interpret(fake, "n", 0, False, 3).status == "crashed"
    assert sb._interpret(start + b"\nS3FT-RESULT n passed 3 3\n", "n", 0, False, 3).ok
    assert not sb._interpret(start + b"\nS3FT-RESULT n passed 2 2\n", "n", 0, False, 3).ok  # count must match
    assert "SIGXCPU" in sb._interpret(start, "n", -int(signal.SIGXCPU), False, 3).reason
    # no "started" line: the harness never ran, which is not the program's fault
    assert sb._interpret(b"", "n", 1, False, 3).status == "sandbox_error"
    assert sb._interpret(b"", "n", -9, True, 3).status == "sandbox_error"


def test_sandbox_failure_is_not_the_models_fault():
    judge = make_code_judge(allow_code_execution=True, python="/nonexistent/python3")
    v = judge([EX], [GOOD])[0]
    assert v.correct is None and v.reason.startswith("sandbox error")


def test_warns_once_without_isolation(monkeypatch):
    monkeypatch.setattr(sandbox_mod, "_WARNED", False)
    with pytest.warns(RuntimeWarning, match="WITHOUT namespace isolation") as record:
        Sandbox(isolation="none")
        Sandbox(isolation="none")
    assert len([w for w in record if "WITHOUT namespace isolation" in str(w.message)]) == 1


def test_bwrap_required_but_missing(monkeypatch):
    monkeypatch.setattr(sandbox_mod.shutil, "which", lambda name: None)
    monkeypatch.setattr(sandbox_mod, "_BWRAP_OK", {})
    with pytest.raises(RuntimeError, match="bwrap not found"):
        Sandbox(isolation="bwrap")
    monkeypatch.setattr(sandbox_mod, "_WARNED", False)
    with pytest.warns(RuntimeWarning, match="bwrap not found on PATH"):
        assert Sandbox(isolation="auto").isolation == "none"


def test_cpu_limit_is_a_backstop_beyond_the_wall_clock_timeout():
    """A busy loop must be reported as the timeout it is: with the CPU limit equal to the timeout,
    a parent whose timer woke late (a loaded machine) saw SIGXCPU first - a flaky 'crashed'."""
    for timeout in (0.5, 3.0, 3.2):
        sb = Sandbox.__new__(Sandbox)
        sb.timeout, sb.nproc, sb.memory_mb, sb.file_size_mb = timeout, 8, 512, 16
        assert sb._limits()["cpu"] >= timeout + 1
