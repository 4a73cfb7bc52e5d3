"""What every benchmark in bench/ shares: the machine's description, saving results (JSON for
the numbers, Markdown for people), and running an arm in its own process."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from s3ft.models import on_gpu  # noqa: F401  (re-exported for the benchmarks)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), {gpu}, torch {torch.__version__}"


def add_device_argument(ap) -> None:
    """--device: cpu (what the recorded results measure) or cuda[:N], the same benchmark on a GPU
    (results to bench/results/NAME_cuda.json; timings synchronize the GPU; memory is the GPU's peak
    allocation, torch.cuda.max_memory_allocated, instead of the process's peak RSS)."""
    ap.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N to run the same benchmark on a GPU")


def sync(device: str) -> None:
    """Wait for the GPU's queued work, so that a wall-clock timer measures it (no-op on CPU)."""
    if on_gpu(device):
        torch.cuda.synchronize(device)


def peak_memory_mb(device: str) -> float:
    """Peak memory of this process: the GPU's peak allocation on cuda, else the peak RSS."""
    if on_gpu(device):
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def add_dtype_argument(ap, name: str) -> None:
    """--dtype (auto: what s3ft computes in on this machine, see s3ft.models.resolve_dtype) and an
    --out whose default names the dtype when it is not auto: bench/results/NAME[_DTYPE].json."""
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                    help="compute dtype for every arm (auto: what s3ft uses here - on CPU float32, bfloat16 for full fine-tuning where the CPU has native bf16)")
    ap.add_argument("--out", default=None, help=f"results JSON (default bench/results/{name}.json, "
                    f"or bench/results/{name}_DTYPE.json with an explicit --dtype)")


def resolve_dtype_and_out(a, name: str, full_training: bool = False) -> str:
    """The resolved dtype name for parsed args `a` (for full fine-tuning or not, on a.device when
    the benchmark has one); fills in a.out (NAME[_DTYPE][_cuda].json)."""
    from s3ft.models import resolve_dtype

    device = getattr(a, "device", "cpu")
    if a.out is None:
        suffix = ("" if a.dtype == "auto" else f"_{a.dtype}") + ("_cuda" if on_gpu(device) else "")
        a.out = f"bench/results/{name}{suffix}.json"
    return resolve_dtype(a.dtype, device, full_training=full_training)


def save(doc: dict, out: Path, md_lines: list[str] | None = None) -> None:
    """doc to `out` (JSON); md_lines, if given, to `out` with .md and to stdout."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    if md_lines is not None:
        save_markdown(md_lines, out)


def save_markdown(lines: list[str], out: Path) -> None:
    Path(out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def run_child(argv: list[str], what: str, env: dict | None = None) -> dict:
    """Run `python argv...` and return the dict its `RESULT {json}` line carries; exit with the
    child's stderr tail when it fails. One process per arm keeps each arm's peak RSS its own."""
    p = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env)
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    if p.returncode != 0 or line is None:
        print(p.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{what} failed")
    return json.loads(line[len("RESULT "):])
