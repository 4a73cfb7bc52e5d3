#!/usr/bin/env python3
"""`s3ft compare` with its seeds in parallel processes: the same study, the same stages and
results, in less wall time where one process leaves the machine idle (a small model on a GPU).

    python scripts/compare_parallel.py RECIPE [--key value ...]

1. The first seed runs as `s3ft compare RECIPE --seeds [first]`: the shared pass (own answers,
   judgments, paraphrases, training sets), the tuning, the base model, the log-prob analysis, then
   its own seed.
2. Once the shared pass and the tuning are done, every other seed starts in a copy of the run
   directory (<output_dir>-seed<k>, the shared stages found done there) with `--seeds [k]
   --tune_seed <first>`, so all seeds use the one tuning, and without the base model and the
   log-prob analysis, which the first seed's process does meanwhile.
3. When all are done, each copy's seed-<k> folder moves into <output_dir> and `s3ft compare RECIPE`
   over every seed finds every stage done (stage fingerprints hash contents, not paths) and writes
   compare.json and the report, exactly as a sequential run would.

Each process logs to <output_dir>.seed<k>.log and sizes its generation batches from 1/len(seeds)
of the GPU's free memory (S3FT_GPU_SHARE). A failed or interrupted run loses no finished
stage: rerun the same command (or plain `s3ft compare RECIPE`, which resumes sequentially).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def _compare(recipe: str, overrides: list[str], extra: list[str], log: Path | None, share: float = 1.0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "s3ft.cli", "compare", recipe, *overrides, *extra]
    print("$", " ".join(cmd) + (f"  > {log}" if log else ""), flush=True)
    out = open(log, "a") if log else None
    # processes side by side on one GPU each size their generation batches from their share of its memory
    env = {**os.environ, "S3FT_GPU_SHARE": f"{share:.4f}"} if share < 1 else None
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None, text=True, env=env)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    args, overrides = ap.parse_known_args(argv)

    from s3ft.compare import seeds_of, tune_seed, tuning_candidates
    from s3ft.config import load_config

    cfg = load_config(args.recipe, overrides)
    seeds = seeds_of(cfg)
    root = Path(cfg.output_dir)
    first = tune_seed(cfg)
    if len(seeds) < 2:
        print("one seed: nothing to run in parallel; running s3ft compare")
        return _compare(args.recipe, overrides, [], None).wait()
    if first not in seeds:
        print(f"tune_seed {first} is not among seeds {seeds}: run it sequentially (s3ft compare)", file=sys.stderr)
        return 2
    root.parent.mkdir(parents=True, exist_ok=True)
    tune = ["--tune_seed", str(first)]
    logs = {k: root.parent / f"{root.name}.seed{k}.log" for k in seeds}
    share = 1 / len(seeds)
    # the other seeds need the shared pass and the tuning, not the base model's evaluation nor the
    # log-prob analysis (the first seed's process does those, the final run collects them)
    tuned = bool(tuning_candidates(cfg))
    marker = "tune: chose" if tuned else f"seed {first}: training and evaluating"
    trained = [m for m in cfg.methods if m != "base"]
    rest = ["--methods", "[" + ",".join(trained) + "]", "--logprob_analysis", "false"]
    start = logs[first].stat().st_size if logs[first].exists() else 0  # logs append: read this run's part only

    def this_run() -> str:
        if not logs[first].exists():
            return ""
        with open(logs[first], "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    procs = {first: _compare(args.recipe, overrides, ["--seeds", f"[{first}]", *tune], logs[first], share)}
    try:
        t0 = time.time()
        while marker not in this_run():
            if procs[first].poll() is not None:
                print(f"seed {first} stopped (exit {procs[first].returncode}) before the shared work was done; "
                      f"see {logs[first]}", file=sys.stderr)
                return procs[first].returncode or 1
            time.sleep(2)
        print(f"shared pass{' and tuning' if tuned else ', base model'} done ({time.time() - t0:.0f} s); starting seeds "
              f"{[k for k in seeds if k != first]}", flush=True)
        copies = {}
        for k in seeds:
            if k == first:
                continue
            copies[k] = root.parent / f"{root.name}-seed{k}"
            shutil.copytree(root, copies[k], dirs_exist_ok=True,
                            ignore=lambda d, names: [n for n in names if Path(d) == root and (
                                n.startswith("seed-") or n in (".lock", "compare.json", "report"))])
            done = root / f"seed-{k}"  # seed k from an earlier run, merged: it resumes from there
            if done.is_dir() and not (copies[k] / f"seed-{k}").exists():
                shutil.move(str(done), copies[k] / f"seed-{k}")
            procs[k] = _compare(args.recipe, overrides, ["--seeds", f"[{k}]", *tune, *rest, "--output_dir", str(copies[k])],
                                logs[k], share)
        codes = {k: p.wait() for k, p in procs.items()}
    except BaseException:  # interrupted (Ctrl-C): stop the seed processes too; their finished stages stay
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        raise
    failed = {k: c for k, c in codes.items() if c}
    if failed:
        for k, c in failed.items():
            print(f"seed {k} failed (exit {c}); see {logs[k]}", file=sys.stderr)
        return 1
    for k, d in copies.items():
        dst = root / f"seed-{k}"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.move(str(d / f"seed-{k}"), dst)
        shutil.rmtree(d)
    print(f"all seeds done ({time.time() - t0:.0f} s); collecting them into {root / 'compare.json'}", flush=True)
    return _compare(args.recipe, overrides, tune, None).wait()


if __name__ == "__main__":
    sys.exit(main())
