"""General-ability benchmarks through lm-evaluation-harness, offline, over bundled data.

S3FT's claim is that fine-tuning on a task costs less general ability than SFT; these benchmarks
measure that ability before and after. `evaluate_general(model, benchmarks, ...)` runs the
standard lm-eval tasks over copies of the benchmark data shipped in `s3ft/data/`, so it needs no
hub access:

| benchmark | lm-eval task reproduced | split (bundled rows) | reported metric |
|---|---|---|---|
| `mmlu` | `mmlu` (57 subjects), 0-shot | test (14042) | acc |
| `mmlu_5shot` | `mmlu --num_fewshot 5` (first 5 dev questions of the subject) | test (14042) | acc |
| `truthfulqa_mc1` | `truthfulqa_mc1` (6-QA preamble) | validation (817) | acc |
| `truthfulqa_mc2` | `truthfulqa_mc2` | validation (817) | acc (probability mass on true answers) |
| `hellaswag` | `hellaswag`, 0-shot | validation (10042) | acc_norm |
| `arc_easy` | `arc_easy`, 0-shot | test (2376) | acc_norm |
| `arc_challenge` | `arc_challenge`, 0-shot | test (1172) | acc_norm |
| `winogrande` | `winogrande` (xl), 0-shot | validation (1267) | acc |

How: the task YAMLs in `s3ft/lm_eval_tasks/` `include:` the installed lm-eval's own YAMLs (so
prompts, choices, metrics and `!function` hooks are the standard ones, from the installed
version) and override only where the data comes from (`dataset_path: json` + `data_files`) and,
for MMLU, the points below. At run time the rows to evaluate are written as JSON lines into a
temporary folder, the YAMLs are completed with absolute paths and handed to lm-eval through a
`TaskManager(include_path=...)`, and one `HFLM` (base model, plus `peft=` for an adapter folder)
scores all benchmarks, one `simple_evaluate` call each (so each gets its own timing).

`limit`: a fixed, seeded subset per benchmark, not lm-eval's first-N (MMLU's first 100 rows are
all abstract algebra). Rows are drawn with `random.Random(f"s3ft-general:{source}:{seed}")`, so
the same seed gives the same questions for every model; `mmlu` and `mmlu_5shot` share their
questions, as do `truthfulqa_mc1` and `truthfulqa_mc2`. MMLU is stratified by subject:
each subject gets floor(limit * share) questions and the remaining slots go to distinct subjects
drawn with probability proportional to the fractional remainders (weighted sampling without
replacement), then each subject's questions are drawn uniformly. Selected rows keep the file's
order. The result records which rows (index in the bundled file) and how many were used.

Outputs in `output_dir`: `general.json` (everything, with lm-eval's version, limit and seed) and
`<benchmark>.jsonl`, one line per question: `row` (index in the bundled file, the key to pair
two models on), `doc_id` (lm-eval's index within the evaluated rows), `score` (the question's
value of the reported metric), `correct` (bool; null for `truthfulqa_mc2`, whose per-question
score is a probability mass, not right/wrong), `loglikelihoods` (one per choice), `prompt_hash`
(lm-eval's hash of the prompt: equal across models when the questions are) and, for MMLU,
`subject`.

Differences from the standard lm-eval tasks (also in `s3ft/data/README.md`):
- MMLU is ONE task (`s3ft_mmlu`) over all subjects instead of the `mmlu` group of 57 per-subject
  tasks. The per-subject description ("The following are multiple choice questions (with answers)
  about {subject}.") is a Jinja template over the row's `subject`, so every question's context is
  the standard one (a test compares them with the standard per-subject tasks). acc is the mean
  over all questions, which equals the standard group's size-weighted aggregate; the stderr is the
  plain standard error of that mean, not lm-eval's pooled per-subject stderr (slightly different).
- MMLU 5-shot: lm-eval draws few-shot examples per task, not per subject, so the five dev
  questions of each question's subject are stored in its row and rendered after the description
  (same text as lm-eval's `first_n` sampler + its few-shot format); lm-eval then runs it 0-shot
  and logs n-shot 0. The context strings equal the standard ones (tested).
  Checked once on the whole test set: all 14042 questions' 0- and 5-shot contexts, choices and
  targets equal those of lm-eval's 57 `mmlu_<subject>` tasks fed the same rows; and on
  SmolLM2-135M-Instruct over 100 seeded questions, s3ft_mmlu and the standard tasks gave equal
  prompt hashes and per-question results for 100/100 (loglikelihoods within 5e-6).
- Data come from bundled copies, not the hub (sources, counts and checks in each
  `s3ft/data/<name>/SOURCE.txt`): ARC rows are rebuilt in the hub layout with labels "A".."E"
  (the bundled export dropped ARC's own label letters/digits; only the answer's index is used, so
  nothing the model sees changes); TruthfulQA MC is the original (v0) `mc_task.json` converted as
  the hub's loading script does; MMLU, HellaSwag and WinoGrande rows are in the hub layout.
- With `limit`, a seeded (MMLU: stratified) subset instead of the first N rows.
- Values and stderrs are in percent. No chat template is applied (lm-eval's default, as in the
  usual leaderboard numbers), also for instruct models.

Run by hand: `python -m s3ft.general --model smollm2-135m-instruct --benchmarks mmlu,hellaswag
--limit 100 --output_dir runs/general`.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from s3ft.lm_eval_tasks import TASKS_DIR
from s3ft.lm_eval_tasks.convert import arc_row
from s3ft.runs import write_json, write_jsonl


@dataclass(frozen=True)
class Source:
    """A bundled data file and how its rows are handed to lm-eval."""

    file: tuple[str, ...]  # path under s3ft/data
    out: str  # file name the task YAMLs read (data_files)
    strata: str | None = None  # field to stratify a limited subset by
    convert: Callable[[dict], dict] | None = None


@dataclass(frozen=True)
class Benchmark:
    name: str
    task: str  # task name in s3ft/lm_eval_tasks/<task>.yaml
    source: str
    metric: str
    num_fewshot: int = 0


SOURCES: dict[str, Source] = {
    "mmlu": Source(("mmlu", "mmlu_test.jsonl.gz"), "mmlu_test.jsonl", strata="subject"),  # + dev, see prepare_tasks
    "truthfulqa": Source(("truthfulqa", "mc_task.jsonl.gz"), "truthfulqa.jsonl"),
    "hellaswag": Source(("hellaswag", "hellaswag_val.jsonl.gz"), "hellaswag.jsonl"),
    "arc_easy": Source(("arc", "ARC-Easy-test.jsonl.gz"), "arc_easy.jsonl", convert=arc_row),
    "arc_challenge": Source(("arc", "ARC-Challenge-test.jsonl.gz"), "arc_challenge.jsonl", convert=arc_row),
    "winogrande": Source(("winogrande", "winogrande_xl_dev.jsonl.gz"), "winogrande.jsonl"),
}
MMLU_DEV = ("mmlu", "mmlu_dev.jsonl.gz")

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("mmlu", "s3ft_mmlu", "mmlu", "acc"),
        Benchmark("mmlu_5shot", "s3ft_mmlu_5shot", "mmlu", "acc", num_fewshot=5),
        Benchmark("truthfulqa_mc1", "s3ft_truthfulqa_mc1", "truthfulqa", "acc"),
        Benchmark("truthfulqa_mc2", "s3ft_truthfulqa_mc2", "truthfulqa", "acc"),
        Benchmark("hellaswag", "s3ft_hellaswag", "hellaswag", "acc_norm"),
        Benchmark("arc_easy", "s3ft_arc_easy", "arc_easy", "acc_norm"),
        Benchmark("arc_challenge", "s3ft_arc_challenge", "arc_challenge", "acc_norm"),
        Benchmark("winogrande", "s3ft_winogrande", "winogrande", "acc"),
    )
}
BENCHMARK_NAMES = tuple(BENCHMARKS)
ROW_FIELD = "s3ft_row"  # added to every row handed to lm-eval: its index in the bundled file


def _rows(parts: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    from s3ft.tasks.jsonl import bundled_rows

    return bundled_rows(*parts)


def check_benchmarks(benchmarks: list[str] | str) -> list[str]:
    """Benchmark names, in order, without repeats; "all" = every benchmark."""
    if isinstance(benchmarks, str):
        benchmarks = [b for b in benchmarks.split(",") if b.strip()]
    names: list[str] = []
    for b in benchmarks:
        b = b.strip()
        expanded = list(BENCHMARK_NAMES) if b == "all" else [b]
        for name in expanded:
            if name not in BENCHMARKS:
                raise ValueError(f"unknown general benchmark {name!r}; choose from {', '.join(BENCHMARK_NAMES)} (or all)")
            if name not in names:
                names.append(name)
    if not names:
        raise ValueError(f"no benchmarks given; choose from {', '.join(BENCHMARK_NAMES)}")
    return names


# ---------------------------------------------------------------------------------------------
# which questions


def select_rows(source: str, limit: int | None, seed: int) -> list[int]:
    """Indices (into the bundled file, ascending) of the rows a run with this limit and seed
    evaluates: all rows when limit is None or not below the row count, else a seeded subset
    (stratified by subject for MMLU)."""
    spec = SOURCES[source]
    rows = _rows(spec.file)
    n = len(rows)
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise ValueError(f"limit must be a positive number of questions, got {limit}")
    rng = random.Random(f"s3ft-general:{source}:{seed}")
    if spec.strata is None:
        return sorted(rng.sample(range(n), limit))
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, row in enumerate(rows):
        groups[row[spec.strata]].append(i)
    keys = sorted(groups)
    share = {k: limit * len(groups[k]) / n for k in keys}
    quota = {k: math.floor(share[k]) for k in keys}
    left = limit - sum(quota.values())
    if left:  # weighted sampling without replacement (Efraimidis-Spirakis) on the remainders
        weights = {k: share[k] - quota[k] for k in keys}
        draw = {k: math.log(1.0 - rng.random()) / weights[k] for k in keys if weights[k] > 0}
        for k in sorted(draw, key=lambda k: draw[k], reverse=True)[:left]:
            quota[k] += 1
    chosen: list[int] = []
    for k in keys:
        chosen += rng.sample(groups[k], quota[k])
    return sorted(chosen)


def chance_levels(benchmark: str, rows: list[dict[str, Any]]) -> list[float]:
    """The expected score of a uniform random guess on each question of a benchmark's samples
    (rows as `<benchmark>.jsonl` holds them): 1 / number of choices, and for truthfulqa_mc2 (a
    probability mass on the true answers) the share of its choices that are true."""
    if BENCHMARKS[benchmark].name == "truthfulqa_mc2":
        data = _rows(SOURCES["truthfulqa"].file)
        labels = [data[r["row"]]["mc2_targets"]["labels"] for r in rows]
        return [sum(x) / len(x) for x in labels]
    return [1.0 / len(r["loglikelihoods"]) for r in rows]


# ---------------------------------------------------------------------------------------------
# task files


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


def _mmlu_shots() -> dict[str, list[dict]]:
    """The first five dev questions of every subject, in file order (lm-eval's first_n)."""
    shots: dict[str, list[dict]] = collections.defaultdict(list)
    for row in _rows(MMLU_DEV):
        if len(shots[row["subject"]]) < 5:
            shots[row["subject"]].append({k: row[k] for k in ("question", "choices", "answer")})
    return shots


def _yaml_dumper():
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value: str):  # multi-line templates stay readable: one "..." line
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if "\n" in value else None)

    Dumper.add_representer(str, text)
    return Dumper


def prepare_tasks(benchmarks: list[str], limit: int | None, seed: int, workdir: Path) -> dict[str, dict]:
    """Write the rows to evaluate and the finished task YAMLs under `workdir` (data/, tasks/,
    hf_cache/). Returns, per benchmark: task name, yaml path, rows (bundled-file indices)."""
    import yaml

    _Dumper = _yaml_dumper()
    benchmarks = check_benchmarks(benchmarks)
    data_dir, tasks_dir = workdir / "data", workdir / "tasks"
    data_dir.mkdir(parents=True, exist_ok=True)
    tasks_dir.mkdir(parents=True, exist_ok=True)
    lm_tasks = lm_eval_tasks_dir()
    selected: dict[str, list[int]] = {}
    prepared: dict[str, dict] = {}
    for name in benchmarks:
        bench = BENCHMARKS[name]
        spec = SOURCES[bench.source]
        if bench.source not in selected:
            selected[bench.source] = select_rows(bench.source, limit, seed)
        if bench.source == "mmlu":
            # One file pair per MMLU task; all files of a task need the same columns (the json
            # builder casts every split to one schema), so dev rows carry s3ft_row (their index
            # in the dev file) and, for 5-shot, s3ft_shots too (unused there: it runs 0-shot).
            shots = _mmlu_shots() if name == "mmlu_5shot" else None
            suffix = "_5shot" if shots else ""
            for fname, parts, indices in (
                (f"mmlu_test{suffix}.jsonl", spec.file, selected["mmlu"]),
                (f"mmlu_dev{suffix}.jsonl", MMLU_DEV, range(len(_rows(MMLU_DEV)))),
            ):
                rows = _rows(parts)
                write_jsonl(
                    data_dir / fname,
                    [dict(rows[i], **{ROW_FIELD: i}, **({"s3ft_shots": shots[rows[i]["subject"]]} if shots else {})) for i in indices],
                )
        elif not (data_dir / spec.out).exists():
            rows = _rows(spec.file)
            out = []
            for i in selected[bench.source]:
                row = spec.convert(rows[i]) if spec.convert else dict(rows[i])
                row[ROW_FIELD] = i
                out.append(row)
            write_jsonl(data_dir / spec.out, out)
        cfg = yaml.safe_load((TASKS_DIR / f"{bench.task}.yaml").read_text(encoding="utf-8"))
        included = lm_tasks / cfg["include"]
        if not included.exists():
            raise FileNotFoundError(f"{included} is missing: s3ft's {bench.task} needs lm_eval's own task files (pip install lm_eval==0.4.13)")
        cfg["include"] = str(included)
        files = cfg["dataset_kwargs"]["data_files"]
        for split, fname in files.items():
            files[split] = str(data_dir / fname)
        cfg["dataset_kwargs"]["cache_dir"] = str(workdir / "hf_cache")  # keep ~/.cache clean
        path = tasks_dir / f"{bench.task}.yaml"
        path.write_text(yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000), encoding="utf-8")
        prepared[name] = {"task": bench.task, "yaml": path, "rows": list(selected[bench.source])}
    return prepared


def task_manager(workdir: Path):
    """A TaskManager that knows only the tasks written by prepare_tasks (fast: it does not index
    lm-eval's thousands of built-in YAMLs; the `include`d ones are read by absolute path)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(workdir / "tasks"), include_defaults=False)


def check_ready(benchmarks: list[str]) -> None:
    """Build the benchmarks' lm-eval tasks over a few rows, without a model (~2 s), so that a
    missing dependency of a task's `!function` hooks (e.g. nltk for TruthfulQA, absent from images
    that installed lm-eval without its dependencies) fails before hours of generation and training,
    not when the first general evaluation starts."""
    names = check_benchmarks(benchmarks)
    with tempfile.TemporaryDirectory(prefix="s3ft-general-check-") as tmp:
        prepare_tasks(names, 4, 0, Path(tmp))
        tm = task_manager(Path(tmp))
        for name in names:
            try:
                tm.load([BENCHMARKS[name].task])  # builds the task: its hooks are imported
            except ImportError as e:
                raise RuntimeError(
                    f"general benchmark {name}: lm-eval cannot build its task: {type(e).__name__}: {e}. "
                    "Install the missing package (`pip install lm_eval==0.4.13` brings every one it needs), "
                    "or leave the benchmark out of general_benchmarks"
                ) from e


# ---------------------------------------------------------------------------------------------
# evaluation


def _model_args(model: str, batch_size: int | str, device: str, dtype: str, revision: str | None = None,
                trust_remote_code: bool = False) -> dict[str, Any]:
    from s3ft.models import resolve_device, resolve_dtype, resolve_model

    path = resolve_model(model)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    args: dict[str, Any] = {"pretrained": path, "device": device, "dtype": dtype, "batch_size": batch_size}
    if revision:  # of the model, or an adapter's base, on the Hub (lm-eval's HFLM arguments)
        args["revision"] = revision
    if trust_remote_code:
        args["trust_remote_code"] = True
    adapter_cfg = Path(path) / "adapter_config.json"
    if adapter_cfg.exists():
        base = json.loads(adapter_cfg.read_text())["base_model_name_or_path"]
        args["pretrained"] = resolve_model(base)
        args["peft"] = path
        if (Path(path) / "tokenizer_config.json").exists():
            args["tokenizer"] = path
    return args


def _pct(x: Any) -> float | None:
    if isinstance(x, (int, float)) and not (isinstance(x, float) and math.isnan(x)):
        return round(100.0 * float(x), 4)
    return None


def _bench_result(bench: Benchmark, prep: dict, res: dict, seconds: float) -> tuple[dict, list[dict]]:
    task = bench.task
    metrics = res["results"][task]
    samples = sorted(res.get("samples", {}).get(task, []), key=lambda s: s["doc_id"])
    values = {k.split(",")[0]: _pct(v) for k, v in metrics.items() if "," in k and "_stderr" not in k}
    stderrs = {k.split(",")[0].replace("_stderr", ""): _pct(v) for k, v in metrics.items() if "_stderr," in k}
    per_q = []
    for s in samples:
        doc = s["doc"]
        score = float(s[bench.metric])
        line = {"doc_id": s["doc_id"], "row": doc.get(ROW_FIELD), "correct": None if bench.name == "truthfulqa_mc2" else bool(score == 1.0), "score": score}
        if "subject" in doc:
            line["subject"] = doc["subject"]
        try:  # one (loglikelihood, is_greedy) pair per choice
            line["loglikelihoods"] = [round(float(r[0]), 5) for r in s["filtered_resps"]]
        except (KeyError, TypeError, IndexError, ValueError):
            pass
        line["prompt_hash"] = s.get("prompt_hash")
        per_q.append(line)
    rows = prep["rows"]
    if per_q and [q["row"] for q in per_q] != rows:
        raise RuntimeError(f"{bench.name}: lm-eval evaluated other rows than the ones written ({len(per_q)} vs {len(rows)})")
    n = res.get("n-samples", {}).get(task, {}).get("effective", len(per_q))
    out = {
        "task": task,
        "metric": bench.metric,
        "value": values.get(bench.metric),
        "stderr": stderrs.get(bench.metric),
        "n": n,
        "n_total": len(_rows(SOURCES[bench.source].file)),
        "num_fewshot": bench.num_fewshot,
        "metrics": values,
        "stderrs": stderrs,
        "seconds": round(seconds, 1),
        "samples_file": f"{bench.name}.jsonl" if per_q else None,
        "rows": rows,
    }
    if bench.source == "mmlu":
        out["subjects"] = dict(sorted(collections.Counter(_rows(SOURCES["mmlu"].file)[i]["subject"] for i in rows).items()))
    return out, per_q


RESULT_SUFFIX = ".result.json"  # <output_dir>/<benchmark>.result.json: that benchmark is scored


def scored_benchmarks(output_dir: Path) -> list[str]:
    """Benchmarks whose results an earlier (maybe interrupted) evaluate_general left in output_dir."""
    output_dir = Path(output_dir)
    return sorted(p.name[: -len(RESULT_SUFFIX)] for p in output_dir.glob(f"*{RESULT_SUFFIX}")
                  if (output_dir / f"{p.name[: -len(RESULT_SUFFIX)]}.jsonl").exists())


def evaluate_general(
    model: str,
    benchmarks: list[str],
    limit: int | None,
    seed: int,
    output_dir: Path,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "auto",
    resume: bool = False,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> dict[str, dict]:
    """Score `model` (a model folder, a PEFT adapter folder, or a name s3ft.models resolves) on
    the named benchmarks; writes `output_dir/general.json`, and per benchmark `<benchmark>.jsonl`
    (one line per question) and `<benchmark>.result.json` as soon as it is scored. With
    resume=True a benchmark whose result file is already there is not scored again (the caller
    vouches that output_dir holds results of the same model and settings: the pipeline clears it
    when those change). revision / trust_remote_code: as for s3ft.models.load_model.
    Returns {benchmark: {metric, value (%), stderr (%), n, rows, ...}}."""
    import lm_eval

    from s3ft.general_lm import PrefixSharingHFLM

    names = check_benchmarks(benchmarks)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    args = _model_args(model, batch_size, device, dtype, revision, trust_remote_code)
    started = time.time()
    results: dict[str, dict] = {}
    load_seconds = 0.0
    lm = None
    with tempfile.TemporaryDirectory(prefix="s3ft-general-") as tmp:
        workdir = Path(tmp)
        prepared = prepare_tasks(names, limit, seed, workdir)
        tm = task_manager(workdir)
        scored = scored_benchmarks(output_dir) if resume else []
        for name in names:
            if name in scored:
                results[name] = json.loads((output_dir / f"{name}{RESULT_SUFFIX}").read_text(encoding="utf-8"))
                continue
            if lm is None:  # loaded only if a benchmark is left to score
                t0 = time.time()
                lm = PrefixSharingHFLM.create_from_arg_obj(dict(args))
                load_seconds = time.time() - t0
            bench = BENCHMARKS[name]
            t0 = time.time()
            res = lm_eval.simple_evaluate(model=lm, tasks=[bench.task], task_manager=tm, log_samples=True, limit=None)
            results[name], per_q = _bench_result(bench, prepared[name], res, time.time() - t0)
            write_jsonl(output_dir / f"{name}.jsonl", per_q)
            write_json(output_dir / f"{name}{RESULT_SUFFIX}", results[name])  # last: the benchmark is complete
        del lm
    summary = {
        "model": model,
        "model_args": {k: str(v) for k, v in args.items()},
        "lm_eval_version": getattr(lm_eval, "__version__", None) or _version("lm_eval"),
        "limit": limit,
        "seed": seed,
        "batch_size": batch_size,
        "model_load_seconds": round(load_seconds, 1),
        "seconds": round(time.time() - started, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "benchmarks": results,
    }
    (output_dir / "general.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return results


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m s3ft.general", description="General-ability benchmarks (lm-eval, offline, bundled data).")
    p.add_argument("--model", required=True, help="model folder, PEFT adapter folder, or smollm2-135m-instruct")
    p.add_argument("--benchmarks", default="all", help=f"comma-separated: {','.join(BENCHMARK_NAMES)} or all")
    p.add_argument("--limit", type=int, default=None, help="seeded subset size per benchmark (default: all questions)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--batch_size", default="8")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    a = p.parse_args(argv)
    bs: int | str = int(a.batch_size) if a.batch_size.isdigit() else a.batch_size
    try:
        res = evaluate_general(a.model, check_benchmarks(a.benchmarks), a.limit, a.seed, a.output_dir, bs, a.device, a.dtype)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, r in res.items():
        err = f" ± {r['stderr']:.2f}" if r["stderr"] is not None else ""
        print(f"{name:16s} {r['metric']:9s} {r['value']:6.2f}{err}  n={r['n']}  ({r['seconds']:.0f} s)")
    print(f"wrote {a.output_dir / 'general.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
