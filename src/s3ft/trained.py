"""A finished run's fine-tuned model, found from its run directory alone - for `s3ft export`,
`s3ft predict` and `s3ft chat`.

The run's manifest.json records the config; the model is RUN/<method>/model (`s3ft run`) or
RUN/seed-<k>/<method>/model (`s3ft compare`), and the manifest next to it records whether its
training stage (`train.<method>`) finished. Anything missing or unfinished is refused with a
`TrainedModelError` naming the path and saying what to do (the CLI exits with code 2)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3ft.config import FIELDS, S3FTConfig
from s3ft.methods import BASE, METHODS
from s3ft.runs import MANIFEST, RunDir, is_run_manifest, pruned_record, read_manifest


class TrainedModelError(ValueError):
    """The run or its model cannot be used: missing, not an s3ft run, or not finished."""


@dataclass
class TrainedModel:
    """run: the run directory; cfg: its config (output_dir set to where the run is now);
    method; seed: the training seed of an `s3ft compare` run (None for `s3ft run`);
    method_run: the folder holding <method>/ (the run, or its seed-<k>/ folder)."""

    run: RunDir
    cfg: S3FTConfig
    method: str
    seed: int | None
    method_run: RunDir
    point: dict[str, Any] | None = None  # a point of the compare sweep (its frontier record, test split)
    point_dir: Path | None = None        # that point's model (a checkpoint or an interpolation)

    @property
    def model_dir(self) -> Path:
        return self.point_dir if self.point_dir is not None else self.method_run / self.method / "model"

    @property
    def name(self) -> str:
        """The model's name in its run's stages (eval.<name>, general.<name>): the method, or for a
        sweep point <method>-e<epoch>[-a<alpha>]."""
        from s3ft.frontier import point_name

        return point_name(self.method, self.point["epoch"], self.point.get("alpha", 1.0)) if self.point else self.method

    @property
    def is_adapter(self) -> bool:
        return (self.model_dir / "adapter_config.json").is_file()

    @property
    def is_compare(self) -> bool:
        return self.method_run.path != self.run.path

    def evaluated_in(self) -> tuple[RunDir, str]:
        """The folder and name of the model's test-split stages (eval.<name>, general.<name>): its
        own; for the sweep point that is the per-seed comparison's own model, the comparison's,
        where the point's answers file (<seed folder>/eval/<method>.jsonl) is."""
        p = self.point or {}
        answers = (p.get("answers_by_seed") or {}).get(str(self.seed)) or p.get("answers")
        if not answers:
            return self.method_run, self.name
        f = self.run.path / answers
        return RunDir(f.parent.parent), f.stem

    def record(self, stage: str) -> dict[str, Any]:
        """A stage's manifest record: a trained model's stages (train, its eval and general) in
        its folder (evaluated_in), the shared ones (build, the base model's) in the run's."""
        kind, _, name = stage.partition(".")
        if stage == f"train.{self.method}":
            rec = self.method_run.stage_record(stage)
        elif kind in ("eval", "general") and name == self.name:
            run, name = self.evaluated_in()
            rec = run.stage_record(f"{kind}.{name}")
        else:
            rec = self.run.stage_record(stage)
        return rec if isinstance(rec, dict) else {}

    def compare_result(self) -> dict[str, Any]:
        """compare.json of an `s3ft compare` run (tuning, hyperparameters), else {}."""
        path = self.run / "compare.json"
        try:
            return json.loads(path.read_text(encoding="utf-8")) if self.is_compare and path.is_file() else {}
        except (OSError, ValueError):
            return {}

    def base_path(self) -> str:
        """The base model's folder (or hub name) the adapter was trained on: its adapter config's
        base when that is still there, else the run's `model` resolved again (the embedded
        default is converted again if its cache was cleared)."""
        from s3ft.models import resolve_model

        if self.is_adapter:
            base = json.loads((self.model_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
            if base and Path(base).is_dir():
                return str(base)
        return resolve_model(self.cfg.model)

    def eval_dtype(self) -> str:
        """The dtype the run evaluated its models in: the recipe's dtype when explicit; for auto,
        what the training stage recorded for the machine it ran on - inference computes in the
        training dtype there, except on a CPU, where auto always evaluates in float32
        (models.resolve_dtype) - else auto resolved on this machine."""
        if self.cfg.dtype != "auto":
            return self.cfg.dtype
        rec = self.record(f"train.{self.method}")
        if rec.get("dtype") in ("float32", "bfloat16", "float16"):
            return rec["dtype"] if str(rec.get("device", "")).startswith("cuda") else "float32"
        return self.cfg.resolved_dtype()

    def describe(self) -> str:
        if self.point:
            return f"{self.method} model of {self.run.path}, sweep point {point_label(self.point)}"
        return f"{self.method} model of {self.run.path}" + (f" (seed {self.seed})" if self.is_compare else "")


def point_label(p: dict[str, Any]) -> str:
    """A sweep point as --point writes it: lr=..,epoch=..,finetuning=lora|full,alpha=.."""
    return (f"lr={p['learning_rate']:g},epoch={p['epoch']:g},finetuning={'lora' if p.get('peft') else 'full'},"
            f"alpha={p.get('alpha', 1.0):g}")


def find_point(run_dir: str | Path, method: str | None, point: str, seed: int | None = None) -> TrainedModel:
    """A model of the compare sweep (`s3ft compare` with sweep keys): `point` is `recommended` (the
    point compare.json's frontier recommends within the recipe's budget) or
    `lr=LR,epoch=E[,finetuning=lora|full][,alpha=A]` of `method` (finetuning: the sweep's only one
    when omitted; alpha: 1, the trained model itself); `seed`: which of the sweep's training seeds
    (default: the first of them)."""
    from s3ft.compare import sweep_model_dir, sweep_run_dir
    from s3ft.frontier import key

    run = RunDir(run_dir)
    cfg = run_config(run)
    path = run / "compare.json"
    try:
        fr = json.loads(path.read_text(encoding="utf-8")).get("frontier") if path.is_file() else None
    except (OSError, ValueError) as e:
        raise TrainedModelError(f"{path}: cannot be read ({e})") from None
    if not fr or not fr.get("points"):
        raise TrainedModelError(f"{run.path} has no sweep (no `frontier` in {path}): --point needs an `s3ft compare` "
                                "run with sweep keys (docs/compare.md#frontiers)")
    if point == "recommended":
        rec = fr.get("recommendation")
        if not rec:
            raise TrainedModelError(f"{path}: no recommended point - " + ("no point is within the forgetting budget"
                                    if fr.get("budget") else "the recipe sets no forgetting_max"))
        want = rec["point"]
        if method is not None and method != want["method"]:
            raise TrainedModelError(f"--point recommended is a {want['method']} model, not {method}")
        p = next((q for q in fr["points"] if key(q) == key(want)), None)
        if p is None:
            raise TrainedModelError(f"{path}: the recommended point {want} has no {fr.get('split', 'test')} record; "
                                    "rerun `s3ft compare`")
    else:
        fields: dict[str, str] = {}
        for part in point.split(","):
            k, sep, v = part.partition("=")
            if not sep or k.strip() not in ("lr", "epoch", "finetuning", "alpha"):
                raise TrainedModelError(f"--point {point!r}: expected recommended or lr=LR,epoch=E[,finetuning=lora|full]"
                                        "[,alpha=A]")
            fields[k.strip()] = v.strip()
        if fields.get("finetuning", "lora") not in ("lora", "full"):
            raise TrainedModelError(f"--point {point!r}: finetuning is lora or full, got {fields['finetuning']!r}")
        if "lr" not in fields or "epoch" not in fields:
            raise TrainedModelError(f"--point {point!r}: give at least lr= and epoch=")
        peft = list(fr["grid"]["peft"]) if "finetuning" not in fields else [fields["finetuning"] == "lora"]
        try:
            want = {"method": method, "learning_rate": float(fields["lr"]), "epoch": float(fields["epoch"]),
                    "alpha": float(fields.get("alpha", 1))}
        except ValueError:
            raise TrainedModelError(f"--point {point!r}: lr, epoch and alpha are numbers") from None
        if method is None:
            raise TrainedModelError("--point lr=...: say which method's point with --method")
        found = [p for p in fr["points"] if p["method"] == method and p["peft"] in peft
                 and p["learning_rate"] == want["learning_rate"] and p["epoch"] == want["epoch"]
                 and p.get("alpha", 1.0) == want["alpha"]]
        if len(found) != 1:
            have = sorted({point_label(p) for p in fr["points"] if p["method"] == method})
            raise TrainedModelError(f"--point {point!r}: " + ("both LoRA and full fine-tuning were swept: add "
                                    "finetuning=lora|full" if found else f"no such {method} point; the sweep has: "
                                    + ("; ".join(have) or f"no {method} point")))
        p = found[0]
    if p["method"] == BASE:
        raise TrainedModelError(f"the point is the untrained base model ({cfg.model}); use it directly")
    top = max(fr["grid"]["epochs"])
    tuning_seed, seeds = fr.get("seed"), fr.get("seeds") or [fr.get("seed")]
    if seed is not None and seed not in seeds:
        raise TrainedModelError(f"--seed {seed}: the sweep trained at seeds {', '.join(map(str, seeds))}")
    seed = seeds[0] if seed is None else seed
    c = dataclasses.replace(cfg, method=p["method"], learning_rate=p["learning_rate"], use_peft=bool(p["peft"]),
                            num_train_epochs=top, seed=seed if seed is not None else cfg.seed)
    tm = TrainedModel(run, c, p["method"], seed,
                      RunDir(sweep_run_dir(run.path, p["learning_rate"], p["peft"], seed, tuning_seed)),
                      point=p, point_dir=sweep_model_dir(run.path, p, top, seed, tuning_seed))
    check_finished(tm)
    return tm


def run_config(run: RunDir) -> S3FTConfig:
    """The config the run's manifest records (keys this version does not know are left out),
    with output_dir the run's folder as it is now (a run directory may have been moved)."""
    path = run / MANIFEST
    if not run.path.exists():
        raise TrainedModelError(f"run directory {run.path} does not exist")
    if not run.path.is_dir():
        raise TrainedModelError(f"{run.path} is not a folder; give an s3ft run directory (the output_dir of `s3ft run` "
                                "or `s3ft compare`)")
    if not path.is_file():
        raise TrainedModelError(f"{run.path} is not an s3ft run directory: it has no {MANIFEST}")
    m, problem = read_manifest(path)
    if problem or not is_run_manifest(m):
        raise TrainedModelError(f"{path}: not an s3ft manifest" + (f" ({problem})" if problem else ""))
    config = m.get("config")
    if not isinstance(config, dict):
        raise TrainedModelError(f"{path} records no config: the run never started its stages")
    try:
        cfg = S3FTConfig(**{k: v for k, v in config.items() if k in FIELDS})
    except TypeError as e:
        raise TrainedModelError(f"{path}: its config cannot be read ({e})") from None
    return dataclasses.replace(cfg, output_dir=str(run.path))


def find_trained(run_dir: str | Path, method: str | None = None, seed: int | None = None) -> TrainedModel:
    """The finished fine-tuned model of `run_dir` for `method` (default: the run's method; in an
    `s3ft compare` run the only trained method, or the recipe's `method` when it was trained) and,
    in an `s3ft compare` run, training `seed` (needed when there are several)."""
    run = RunDir(run_dir)
    cfg = run_config(run)
    seeds = sorted(int(p.name[5:]) for p in run.path.glob("seed-*") if p.is_dir() and p.name[5:].isdigit())
    compare = (run / "compare.json").is_file() or bool(seeds)
    trained = [m for m in cfg.methods if m in METHODS] if compare else [cfg.method]
    if method is None:
        if compare and cfg.method not in trained:
            if len(trained) != 1:
                raise TrainedModelError(f"{run.path} is an `s3ft compare` run of {', '.join(trained) or 'no trained method'}: "
                                        f"say which model with --method ({'|'.join(trained)})")
            method = trained[0]
        else:
            method = cfg.method
    if method == BASE:
        raise TrainedModelError(f"--method base is the untrained base model ({cfg.model}); use it directly, "
                                f"or name a fine-tuned method ({', '.join(trained)})")
    if method not in METHODS:
        raise TrainedModelError(f"--method {method!r}: not a training method; one of {', '.join(METHODS)}")
    if seed is not None and not compare:
        raise TrainedModelError(f"--seed {seed}: {run.path} is an `s3ft run` directory (one model per method); "
                                "--seed picks a training seed of an `s3ft compare` run")
    if compare and not (run / method / "model").exists():
        with_model = [k for k in seeds if (run / f"seed-{k}" / method / "model").exists()]
        if seed is None:
            if len(with_model) != 1:
                found = (f"models for seeds {', '.join(map(str, with_model))}" if with_model else
                         f"no {method} model under {run.path}/seed-*/ (methods: {', '.join(trained)})")
                raise TrainedModelError(f"{run.path} is an `s3ft compare` run with {found}: "
                                        + ("say which with --seed N" if with_model else "train it first"))
            seed = with_model[0]
        method_run = RunDir(run / f"seed-{seed}")
        if not method_run.path.is_dir():
            raise TrainedModelError(f"{method_run.path} does not exist: the run has seeds "
                                    f"{', '.join(map(str, seeds)) or 'none yet'}")
        cfg = dataclasses.replace(cfg, seed=seed)
    else:
        method_run = run
    tm = TrainedModel(run, dataclasses.replace(cfg, method=method), method, seed, method_run)
    check_finished(tm)
    return tm


def check_finished(tm: TrainedModel) -> None:
    """The model folder exists, holds a model, and its training stage is recorded as done."""
    model_dir, stage = tm.model_dir, f"train.{tm.method}"
    rec = tm.method_run.stage_record(stage) or {}
    status = rec.get("status")
    if status != "done":
        if not model_dir.exists() and status is None:
            raise TrainedModelError(f"{model_dir} does not exist: the run has no trained {tm.method} model; "
                                    f"train it first (`s3ft run RECIPE --method {tm.method}` or `s3ft train RECIPE`)")
        raise TrainedModelError(f"{model_dir} is not finished: its training stage ({stage} in "
                                f"{tm.method_run / MANIFEST}) is {status or 'not recorded'} - still running, or "
                                "interrupted; run the same command again to finish it")
    if not model_dir.is_dir():
        raise TrainedModelError(f"{model_dir} is missing although {stage} is recorded as done; train it again "
                                "(the same command with --force train)")
    if not ((model_dir / "adapter_config.json").is_file() or (model_dir / "config.json").is_file()):
        raise TrainedModelError(f"{model_dir} holds no model (neither adapter_config.json nor config.json)")
    if pruned_record(model_dir):
        raise TrainedModelError(f"{model_dir} was pruned (`s3ft prune`): the run's results on it are kept, its weights "
                                "are not; to make it again, remove the folder and run the run's command again")
