"""`s3ft compare`: every method from one shared generation / judging / paraphrase pass,
trained with identical hyperparameters per seed, evaluated the same way, then reported.

    <output_dir>/                      shared: own answers, k samples, judgments, paraphrases,
                                       likelihoods, training sets, base model evaluations
                                       (in-domain, cross-task, general)
    <output_dir>/seed-<k>/<method>/    the adapter of each method for training seed k
    <output_dir>/seed-<k>/eval/ ...    its evaluations
    <output_dir>/logprob.jsonl         Figure 2: log p(response | prompt) under the base model
    <output_dir>/compare.json          everything the report is built from (written after each seed)
    <output_dir>/report/               report.md, report.html, plots/*.png
    <output_dir>/audit/                targets.jsonl.gz: every method's training targets; answers.jsonl.gz:
                                       every model's evaluation answers with their verdicts
"""
from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from s3ft import pipeline
from s3ft.config import ConfigError, S3FTConfig
from s3ft.evaluation import paired, paired_scores
from s3ft.forgetting import general_scores
from s3ft.methods import BASE, paraphrase_scope
from s3ft.runs import RunDir, file_fingerprint, gzip_text, read_jsonl, write_json
from s3ft.session import Session
from s3ft.stages.common import log
from s3ft.stages.drift import SETS as DRIFT_SETS
from s3ft.stages.evaluate import SPAN_JUDGES
from s3ft.stages.logprob import logprob


def methods_of(cfg: S3FTConfig) -> list[str]:
    """The recipe's methods in order, without repeats (names are checked when the recipe loads)."""
    return list(dict.fromkeys(cfg.methods))


def seeds_of(cfg: S3FTConfig) -> list[int]:
    return list(cfg.seeds) or [cfg.seed]


def tune_seed(cfg: S3FTConfig) -> int:
    """The training seed of the tuning trials: tune_seed, else the first of the seeds."""
    return cfg.tune_seed if cfg.tune_seed is not None else seeds_of(cfg)[0]


def tuning_candidates(cfg: S3FTConfig) -> tuple[list[float], list[float]] | None:
    """(learning rates, epoch counts) to try, None when no tuning is asked for; a bad tuning
    setup fails here, before any work."""
    lrs, eps = list(cfg.tune_learning_rates), list(cfg.tune_epochs)
    if not lrs and not eps:
        return None
    if cfg.tune_split == cfg.eval_split:
        raise ConfigError(f"tune_split must differ from eval_split ({cfg.eval_split!r}): "
                          "hyperparameters chosen on the test split would flatter every method")
    return lrs or [cfg.learning_rate], eps or [cfg.num_train_epochs]


def tune(s: Session, seed: int) -> dict[str, Any] | None:
    """Choose the learning rate and the epoch count once, for SFT, on the tuning split.

    Each learning rate in `tune_learning_rates` is tried at the first of `tune_epochs`; then the
    other epoch counts are tried at the best learning rate (a coordinate search: |lr| + |epochs| - 1
    trainings instead of |lr| x |epochs|). Every candidate trains SFT (gold targets) on the
    training set with training seed `seed` and is scored by the task's judge on `tune_split`; the
    highest accuracy wins, ties going to the earlier candidate. Trials live in <output_dir>/tune/
    and resume like any stage. Returns None when no tuning is asked for."""
    cfg = s.cfg
    candidates = tuning_candidates(cfg)
    if candidates is None:
        return None
    lrs, eps = candidates
    trials: list[dict[str, Any]] = []

    def trial(lr: float, ep: float) -> dict[str, Any]:
        ts = s.derive(seed_dir=str(s.run.path / "tune" / f"lr{lr:g}-epochs{ep:g}"), learning_rate=lr,
                      num_train_epochs=ep, seed=seed, eval_split=cfg.tune_split, eval_size=cfg.tune_size)
        model_dir = pipeline.trained_model(ts, "sft")
        acc = pipeline.in_domain(ts, "sft", str(model_dir), file_fingerprint(model_dir), ts.method_run)
        ts.models.release(str(model_dir))
        t = {"learning_rate": lr, "num_train_epochs": ep, "accuracy": acc}
        trials.append(t)
        log(f"tune: lr {lr:g}, {ep:g} epochs -> {cfg.tune_split} accuracy {acc['accuracy']}% ({acc['k']}/{acc['n']})")
        return t

    def best(ts: list[dict[str, Any]]) -> dict[str, Any]:
        return max(ts, key=lambda t: (t["accuracy"]["accuracy"], -ts.index(t)))

    lr_trials = [trial(lr, eps[0]) for lr in lrs]
    chosen_lr = best(lr_trials)["learning_rate"]
    ep_trials = [next(t for t in lr_trials if t["learning_rate"] == chosen_lr)] + [trial(chosen_lr, ep) for ep in eps[1:]]
    chosen = best(ep_trials)
    out = {"method": "sft", "split": cfg.tune_split, "seed": seed, "trials": trials,
           "chosen": {"learning_rate": chosen["learning_rate"], "num_train_epochs": chosen["num_train_epochs"]}}
    log(f"tune: chose learning_rate {chosen['learning_rate']:g}, num_train_epochs {chosen['num_train_epochs']:g} "
        f"for every method")
    return out


def reuse_tuned_sft(s: Session, tuning: dict[str, Any], ss: Session) -> None:
    """The chosen tuning trial is the SFT run of the tuning seed (same rows, hyperparameters and
    seed): copy it into that seed's directory instead of training it again."""
    ch = tuning["chosen"]
    copy_training(RunDir(s.run.path / "tune" / f"lr{ch['learning_rate']:g}-epochs{ch['num_train_epochs']:g}"),
                  ss.method_run, "sft", f"seed {ss.cfg.seed}: the chosen tuning trial")


def copy_training(src: RunDir, dst: RunDir, method: str, what: str) -> None:
    """Copy `method`'s finished training run from run folder `src` into `dst` (its model, kept
    epochs, metrics and log) with its stage record, instead of training the same run again. The
    train stage accepts the copy only when the record's fingerprint is the one it would train
    under (same rows, hyperparameters, seed and kept epochs); otherwise it trains as usual. A
    source whose weights were pruned is not copied."""
    import shutil

    from s3ft.runs import pruned_record
    from s3ft.training import EPOCHS

    name, run = f"train.{method}", src.path / method
    rec = src.stage_record(name)
    if not rec or rec.get("status") != "done" or dst.stage_record(name) or not (run / "model").is_dir():
        return
    kept = [d for d in (run / EPOCHS).glob("*") if d.is_dir()] if (run / EPOCHS).is_dir() else []
    if any(pruned_record(d) for d in [run / "model", *kept]):
        return
    (dst.path / method).mkdir(parents=True, exist_ok=True)
    for folder in ("model", EPOCHS):
        if (run / folder).is_dir():
            shutil.copytree(run / folder, dst.path / method / folder, dirs_exist_ok=True)
    for f in ("train_metrics.json", "train_log.jsonl"):
        if (run / f).exists():
            shutil.copy2(run / f, dst.path / method / f)
    dst.set_stage(name, **{**rec, "copied_from": str(run)})
    log(f"train ({method}, {what}): copied from {run}")


def remake_pruned(root: Path, work: Callable[[], Any]) -> Any:
    """`work()`; when it needs a model of the run whose weights `s3ft prune` removed (a run
    resumed from a pruned copy before every result on that model was in), that folder is removed,
    so that the stage that made it (training, an interpolation) makes it again, and `work` runs
    again. The stages already done on the model stay up to date when the new one is the same."""
    import shutil

    from s3ft.models import PrunedModelError

    removed: set[Path] = set()
    while True:  # a model, the kept epoch it is interpolated from, ...: each folder at most once
        try:
            return work()
        except PrunedModelError as e:
            path = Path(e.path).resolve()
            if not path.is_relative_to(Path(root).resolve()) or path in removed:
                raise
            log(f"{e.path} was pruned and is needed again: making it again")
            shutil.rmtree(path)
            removed.add(path)


def comparison_run_kept_epochs(cfg: S3FTConfig, seed: int, tuned: bool) -> tuple[int, ...] | None:
    """When the sweep trains at the per-seed comparison's own settings (its learning rate, LoRA or
    full, seed, and largest epoch count = num_train_epochs), the comparison's training run of that
    seed is the sweep's run too: it keeps the sweep's smaller epochs, and the sweep copies it
    (copy_training) rather than training it again. Returns those epochs, or None when the runs
    differ (or the settings were tuned: the tuning trial is the run copied then)."""
    grid = sweep_grid(cfg)
    if tuned or not grid or seed not in grid["seeds"] or cfg.learning_rate not in grid["learning_rates"] \
            or cfg.use_peft not in grid["peft"] or max(grid["epochs"]) != cfg.num_train_epochs:
        return None
    return tuple(int(e) for e in grid["epochs"] if e != cfg.num_train_epochs)


def machine() -> str:
    import os

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__}"


def stage_seconds(root) -> dict[str, float]:
    """Seconds spent in finished stages under a compare run, summed over every manifest and grouped
    as shared pass (incl. the base model's evaluation), tuning, each seed and the frontier sweep. A study resumed
    across several invocations is timed by this sum; a resumed stage counts from its last start
    (time spent before an interruption is not in it, whether that work was kept or lost)."""
    root = Path(root)
    out: dict[str, float] = {}
    for man in sorted(root.rglob("manifest.json")):
        part = man.relative_to(root).parts[0]
        group = part if part.startswith("seed-") or part in ("tune", "sweep") else "shared"
        for rec in json.loads(man.read_text()).get("stages", {}).values():
            if rec.get("status") == "done" and isinstance(rec.get("seconds"), (int, float)) and not rec.get("copied_from"):
                out[group] = round(out.get(group, 0.0) + rec["seconds"], 1)
    return out


def cross_session(s: Session, task: str) -> Session:
    """The session that evaluates a model on another built-in task's test split (its own judge
    and answer length)."""
    return s.derive(seed_dir=s.seed_dir, task=task, eval_split="test", eval_size=s.cfg.cross_task_size, judge=None,
                    max_new_tokens=None, data_files={})


INSTRUMENTS = ("general_benchmarks", "ifeval", "drift")


def evaluate_model(s: Session, name: str, model: str, model_fp: str, run: RunDir,
                   instruments: tuple[str, ...] = INSTRUMENTS,
                   drift_sets: Sequence[str] = DRIFT_SETS) -> dict[str, Any]:
    """In-domain, cross-task and forgetting results of one model (`instruments`: which of the
    general benchmarks, IFEval and drift to run, by their recipe keys, where the recipe asks for
    them; `drift_sets`: the drift stage's sets of base-model answers); the model is let go after
    them (unless it is the base model)."""
    out: dict[str, Any] = {"in_domain": pipeline.in_domain(s, name, model, model_fp, run), "cross_task": {}}
    for task in s.cfg.cross_tasks:
        out["cross_task"][task] = pipeline.in_domain(cross_session(s, task), f"{task}.{name}", model, model_fp, run)
    out["general"] = (pipeline.general_benchmarks(s, name, model, model_fp, run)
                      if "general_benchmarks" in instruments else {})
    out["ifeval"] = pipeline.instruction_following(s, name, model, model_fp, run) if "ifeval" in instruments else {}
    out["drift"] = (pipeline.drift_from_base(s, name, model, model_fp, run, drift_sets)
                    if "drift" in instruments else {})
    if model != s.cfg.model:
        s.models.release(model)
    return out


def logprob_analysis(s: Session) -> list[dict[str, Any]]:
    """The logprob stage over the shared pass's judged own answers and paraphrases."""
    c = s.cfg
    judged, para = s.run / "own_judged.jsonl", s.run / "paraphrase.jsonl"
    rows = logprob(s.stages(), s.train_examples(), judged if judged.exists() else None, para if para.exists() else None,
                   lambda: s.models.scorer(c.model), s.model_id(), c.resolved_dtype(), c.rows_per_call("logprob"))
    if c.backend != "hf":
        s.models.release(c.model)  # the model loaded for this; the backend's generator is made again when needed
    return rows


def run_compare(cfg: S3FTConfig, force: set[str] | None = None) -> dict[str, Any]:
    """Every method of the recipe from one shared data pass, trained and evaluated per seed;
    compare.json and the report. `force`: stage names or groups to re-run (as for `s3ft run`)."""
    methods = methods_of(cfg)
    seeds = seeds_of(cfg)
    trained = [m for m in methods if m != BASE]
    if cfg.paraphrase_scope == "auto":  # one paraphrase pass that serves every method asked for
        cfg = dataclasses.replace(cfg, paraphrase_scope=paraphrase_scope(trained))
    t0 = time.time()
    s = Session(cfg, force=set(force or ()))
    s.shared.methods = tuple(trained)  # one data pass (own answers, samples, paraphrases, likelihoods) for all
    pipeline.preflight(s)
    if tuning_candidates(cfg):  # fail on a bad tuning setup before the shared pass; the split must load
        s.examples(cfg.tune_split, cfg.tune_size)
    if sweep_grid(cfg):  # the same for the sweep's choice split
        s.examples(cfg.tune_split, cfg.eval_size)
    for task in cfg.cross_tasks:
        cross_session(s, task).eval_examples()  # fail early on a bad cross task
    root = s.run.path
    compare_path = root / "compare.json"
    with s.run.lock():
        s.write_manifest()
        # 1. the shared pass: own answers, judgments, paraphrases, every method's training set
        mix = {}
        for m in trained:
            pipeline.training_set(s, m)
            mix[m] = s.run.stage_record(f"build.{m}")["mix"]
        # 2. learning rate and epochs, chosen once for SFT on the tuning split, then frozen for every method
        tuning = remake_pruned(root, lambda: tune(s, tune_seed(cfg)))
        if tuning:
            cfg = dataclasses.replace(cfg, **tuning["chosen"])
            s = s.derive(**tuning["chosen"])
        # 3. the base model, evaluated once (greedy decoding does not depend on the seed)
        base = evaluate_model(s, BASE, cfg.model, s.model_id(), s.run) if BASE in methods else None
        lp = logprob_analysis(s) if cfg.logprob_analysis else []
        result: dict[str, Any] = {
            "task": cfg.task, "model": cfg.model, "judge": s.judge_name, "eval_split": cfg.eval_split,
            "methods": methods, "seeds": seeds, "general_limit": cfg.general_limit,
            "general_benchmarks": cfg.general_benchmarks, "cross_tasks": cfg.cross_tasks,
            "train_examples": len(s.train_examples()), "eval_examples": len(s.eval_examples()),
            "machine": machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "hyperparameters": {k: v for k, v in cfg.train_knobs().items() if k not in ("model", "seed")},
            "tuning": tuning,
            "per_seed": {},
            "logprob": {k: [r for r in lp if r["kind"] == k] for k in ("gold", "paraphrase", "self")} if lp else {},
        }
        if compare_path.exists():  # keep seeds finished by an earlier, interrupted run
            result["per_seed"] = {k: v for k, v in json.loads(compare_path.read_text()).get("per_seed", {}).items()
                                  if int(k) in seeds}
        # 4. every method, every seed: train, evaluate; record the seed as soon as it is done
        for seed in seeds:
            ss = s.derive(seed_dir=str(root / f"seed-{seed}"), seed=seed)
            if tuning and seed == tuning["seed"] and "sft" in trained:
                reuse_tuned_sft(s, tuning, ss)
            log(f"seed {seed}: training and evaluating {', '.join(trained) or 'nothing'}")
            per: dict[str, Any] = {"mix": mix, "in_domain": {}, "cross_task": {}, "general": {}}
            evals = {BASE: base} if base else {}
            kept = comparison_run_kept_epochs(cfg, seed, bool(tuning)) or ()
            for m in trained:
                def train_and_evaluate(m=m, ss=ss) -> dict[str, Any]:
                    model_dir = pipeline.trained_model(ss, m, keep_epochs=kept)
                    return evaluate_model(ss, m, str(model_dir), file_fingerprint(model_dir), ss.method_run)

                evals[m] = remake_pruned(root, train_and_evaluate)
            for name, ev in evals.items():
                per["in_domain"][name] = ev["in_domain"]
                for task, acc in ev["cross_task"].items():
                    per["cross_task"].setdefault(task, {})[name] = acc
                if ev["general"]:
                    per["general"][name] = ev["general"]
                if ev.get("ifeval"):
                    per.setdefault("ifeval", {})[name] = {k: ev["ifeval"][k] for k in ("ifeval", "style")}
                if ev.get("drift"):
                    per.setdefault("drift", {})[name] = ev["drift"]
            per["paired"] = paired_results(s.run.path, ss.method_run.path, trained)
            per["forgetting"] = forgetting_results(s.run.path, ss.method_run.path, trained)
            result["per_seed"][str(seed)] = per
            result["wall_seconds"] = round(time.time() - t0, 1)
            result["stage_seconds"] = stage_seconds(root)
            write_json(compare_path, result)
            log(f"seed {seed} done: {compare_path}")
        if sweep_grid(cfg):  # 5. the learning-forgetting sweep (docs/compare.md#frontiers)
            shared = [k for k in seeds if comparison_run_kept_epochs(cfg, k, bool(tuning)) is not None]
            result["frontier"] = sweep(s, trained, tune_seed(cfg), shared)
            write_json(compare_path, result)
        result["wall_seconds"] = round(time.time() - t0, 1)
        result["stage_seconds"] = stage_seconds(root)
        result["audit"] = write_audit(s, trained, seeds)
        write_json(compare_path, result)
        from s3ft.report import write_report

        paths = write_report(result, root / "report")
        log(f"report: {paths.get('html', root / 'report')}")
        return result


def sweep_grid(cfg: S3FTConfig) -> dict[str, list] | None:
    """The sweep the recipe asks for (learning rates, epochs, lora / full, alphas), None when none;
    a recommendation chosen on the test split is refused here, before any work."""
    if not (cfg.sweep_learning_rates or cfg.sweep_epochs or cfg.sweep_finetuning or cfg.interpolation_alphas
            or cfg.sweep_seeds):
        return None
    if cfg.tune_split == cfg.eval_split:
        raise ConfigError(f"tune_split must differ from eval_split ({cfg.eval_split!r}): the sweep's recommendation is "
                          "chosen on tune_split and reported on the test split")
    return {"learning_rates": list(dict.fromkeys(cfg.sweep_learning_rates)) or [cfg.learning_rate],
            "epochs": sorted(set(cfg.sweep_epochs)) or [cfg.num_train_epochs],
            "peft": [v == "lora" for v in dict.fromkeys(cfg.sweep_finetuning)] or [cfg.use_peft],
            "alphas": sorted(set(cfg.interpolation_alphas)),
            "seeds": list(dict.fromkeys(cfg.sweep_seeds)) or [tune_seed(cfg)]}


def sweep(s: Session, trained: list[str], seed: int, shared: Sequence[int] = ()) -> dict[str, Any]:
    """The learning-forgetting sweep (docs/compare.md#frontiers): every method x learning rate x
    lora / full trained once per sweep seed (`seed`, the tuning seed, in folders without a
    -seed<k> suffix), for the largest epoch count; each kept
    epoch's model and its interpolations toward the base (s3ft.interpolate) evaluated as a point
    - in-domain on the test split and on tune_split, and the recipe's forgetting measures.
    Everything lives under <output_dir>/sweep/ and resumes stage by stage; the points are written
    to sweep/points.jsonl as each is done. `shared`: the seeds whose per-seed comparison run is a
    run of the sweep too (comparison_run_kept_epochs), copied instead of trained again; its final
    model's point takes its test answers and forgetting measures from the comparison (seed-<k>/).
    Returns compare.json's `frontier` section."""
    from s3ft import frontier
    from s3ft.runs import write_jsonl

    cfg, root = s.cfg, s.run.path
    grid = sweep_grid(cfg)
    top = max(grid["epochs"])
    points_path = root / "sweep" / "points.jsonl"
    done = {(r["split"], r.get("seed", seed), *frontier.key(r)): r for r in read_jsonl(points_path)}

    taken = set(cfg.sweep_measures or frontier.MEASURES)  # the measures of every point; their instruments
    instruments = tuple(i for i in INSTRUMENTS if any(frontier.INSTRUMENT[m] == i for m in taken))
    drift_sets = tuple(v for m, v in frontier.DRIFT_SET.items() if m in taken)  # drift scores only these

    def record(meta: dict[str, Any], ps: Session, name: str, model: str, fp: str,
               evaluated_as: tuple[Session, str] | None = None) -> None:
        """`evaluated_as`: the per-seed comparison's session and name for the same model (the run
        the sweep copied), whose test evaluations and forgetting measures are this point's."""
        vs = ps.derive(seed_dir=ps.seed_dir, eval_split=cfg.tune_split)
        val = pipeline.in_domain(vs, f"{cfg.tune_split}.{name}", model, fp, ps.method_run)
        test_name = name
        if model == cfg.model:  # (its test evaluations are the comparison's own, in the run's root)
            ev, test_run = evaluate_model(s, BASE, model, fp, s.run), s.run
            measures = {m: 0.0 if getattr(cfg, i) else None for m, i in frontier.INSTRUMENT.items()}  # it forgets nothing
            intervals: dict[str, list[float]] = {}
        else:
            es, test_name = evaluated_as or (ps, name)  # (the comparison took every drift set)
            ev = evaluate_model(es, test_name, model, fp, es.method_run, instruments,
                                DRIFT_SETS if evaluated_as else drift_sets)
            test_run = es.method_run
            forgetting = forgetting_results(root, es.method_run.path, [test_name]).get(test_name, {})
            measures = frontier.measures_of(forgetting, ev["drift"])
            intervals = frontier.intervals_of(forgetting, ev["drift"])
        # only the measures asked for (a point measured before sweep_measures was narrowed keeps its IFEval and
        # benchmark files; its drift is taken again on the sets still asked for)
        measures = {m: v if m in taken else None for m, v in measures.items()}
        intervals = {m: v for m, v in intervals.items() if m in taken}
        point_seed = seed if model == cfg.model else ps.cfg.seed
        for split, acc, answers in ((cfg.eval_split, ev["in_domain"], test_run / "eval" / f"{test_name}.jsonl"),
                                    (cfg.tune_split, val, ps.method_run / "eval" / f"{cfg.tune_split}.{name}.jsonl")):
            done[(split, point_seed, *frontier.key(meta))] = {
                **meta, "split": split, "seed": point_seed, "in_domain": acc["accuracy"], "ci95": acc.get("ci95"),
                "n": acc["n"], **measures, "forgetting_ci95": intervals, "answers": str(Path(answers).relative_to(root))}
        write_jsonl(points_path, list(done.values()))

    base_s = s.derive(seed_dir=str(root / "sweep"))
    record({"method": BASE, "learning_rate": None, "epoch": 0, "peft": None, "alpha": 0.0}, base_s, BASE, cfg.model,
           s.model_id())
    for k in grid["seeds"]:
        for lr in grid["learning_rates"]:
            for peft in grid["peft"]:
                ts = s.derive(seed_dir=str(sweep_run_dir(root, lr, peft, k, seed)), learning_rate=lr,
                              num_train_epochs=top, use_peft=peft, seed=k)
                same = k in shared and lr == cfg.learning_rate and peft == cfg.use_peft
                comparison = s.derive(seed_dir=str(root / f"seed-{k}"), seed=k) if same else None  # (run_compare's)
                for m in trained:
                    if same:
                        copy_training(RunDir(root / f"seed-{k}"), ts.method_run, m, f"sweep lr {lr:g}, seed {k}: "
                                      "the per-seed comparison's run")
                    remake_pruned(root, lambda ts=ts, m=m: sweep_points(ts, m, grid, top, record, seed, comparison))
    points = list(done.values())
    golds = None
    if s.judge_name in SPAN_JUDGES:  # SQuAD exact match and F1 beside the judge's accuracy at every point
        from s3ft.judges.qa import gold_answers

        golds = {split: {e.id: gold_answers(e) for e in s.examples(split, cfg.eval_size)}
                 for split in (cfg.eval_split, cfg.tune_split)}
    return frontier_results(points, cfg, seed, grid, root, golds)


def sweep_points(ts: Session, m: str, grid: dict[str, list], top: float, record: Callable[..., None],
                 tuning_seed: int, comparison: Session | None = None) -> None:
    """One method's training run of the sweep (ts: its session, at one of the sweep's seeds) and
    its points: each kept epoch's model and its interpolations toward the base, each recorded as
    soon as it is done. `comparison`: the per-seed comparison's session when the run is its run,
    copied (copy_training): while the final model is the same bytes as the comparison's, its test
    evaluations and forgetting measures are taken there, where they were taken already."""
    from s3ft.frontier import point_name
    from s3ft.interpolate import interpolate
    from s3ft.runs import fingerprint

    cfg, root = ts.cfg, ts.run.path
    lr, peft = cfg.learning_rate, cfg.use_peft
    pipeline.trained_model(ts, m, keep_epochs=tuple(int(e) for e in grid["epochs"] if e != top))
    for e in grid["epochs"]:
        meta = {"method": m, "learning_rate": lr, "epoch": e, "peft": peft}
        path = sweep_model_dir(root, {**meta, "alpha": 1.0}, top, cfg.seed, tuning_seed)
        fp = file_fingerprint(path)
        shares_model = (comparison is not None and e == top
                        and (ts.method_run.stage_record(f"train.{m}") or {}).get("copied_from")
                        and file_fingerprint(comparison.method_run.path / m / "model") == fp)  # (not once made again)
        record({**meta, "alpha": 1.0}, ts, point_name(m, e), str(path), fp, (comparison, m) if shares_model else None)
        for a in grid["alphas"]:
            name = point_name(m, e, a)
            dst = sweep_model_dir(root, {**meta, "alpha": a}, top, cfg.seed, tuning_seed)
            ts.stages(ts.method_run).run_stage(
                f"interpolate.{name}", fingerprint("interpolate", ts.model_id(), fp, a), [dst],
                lambda info, path=path, dst=dst, a=a: interpolate(cfg.model, path, dst, a, cfg.revision,
                                                                  cfg.trust_remote_code), resumable=False)
            record({**meta, "alpha": a}, ts, name, str(dst), file_fingerprint(dst))


def sweep_run_dir(root: Path, learning_rate: float, peft: bool, seed: int | None = None,
                  tuning_seed: int | None = None) -> Path:
    """The folder of the sweep's training runs at one learning rate, LoRA or full, and training
    `seed` (a seed folder: <method>/model, manifest.json, eval/ ...): the tuning seed's runs (and
    seed None) in lr<LR>-<lora|full>/, any other sweep seed's in lr<LR>-<lora|full>-seed<k>/."""
    suffix = f"-seed{seed}" if seed is not None and seed != tuning_seed else ""
    return Path(root) / "sweep" / f"lr{learning_rate:g}-{'lora' if peft else 'full'}{suffix}"


def sweep_model_dir(root: Path, point: dict[str, Any], top_epoch: float, seed: int | None = None,
                    tuning_seed: int | None = None) -> Path:
    """The model of a sweep point (frontier.KEY): the run's final model at the largest epoch
    count `top_epoch`, the kept model of a smaller epoch, or an interpolation toward the base;
    `seed`, `tuning_seed` as for sweep_run_dir."""
    from s3ft.training import epoch_dir

    method_dir = sweep_run_dir(root, point["learning_rate"], point["peft"], seed, tuning_seed) / point["method"]
    e, a = point["epoch"], point.get("alpha", 1.0)
    if a < 1:
        return method_dir / "interpolated" / f"epoch-{e:g}-a{a:g}"
    return method_dir / "model" if e == top_epoch else epoch_dir(method_dir, e)


def frontier_results(points: list[dict[str, Any]], cfg: S3FTConfig, seed: int, grid: dict[str, list],
                     root: Path, golds: Mapping[str, Mapping[str, list[str]]] | None = None) -> dict[str, Any]:
    """compare.json's `frontier` section from the sweep's points: per forgetting measure that was
    taken, each method's Pareto front on the test split and the matched comparisons - read off
    the fronts (`matched_forgetting`, `matched_score`: interpolated, for the plot's reading) and
    chosen on tune_split then reported on test with intervals (`matched`: each method's chosen
    point and the reference method against each other on the same test questions, paired); the
    recommendation within the recipe's budget (chosen on tune_split). golds ({split: {question id:
    gold answers}}, span-answer tasks): every point also gets SQuAD exact match and F1 with
    intervals."""
    from s3ft import frontier
    from s3ft.evaluation import accuracy_over_seeds_ci, paired_over_seeds, span_scores_over_seeds

    def answers(p: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return {k: read_jsonl(root / f) for k, f in (p.get("answers_by_seed") or {}).items()}

    # only the points of the grid asked for now (a rerun with fewer seeds, rates, ... keeps its files)
    points = [p for p in points if p["method"] == BASE or (
        p["method"] in cfg.methods and p.get("seed", seed) in (grid.get("seeds") or [seed])
        and p["learning_rate"] in grid["learning_rates"]
        and p["epoch"] in grid["epochs"] and p["peft"] in grid["peft"] and p["alpha"] in [1.0, *grid["alphas"]])]
    points = frontier.average_seeds(points)
    for p in points:  # a point over several seeds: its interval over seeds and questions (two-level bootstrap)
        if len(p["seeds"]) > 1:
            p["ci95"] = accuracy_over_seeds_ci(answers(p))
        if golds and p.get("split") in golds:
            p.update(span_scores_over_seeds(answers(p), golds[p["split"]]))
    test = [p for p in points if p["split"] == cfg.eval_split]
    val = [p for p in points if p["split"] == cfg.tune_split]
    trained = [p for p in test if p["method"] != BASE]
    methods = list(dict.fromkeys(p["method"] for p in trained))
    ref = "s3ft" if "s3ft" in methods else (methods[0] if methods else None)
    out: dict[str, Any] = {"seed": seed, "seeds": grid.get("seeds", [seed]), "grid": grid, "split": cfg.eval_split,
                           "choice_split": cfg.tune_split, "points": test, "validation_points": val, "measures": {},
                           "reference": ref}

    def with_paired(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for r in rows:  # the reference's chosen point against each other method's, on the same test questions
            a = (r["choices"].get(ref) or {}).get("test")
            r["paired"] = {}
            for m, c in r["choices"].items():
                b = (c or {}).get("test")
                if m != ref and a and b and a.get("answers_by_seed") and b.get("answers_by_seed"):
                    r["paired"][m] = paired_over_seeds(answers(a), answers(b))
        return rows

    for measure in frontier.MEASURES:
        if not any(p.get(measure) is not None for p in trained):
            continue
        fs = frontier.fronts(trained, measure)
        vfs = frontier.fronts([p for p in val if p["method"] != BASE], measure)  # levels from the choice split
        levels = frontier.spread(frontier.budget_levels(vfs, measure), most=5)
        if cfg.forgetting_max is not None and cfg.forgetting_measure == measure:
            levels = sorted(set(levels) | {cfg.forgetting_max})
        matched = frontier.matched_choices(val, test, measure, levels,
                                           frontier.spread({p["in_domain"] for f in vfs.values() for p in f}, most=5))
        out["measures"][measure] = {"fronts": fs, "matched_forgetting": frontier.matched_forgetting(fs, measure),
                                    "matched_score": frontier.matched_score(fs, measure),
                                    "matched": {k: with_paired(v) for k, v in matched.items()}}
    if cfg.forgetting_max is not None:
        out["budget"] = {"measure": cfg.forgetting_measure, "maximum": cfg.forgetting_max}
        rec = out["recommendation"] = frontier.recommend(val, test, cfg.forgetting_measure, cfg.forgetting_max)
        base = next((p for p in test if p["method"] == BASE), None)
        if rec and rec["point"]["method"] != BASE and (rec["test"] or {}).get("answers_by_seed") and base \
                and base.get("answers_by_seed"):  # did the recommended point learn anything? On the same questions
            rec["vs_base"] = paired_over_seeds(answers(rec["test"]), answers(base))
    return out


def write_audit(s: Session, trained: list[str], seeds: list[int]) -> dict[str, str]:
    """What the numbers rest on, in two compact files under <output_dir>/audit/: every method's
    training targets (id, source, text, token count, stop reason, candidates passed over because
    they were cut off) and every model's evaluation answers with their verdicts (seed, model,
    task, id, response, correct, reason, stop reason). Returns their paths relative to the run."""
    from s3ft.models import load_tokenizer
    from s3ft.selection import completion_text

    root = s.run.path
    tok = load_tokenizer(s.cfg.model, **s.cfg.model_options())
    stops = {}
    for name in ("own_judged.jsonl", "paraphrase.jsonl"):
        stops[name] = {r["id"]: r.get("stop") for r in read_jsonl(root / name)}
    sample_stops = {r["id"]: [x.get("stop") for x in r["samples"]] for r in read_jsonl(root / "samples_judged.jsonl")}
    targets, answers = root / "audit" / "targets.jsonl.gz", root / "audit" / "answers.jsonl.gz"
    targets.parent.mkdir(parents=True, exist_ok=True)
    with gzip_text(targets) as f:
        for m in trained:
            for r in read_jsonl(root / f"train.{m}.jsonl"):
                src = {"self": "own_judged.jsonl", "paraphrase": "paraphrase.jsonl"}.get(r["source"])
                text = completion_text(r)  # (one assistant message, or text in older run directories)
                f.write(json.dumps({"method": m, "id": r["id"], "source": r["source"], "text": text,
                                    "tokens": len(tok(text, add_special_tokens=False)["input_ids"]),
                                    "stop": stops[src].get(r["id"]) if src else
                                    sample_stops[r["id"]][r["sample"]] if r["source"] == "sampled" else None,
                                    "cut_off": r.get("cut_off", [])}, ensure_ascii=False) + "\n")
    with gzip_text(answers) as f:
        folders = [(None, root)] + [(seed, root / f"seed-{seed}") for seed in seeds]
        for seed, folder in folders:
            for path in sorted((folder / "eval").glob("*.jsonl")):
                task, _, model = path.stem.rpartition(".")
                for r in read_jsonl(path):
                    f.write(json.dumps({"seed": seed, "model": model, "task": task or s.cfg.task, "id": r["id"],
                                        "response": r.get("response"), "correct": r.get("correct"), "reason": r.get("reason"),
                                        "stop": r.get("stop")}, ensure_ascii=False) + "\n")
    return {"targets": str(targets.relative_to(root)), "answers": str(answers.relative_to(root))}


def paired_results(root: Path, seed_dir: Path, trained: list[str]) -> dict[str, Any]:
    """S3FT against each other method on the same questions: in-domain (2x2 table, McNemar) and,
    where general benchmarks ran, their average score (paired bootstrap over the questions).
    Each trained method against the base model on the general benchmarks too: its forgetting,
    with an interval (`<method>_vs_base`). `root`: the compare run (base model); `seed_dir`: one
    seed's folder (trained models)."""
    out: dict[str, Any] = {}
    general = {m: general_scores(seed_dir, m) for m in trained} | {BASE: general_scores(root, BASE)}
    if "s3ft" in trained:
        a = read_jsonl(seed_dir / "eval" / "s3ft.jsonl")
        others = [m for m in trained if m != "s3ft"] + ([BASE] if (root / "eval" / "base.jsonl").exists() else [])
        for other in others:
            folder = root if other == BASE else seed_dir
            out[f"s3ft_vs_{other}"] = {"in_domain": paired(a, read_jsonl(folder / "eval" / f"{other}.jsonl"))}
            if general["s3ft"] and general[other]:
                out[f"s3ft_vs_{other}"]["general"] = paired_scores(general["s3ft"], general[other])
    if general[BASE]:
        for m in trained:
            if m != "s3ft" and general[m]:
                out[f"{m}_vs_base"] = {"general": paired_scores(general[m], general[BASE])}
    return out


def forgetting_results(root: Path, seed_dir: Path, trained: list[str]) -> dict[str, Any]:
    """Each trained model against the base model, read honestly (s3ft.forgetting): per general
    benchmark the base model's score against chance (informative or not) and the model's paired
    change with flips and MDE, the average change over the informative benchmarks; IFEval's
    paired changes; the style change. Empty parts are left out."""
    from s3ft import forgetting

    out: dict[str, Any] = {}
    base_ifeval = read_jsonl(root / "ifeval" / f"{BASE}.jsonl")
    base_style = (RunDir(root).stage_record(f"ifeval.{BASE}") or {}).get("style")
    for m in trained:
        part: dict[str, Any] = {}
        general = forgetting.general_reading(root, seed_dir, m)
        if general.get("benchmarks"):
            out["benchmarks"] = general.pop("benchmarks")
        part.update(general)
        rows = read_jsonl(seed_dir / "ifeval" / f"{m}.jsonl")
        if rows and base_ifeval:
            part["ifeval"] = forgetting.ifeval_change(rows, base_ifeval)
            style = (RunDir(seed_dir).stage_record(f"ifeval.{m}") or {}).get("style")
            if style and base_style:
                part["style"] = forgetting.style_change(style, base_style)
        if part:
            out[m] = part
    return out


def refresh_report(root: str | Path) -> Path:
    """Recompute the paired comparisons of a finished compare run from the files it kept (judged
    answers, general-benchmark samples) and write compare.json and the report again - for a run
    made before a comparison existed, without its models. Returns the report folder.
        python -c "from s3ft.compare import refresh_report; refresh_report('runs/squad-study')"
    """
    from s3ft.report import write_report

    root = Path(root)
    result = json.loads((root / "compare.json").read_text())
    trained = [m for m in result["methods"] if m != BASE]
    for seed, per in result["per_seed"].items():
        per["paired"] = paired_results(root, root / f"seed-{seed}", trained)
        per["forgetting"] = forgetting_results(root, root / f"seed-{seed}", trained)
    write_json(root / "compare.json", result)
    write_report(result, root / "report")
    return root / "report"
