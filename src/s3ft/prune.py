"""`s3ft prune`: keep a run's results, drop its model weights.

A run directory holds every stage's output as small JSONL files and every trained model (an
adapter of a few MB, a full model of hundreds). Pruning removes the weight files of each model
folder (and the Trainer checkpoints) and leaves in the folder `pruned.json`: the fingerprint the
folder had and the files removed. A resumed run then finds its stages up to date - the fingerprint
of a pruned folder is the one it had (runs.file_fingerprint) - and carries on with the stages not
yet done. `s3ft compare` makes a pruned model again when a result still to come needs it
(compare.remake_pruned); elsewhere a stage, `s3ft export`, `predict` or `chat` that must load a
pruned model refuses, naming the folder: remove it and run the run's command again to make it.

    s3ft prune RUN_DIR             in place (refused while another process writes the run)
    s3ft prune RUN_DIR --to COPY   a copy without the weights; RUN_DIR is left as it is (it may
                                   be running: the manifests are read first and written last, so
                                   a stage that finishes meanwhile is not done in the copy, and
                                   runs again when the copy resumes)
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from s3ft.runs import (CHECKPOINTS, MANIFEST, PRUNED, RunDir, RunDirError, file_fingerprint, read_manifest,
                       weight_files, write_json)

SKIPPED = (".lock",)  # never copied: the lock of the process that writes the run


def model_dirs(root: Path) -> list[Path]:
    """The model folders under `root` (config.json or adapter_config.json next to weights), outside
    Trainer checkpoints."""
    out = []
    for cfg in sorted([*root.rglob("config.json"), *root.rglob("adapter_config.json")]):
        d = cfg.parent
        if CHECKPOINTS not in d.relative_to(root).parts and d not in out and weight_files(d):
            out.append(d)
    return out


def _record(folder: Path) -> dict[str, Any]:
    """The prune record of model folder `folder`: its fingerprint and the weight files to remove.
    A record left by a prune interrupted half way (some of its files already gone) keeps the
    fingerprint it took while the folder was whole."""
    removed = [{"file": f.name, "bytes": f.stat().st_size} for f in weight_files(folder)]
    old = folder / PRUNED
    if old.is_file():
        rec = json.loads(old.read_text())
        if any(not (folder / r["file"]).exists() for r in rec.get("removed", [])):
            have = {r["file"] for r in removed}
            return {**rec, "removed": [*removed, *(r for r in rec["removed"] if r["file"] not in have)]}
    return {"fingerprint": file_fingerprint(folder), "pruned": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "removed": removed, "note": "weights removed by `s3ft prune`; the run's results on this model are kept"}


def _check_run(run: Path) -> None:
    if not run.is_dir():
        raise RunDirError(f"s3ft prune: {run} is not a folder")
    if not (run / MANIFEST).is_file():
        raise RunDirError(f"s3ft prune: {run} is not an s3ft run directory (no {MANIFEST})")
    manifest, problem = read_manifest(run / MANIFEST)
    if problem or not manifest:
        raise RunDirError(f"s3ft prune: {run} is not an s3ft run directory ({problem or f'an empty {MANIFEST}'})")


def prune(run: str | Path, to: str | Path | None = None) -> dict[str, Any]:
    """Remove the model weights of run directory `run` in place, or write a copy without them to
    `to` (a new or empty folder). Returns {"models": folders pruned, "bytes": bytes left out,
    "output": the pruned run's folder}."""
    run = Path(run)
    _check_run(run)
    outer = next((p for p in run.resolve().parents if (p / MANIFEST).is_file()), None)
    if to is None:
        if outer is not None:  # (its lock is the one a running compare holds)
            raise RunDirError(f"s3ft prune: {run} is part of the run {outer}; prune that")
        with RunDir(run).lock():  # not while another process writes it
            return _prune_in_place(run)
    dst = Path(to)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise RunDirError(f"s3ft prune --to {dst}: give a new or empty folder")
    if dst.resolve().is_relative_to(run.resolve()):
        raise RunDirError(f"s3ft prune --to {dst}: the copy cannot go inside the run {run}")
    # the manifests first: what they record as done was finished before anything is copied
    manifests = {m.relative_to(run): m.read_bytes() for m in run.rglob(MANIFEST) if CHECKPOINTS not in m.relative_to(run).parts}
    models = {d: _record(d) for d in model_dirs(run)}
    left_out = sum(r["bytes"] for rec in models.values() for r in rec["removed"])

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        skip = {n for n in names if n in SKIPPED or n == CHECKPOINTS or n.endswith(".tmp") or n == MANIFEST}
        if here in models:
            skip |= {r["file"] for r in models[here]["removed"]} | {PRUNED}
        return skip

    shutil.copytree(run, dst, ignore=ignore, dirs_exist_ok=True)
    for d, rec in models.items():
        write_json(dst / d.relative_to(run) / PRUNED, rec)
    for rel, data in manifests.items():  # last
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes(data)
    return {"models": len(models), "bytes": left_out, "output": str(dst)}


def _prune_in_place(run: Path) -> dict[str, Any]:
    freed, n = 0, 0
    for d in model_dirs(run):
        rec = _record(d)
        write_json(d / PRUNED, rec)  # first the record, then the weights go: a crash between leaves both
        for f in weight_files(d):
            freed += f.stat().st_size
            f.unlink()
        n += 1
    for ck in sorted(run.rglob(CHECKPOINTS), reverse=True):
        if ck.is_dir():
            freed += sum(f.stat().st_size for f in ck.rglob("*") if f.is_file())
            shutil.rmtree(ck)
    return {"models": n, "bytes": freed, "output": str(run)}
