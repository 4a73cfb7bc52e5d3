"""The S3FT pipeline, top to bottom. Each stage is a function of the config that reads the
files of earlier stages and writes its own; a stage whose output is complete and current
(same fingerprint) does nothing, and an interrupted one continues where it stopped.

    generate    base model answers the training inputs        -> own.jsonl
    judge       the task's judge scores them against the gold   -> own_judged.jsonl
    paraphrase  base model rewrites gold where needed; filtered and judged -> paraphrase.jsonl
    build       training rows for the method (self / paraphrase / gold)   -> train.<method>.jsonl
    train       LoRA or full fine-tuning with TRL, loss on completions    -> <method>/model/
    eval        base and fine-tuned model on the evaluation split         -> eval/<name>.jsonl
    summarize   metrics.json and summary.md
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from s3ft import selection
from s3ft.config import S3FTConfig
from s3ft.evaluation import accuracy
from s3ft.paraphrase import filter_reason, paraphrase_prompt
from s3ft.runs import JsonlWriter, RunDir, file_fingerprint, fingerprint, read_jsonl, versions, world_size, write_json
from s3ft.tasks import Task, get_task
from s3ft.types import Example

STAGES = ("generate", "judge", "paraphrase", "build", "train", "eval")


_said: set[str] = set()


def log(msg: str, once: bool = False) -> None:
    """Progress line; `once` lines (a stage found up to date) are printed once per process."""
    if once:
        if msg in _said:
            return
        _said.add(msg)
    print(f"[s3ft] {msg}", flush=True)


@dataclass
class Session:
    """What the stages of one run share: the config, the run directory, the task, and the
    models loaded so far (each loaded once)."""

    cfg: S3FTConfig
    force: set[str] = field(default_factory=set)
    seed_dir: str | None = None  # where train / eval of fine-tuned models go (compare: one per seed)
    _generators: dict[str, Any] = field(default_factory=dict)
    _task: Task | None = None
    _examples: dict[tuple, list[Example]] = field(default_factory=dict)
    _judge: Callable | None = None

    @property
    def run(self) -> RunDir:
        return RunDir(self.cfg.output_dir)

    @property
    def method_run(self) -> RunDir:
        return RunDir(self.seed_dir) if self.seed_dir else self.run

    @property
    def task(self) -> Task:
        if self._task is None:
            self._task = get_task(self.cfg.task, **task_options(self.cfg))
        return self._task

    def examples(self, split: str, size: int | None) -> list[Example]:
        """The split's examples, loaded (and, for user data, validated) once per session: every
        stage asks for them again."""
        key = (split, size, self.cfg.data_seed, self.cfg.system_prompt)
        if key not in self._examples:
            exs = self.task.load(split, limit=size, seed=self.cfg.data_seed)
            if self.cfg.system_prompt:
                sys_msg = {"role": "system", "content": self.cfg.system_prompt}
                exs = [Example(e.id, [sys_msg] + [m for m in e.prompt if m["role"] != "system"], e.gold, e.meta) for e in exs]
            self._examples[key] = exs
        return self._examples[key]

    def train_examples(self) -> list[Example]:
        return self.examples(self.cfg.train_split, self.cfg.train_size)

    def eval_examples(self) -> list[Example]:
        return self.examples(self.cfg.eval_split, self.cfg.eval_size)

    def generator(self, model: str | None = None):
        """The loaded generator for `model` (default: the base), loaded once per run."""
        from s3ft.generation import make_generator

        name = model or self.cfg.model
        if name not in self._generators:
            log(f"loading {name}" + (f" ({self.cfg.resolved_dtype()})" if self.cfg.backend in ("hf", "vllm") else ""))
            self._generators[name] = make_generator(self.cfg, name)
        return self._generators[name]

    def release(self, model: str) -> None:
        self._generators.pop(model, None)
        self._generators.pop(f"hf:{model}", None)

    def free_engines(self) -> None:
        """Before a stage loads a model outside the generation backend (training, lm-evaluation-
        harness, log-prob scoring): stop the vLLM engine, which holds most of the device's memory.
        Its generators start it again when next asked to generate. On a GPU the hf backend's loaded
        models (the base model, an llm judge's model) are let go too, so that training does not
        share the device with them; they are loaded again when next needed (seconds, against the
        training's minutes). On a CPU they stay: RAM is rarely the limit there."""
        if self.cfg.backend == "vllm":
            from s3ft.backends_vllm import shutdown_engines

            if shutdown_engines():
                log("vllm: engine stopped to free its memory for this stage")
            return
        from s3ft.models import on_gpu

        if self.cfg.backend != "hf" or not on_gpu(self.cfg.device):
            return
        local = [k for k in self._generators if not k.startswith("judge:")]  # (judge: a judge server's client)
        if local:
            import gc

            import torch

            for k in local:  # (an llm judge fetches its model from here at each call)
                del self._generators[k]
            gc.collect()
            torch.cuda.empty_cache()
            log(f"released {', '.join(k.removeprefix('hf:') for k in local)} from the GPU for this stage "
                "(loaded again when next needed)")

    def judge_generator(self):
        """The llm judge's model: the base model (the paper's choice), judge_model on the
        generation backend, or judge_model on its own OpenAI-compatible server (judge_base_url)."""
        c = self.cfg
        if not c.judge_base_url:
            return self.generator(c.judge_model or c.model)
        key = f"judge:{c.judge_base_url}:{c.judge_model}"
        if key not in self._generators:
            import dataclasses

            from s3ft.backends_openai import OpenAIGenerator

            log(f"llm judge: {c.judge_model} at {c.judge_base_url}")
            # the openai backend's client, pointed at the judge's server and name (same key, limits, retries)
            served = dataclasses.replace(c, openai_base_url=c.judge_base_url, openai_model=c.judge_model)
            self._generators[key] = OpenAIGenerator.from_config(served, c.judge_model)
        return self._generators[key]

    def judge_model_id(self) -> str:
        """What the llm judge's verdicts depend on: its model's identity (weights), or its server
        and served name."""
        from s3ft.models import model_identity

        c = self.cfg
        if c.judge_base_url:
            return f"{c.judge_model}@{c.judge_base_url}"
        if not c.judge_model:
            return self.model_id()
        if c.backend == "openai":
            from s3ft.backends_openai import server_url

            return f"{c.judge_model}@{server_url(c)}"
        return model_identity(c.judge_model)

    def hf_generator(self, model: str | None = None):
        """A transformers model + tokenizer for `model` (stages that need the model itself: log-prob
        scoring) - the generator when the backend is hf, else a model loaded for this."""
        if self.cfg.backend == "hf":
            return self.generator(model)
        from s3ft.generation import HFGenerator

        name = model or self.cfg.model
        key = f"hf:{name}"
        if key not in self._generators:
            self.free_engines()
            log(f"loading {name} ({self.cfg.resolved_dtype()})")
            self._generators[key] = HFGenerator.from_name(name, batch_size=self.cfg.batch_size,
                                                          dtype=self.cfg.dtype, device=self.cfg.device)
        return self._generators[key]

    @property
    def judge_name(self) -> str:
        return self.cfg.judge or self.task.judge

    def judge(self):
        if self._judge is None:
            from s3ft.judges import get_judge

            self._judge = get_judge(self.judge_name, **judge_options(self.cfg, self.judge_name, self))
        return self._judge

    @property
    def max_new_tokens(self) -> int:
        return self.cfg.max_new_tokens or self.task.max_new_tokens

    def gen_kwargs(self) -> dict[str, Any]:
        return {"temperature": self.cfg.temperature, "top_p": self.cfg.top_p, "seed": self.cfg.seed}

    def model_id(self) -> str:
        from s3ft.models import model_identity

        return model_identity(self.cfg.model)


def task_options(cfg: S3FTConfig) -> dict[str, Any]:
    if cfg.task != "jsonl":
        return {}
    opts = dict(data_files=cfg.data_files, prompt_field=cfg.prompt_field, response_field=cfg.response_field,
                messages_field=cfg.messages_field, id_field=cfg.id_field, on_invalid=cfg.on_invalid)
    if cfg.judge:
        opts["judge"] = cfg.judge
    if cfg.max_new_tokens:
        opts["max_new_tokens"] = cfg.max_new_tokens
    return opts


def judge_options(cfg: S3FTConfig, name: str, session: Session | None = None) -> dict[str, Any]:
    if name == "qa":
        return {"policy": cfg.qa_policy, "f1_threshold": cfg.qa_f1_threshold}
    if name == "code":
        return {"allow_code_execution": cfg.allow_code_execution, "workers": cfg.judge_workers}
    if name == "llm":
        if session is None:
            raise ValueError("the llm judge needs a model session")
        # one cache per judge model: the same prompt to another judge is another verdict
        judge_id = fingerprint(session.judge_model_id())[:12]
        return {"generator": _SessionJudgeModel(session), "cache_path": str(session.run / f"llm_judge_cache.{judge_id}.jsonl")}
    return {}


class _SessionJudgeModel:
    """The llm judge's generator, fetched from the session at each call rather than held: the
    judge lives as long as the session, and must not keep a model the session has let go of
    (Session.free_engines) - nor load one before it is first asked to judge."""

    def __init__(self, session: Session):
        self.session = session

    def generate(self, prompts, max_new_tokens: int, **kwargs):
        from s3ft.judges.llm import JudgeModelError

        try:
            generator = self.session.judge_generator()
        except Exception as e:  # not a failed generation ("cannot judge"): there is no judge
            raise JudgeModelError(f"the llm judge's model {self.session.cfg.judge_model or self.session.cfg.model!r} "
                                  f"could not be loaded: {type(e).__name__}: {e}") from e
        return generator.generate(prompts, max_new_tokens, **kwargs)


def _judge_fp(s: Session, exs: Iterable[Example]) -> list[Any]:
    """What a judge's verdicts on `exs` depend on: the judge and its settings, and each example's
    gold and extras (meta: the qa judge's aliases, the code judge's tests, your own judge's fields)."""
    from s3ft.judges.custom import is_custom

    c = s.cfg
    # your own judge: the hash of the code this session's judge runs (not of the file now on disk)
    extra = [s.judge_model_id()] if s.judge_name == "llm" else [s.judge().source_hash] if is_custom(s.judge_name) else []
    golds = fingerprint([(e.id, e.gold, e.meta) for e in exs])
    return [s.judge_name, c.qa_policy, c.qa_f1_threshold] + extra + _libs_fp("math-verify") + [golds]


def _libs_fp(*extra: str) -> list[str]:
    """Versions of the libraries whose upgrade can change a stage's output (part of its fingerprint)."""
    v = versions()
    return [f"{k}={v.get(k)}" for k in ("s3ft", "torch", "transformers", *extra)]


def _examples_fp(exs: list[Example]) -> str:
    return fingerprint([(e.id, e.prompt, e.gold) for e in exs])


def _gen_fp(s: Session) -> list[Any]:
    """What a generation's output depends on besides model and prompts."""
    c = s.cfg
    sampled = c.temperature > 0  # the seed matters to generation only when sampling
    served = [c.openai_model, c.openai_base_url] if c.backend == "openai" else []
    return [c.backend, s.max_new_tokens, c.temperature, c.top_p if sampled else None, c.seed if sampled else None,
            c.resolved_dtype()] + served + _libs_fp()


def _by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rows}


def _todo(out: Path, examples: list[Example]) -> tuple[list[Example], int]:
    """The examples without a row in `out` yet (a rerun resumes), and how many are done."""
    done = {r["id"] for r in read_jsonl(out)}
    return [e for e in examples if e.id not in done], len(done)


def _stream_rows(s: Session, out: Path, todo: list[Example], prompts: list, max_new_tokens: int, desc: str,
                 rows_for: Callable[[list[tuple[Example, str]]], list[dict[str, Any]]], model: str | None = None) -> None:
    """Generate for `todo` with `model` (Session.generator) and append the rows
    `rows_for` makes of each generated batch to `out` as soon as the batch is done (so a crash
    loses at most one batch)."""
    with JsonlWriter(out) as w:
        if not todo:
            return
        buf: list[tuple[Example, str]] = []

        def flush() -> None:
            for r in rows_for(buf):
                w.write(r)
            buf.clear()

        for i, text in s.generator(model).stream(prompts, max_new_tokens, desc=desc, **s.gen_kwargs()):
            buf.append((todo[i], text))
            if len(buf) >= s.cfg.rows_per_call("judge_flush"):
                flush()
        if buf:
            flush()


# --------------------------------------------------------------------------- stages
def stage_generate(s: Session) -> Path:
    """The base model answers every training input (S3FT step 1)."""
    exs = s.train_examples()
    out = s.run / "own.jsonl"
    fp = fingerprint("generate", s.model_id(), _examples_fp(exs), _gen_fp(s))
    if "generate" not in s.force and s.run.is_done("generate", fp, [out]):
        log(f"generate: up to date ({out})", once=True)
        return out
    with s.run.stage("generate", fp, [out], force="generate" in s.force) as info:
        todo, done = _todo(out, exs)
        log(f"generate: {len(todo)} own answers to write ({done} already done) -> {out}")
        _stream_rows(s, out, todo, [e.prompt for e in todo], s.max_new_tokens, "own answers",
                     lambda batch: [{"id": e.id, "response": t} for e, t in batch])
        info["rows"] = len(exs)
    return out


def _judge_rows(s: Session, exs: list[Example], responses: list[str]) -> list[dict[str, Any]]:
    verdicts = s.judge()(exs, responses)
    return [{"id": e.id, "response": r, **v.to_dict()} for e, r, v in zip(exs, responses, verdicts)]


def stage_judge(s: Session) -> Path:
    """The task's judge scores each own answer against the gold (S3FT step 2)."""
    src = stage_generate(s)
    exs = {e.id: e for e in s.train_examples()}
    out = s.run / "own_judged.jsonl"
    fp = fingerprint("judge", file_fingerprint(src), _judge_fp(s, exs.values()))
    if "judge" not in s.force and s.run.is_done("judge", fp, [out]):
        log(f"judge: up to date ({out})", once=True)
        return out
    with s.run.stage("judge", fp, [out], force="judge" in s.force) as info:
        done = {r["id"] for r in read_jsonl(out)}
        todo = [r for r in read_jsonl(src) if r["id"] not in done]
        log(f"judge ({s.judge_name}): {len(todo)} answers to judge -> {out}")
        from tqdm.auto import tqdm

        with JsonlWriter(out) as w, tqdm(total=len(todo), desc="judge own", unit="ex", dynamic_ncols=True) as bar:
            for start in range(0, len(todo), 32):
                chunk = todo[start : start + 32]
                for row in _judge_rows(s, [exs[r["id"]] for r in chunk], [r["response"] for r in chunk]):
                    w.write(row)
                bar.update(len(chunk))
        rows = read_jsonl(out)
        info["rows"] = len(rows)
        info["correct"] = sum(r["correct"] is True for r in rows)
        info["cannot_judge"] = sum(r["correct"] is None for r in rows)
        log(f"judge: {info['correct']}/{len(rows)} own answers correct"
            + (f", {info['cannot_judge']} cannot judge" if info["cannot_judge"] else ""))
    return out


def _length_ratio(s: Session) -> float:
    """paraphrase_min_length_ratio where it applies: not to code, whose tests check all of it (a
    shorter program that passes them is a good paraphrase)."""
    return 0.0 if s.task.paraphrase_kind == "code" else s.cfg.paraphrase_min_length_ratio


def stage_paraphrase(s: Session) -> Path:
    """The base model rewrites the gold in its own words where needed (S3FT steps 3-4):
    filtered for talk about the reference and for worked answers cut to their last line
    (paraphrase.filter_reason), then judged like an own answer."""
    scope = s.cfg.effective_paraphrase_scope()
    ratio = _length_ratio(s)
    out = s.run / "paraphrase.jsonl"
    exs = s.train_examples()
    own: dict[str, dict[str, Any]] = {}
    upstream = "none"
    if scope == "failed":
        src = stage_judge(s)
        own = _by_id(read_jsonl(src))
        upstream = file_fingerprint(src)
    fp = fingerprint("paraphrase", s.model_id(), _examples_fp(exs), scope, upstream, _gen_fp(s),
                     s.cfg.paraphrase_max_new_tokens, _judge_fp(s, exs), s.task.paraphrase_kind,
                     *([ratio] if ratio else []))
    if "paraphrase" not in s.force and s.run.is_done("paraphrase", fp, [out]):
        log(f"paraphrase: up to date ({out})", once=True)
        return out
    with s.run.stage("paraphrase", fp, [out], force="paraphrase" in s.force) as info:
        wanted = [e for e in exs if selection.needs_paraphrase(scope, own.get(e.id))]
        todo, done = _todo(out, wanted)
        log(f"paraphrase (scope {scope}): {len(todo)} to write ({done} already done) -> {out}")

        def rows_for(batch: list[tuple[Example, str]]) -> list[dict[str, Any]]:
            """Filter first (a leaking paraphrase is never judged), then judge the rest."""
            whys = {e.id: filter_reason(t, e.gold, ratio) for e, t in batch}
            keep = [(e, t) for e, t in batch if whys[e.id] is None]
            judged = _by_id(_judge_rows(s, [e for e, _ in keep], [t for _, t in keep])) if keep else {}
            rows = []
            for e, t in batch:
                why = whys[e.id]
                if why is None:
                    rows.append({**judged[e.id], "filtered": False, "filter_reason": None})
                else:
                    rows.append({"id": e.id, "response": t, "filtered": True, "filter_reason": why,
                                 "correct": None, "reason": "rejected by the paraphrase filter", "extracted": None})
            return rows

        _stream_rows(s, out, todo, [paraphrase_prompt(e, s.task.paraphrase_kind) for e in todo],
                     s.cfg.paraphrase_max_new_tokens or s.max_new_tokens, "paraphrases", rows_for)
        rows = read_jsonl(out)
        info["rows"] = len(rows)
        info["filtered"] = sum(bool(r["filtered"]) for r in rows)
        info["accepted"] = sum(selection.accepted_paraphrase(r) is not None for r in rows)
        log(f"paraphrase: {info['accepted']}/{len(rows)} accepted, {info['filtered']} rejected by the filter")
    return out


def stage_build(s: Session, method: str | None = None) -> Path:
    """The training set for the method: each row records its source (self / paraphrase / gold)."""
    method = method or s.cfg.method
    exs = s.train_examples()
    own_path = stage_judge(s) if "self" in selection.PREFERENCE[method] else None
    para_path = stage_paraphrase(s) if "paraphrase" in selection.PREFERENCE[method] else None
    own = _by_id(read_jsonl(own_path)) if own_path else {}
    para = _by_id(read_jsonl(para_path)) if para_path else {}
    out = s.run / f"train.{method}.jsonl"
    stage = f"build.{method}"
    fp = fingerprint(stage, _examples_fp(exs), own_path and file_fingerprint(own_path), para_path and file_fingerprint(para_path))
    if stage not in s.force and "build" not in s.force and s.run.is_done(stage, fp, [out]):
        log(f"build: up to date ({out})", once=True)
        return out
    with s.run.stage(stage, fp, [out], force=True) as info:
        rows = selection.build_training_set(method, exs, own, para)
        with JsonlWriter(out) as w:
            for r in rows:
                w.write(r)
        info["mix"] = selection.mix(rows)
        p = info["mix"]["percent"]
        log(f"build ({method}): {len(rows)} rows - own {p['self']}% / paraphrase {p['paraphrase']}% / gold {p['gold']}%")
    return out


def stage_train(s: Session, method: str | None = None, barrier: Callable[[], None] | None = None) -> Path:
    """Fine-tune the base model on the method's training set (TRL SFTTrainer, completion-only loss).
    `barrier` (multi-process training): called by every process once rank 0 has cleared stale
    outputs, before any process looks for a checkpoint to resume."""
    from s3ft import training

    method = method or s.cfg.method
    src = stage_build(s, method)
    out_dir = s.method_run / method
    model_dir = out_dir / "model"
    stage = f"train.{method}"
    c = s.cfg
    fp = fingerprint(stage, s.model_id(), file_fingerprint(src), c.train_knobs(), _libs_fp("trl", "peft", "accelerate"))
    if stage not in s.force and "train" not in s.force and s.method_run.is_done(stage, fp, [model_dir]):
        log(f"train: up to date ({model_dir})", once=True)
        return model_dir
    # checkpoints of another fingerprint must not be resumed: they go with the stale model
    with s.method_run.stage(stage, fp, [model_dir, out_dir / "checkpoints"], force="train" in s.force or stage in s.force) as info:
        if barrier is not None:
            barrier()
        rows = read_jsonl(src)
        s.free_engines()
        log(f"train ({method}): {len(rows)} rows, {'LoRA' if c.use_peft else 'full fine-tuning'} -> {model_dir}")
        metrics = training.train(rows, c, out_dir)
        info.update({k: v for k, v in metrics.items() if k != "model_path"})
    return model_dir


def _eval_model(s: Session, name: str, model: str, model_fp: str, run: RunDir | None = None) -> dict[str, Any]:
    """`model` answers the evaluation split, judged; rows -> <run>/eval/<name>.jsonl."""
    run = run or s.run
    exs = s.eval_examples()
    out = run / "eval" / f"{name}.jsonl"
    stage = f"eval.{name}"
    fp = fingerprint(stage, model_fp, _examples_fp(exs), _gen_fp(s), _judge_fp(s, exs))
    if stage not in s.force and "eval" not in s.force and run.is_done(stage, fp, [out]):
        log(f"eval {name}: up to date ({out})", once=True)
        return run.stage_record(stage)["accuracy"]
    with run.stage(stage, fp, [out], force="eval" in s.force or stage in s.force) as info:
        todo, done = _todo(out, exs)
        log(f"eval {name}: {len(todo)} {s.cfg.task} {s.cfg.eval_split} examples to answer ({done} already done) -> {out}")
        _stream_rows(s, out, todo, [e.prompt for e in todo], s.max_new_tokens, f"eval {name}",
                     lambda batch: _judge_rows(s, [e for e, _ in batch], [t for _, t in batch]), model=model)
        if model != s.cfg.model:
            s.release(model)
        rows = read_jsonl(out)
        info["accuracy"] = accuracy(rows)
        a = info["accuracy"]
        log(f"eval {name}: {a['k']}/{a['n']} = {a['accuracy']}% (95% CI {a.get('ci95')})")
    return info["accuracy"]


def stage_general(s: Session, name: str, model: str, model_fp: str, run: RunDir | None = None) -> dict[str, Any]:
    """General-ability benchmarks (lm-evaluation-harness over the bundled data) for one model."""
    from s3ft.general import evaluate_general, scored_benchmarks

    run = run or s.run
    c = s.cfg
    out_dir = run / "general" / name
    stage = f"general.{name}"
    fp = fingerprint(stage, model_fp, sorted(c.general_benchmarks), c.general_limit, c.data_seed, c.resolved_dtype(),
                     _libs_fp("lm_eval"))
    if stage not in s.force and "eval" not in s.force and run.is_done(stage, fp, [out_dir / "general.json"]):
        log(f"general {name}: up to date ({out_dir})", once=True)
        return run.stage_record(stage)["results"]
    # benchmarks scored by an interrupted run under the same fingerprint are kept (run.stage clears
    # out_dir when the fingerprint changed or on --force)
    with run.stage(stage, fp, [out_dir], force=stage in s.force or "eval" in s.force) as info:
        limit = f"seeded subsets of {c.general_limit}" if c.general_limit else "full sets"
        kept = scored_benchmarks(out_dir)
        log(f"general {name}: {', '.join(c.general_benchmarks)} ({limit}) -> {out_dir}"
            + (f" ({', '.join(kept)} already scored)" if kept else ""))
        s.free_engines()
        res = evaluate_general(model=model, benchmarks=list(c.general_benchmarks), limit=c.general_limit, seed=c.data_seed,
                               output_dir=out_dir, batch_size=c.rows_per_call("lm_eval"), device=c.device, dtype=c.resolved_dtype(),
                               resume=True)
        info["results"] = {b: {k: v for k, v in r.items() if k in ("metric", "value", "stderr", "n")} for b, r in res.items()}
        log("general " + name + ": " + ", ".join(f"{b} {r.get('value')}" for b, r in info["results"].items()))
    return info["results"]


def stage_eval(s: Session, method: str | None = None) -> dict[str, Any]:
    """In-domain accuracy of the base model and the fine-tuned one, judged by the task's judge."""
    method = method or s.cfg.method
    results: dict[str, Any] = {}
    if s.cfg.eval_base:
        results["base"] = _eval_model(s, "base", s.cfg.model, s.model_id())
    if s.cfg.general_benchmarks and s.cfg.eval_base:
        stage_general(s, "base", s.cfg.model, s.model_id())
    model_dir = stage_train(s, method)
    results[method] = _eval_model(s, method, str(model_dir), file_fingerprint(model_dir), s.method_run)
    if s.cfg.general_benchmarks:
        stage_general(s, method, str(model_dir), file_fingerprint(model_dir), s.method_run)
    s.release(str(model_dir))
    return results


def summarize(s: Session, method: str | None = None) -> Path:
    """metrics.json and summary.md from the stage records."""
    method = method or s.cfg.method
    m = s.run.manifest()
    st = m.get("stages", {})
    metrics = {
        "task": s.cfg.task,
        "model": s.cfg.model,
        "method": method,
        "judge": s.judge_name,
        "own_correct": {k: st.get("judge", {}).get(k) for k in ("correct", "rows")},
        "paraphrase": {k: st.get("paraphrase", {}).get(k) for k in ("accepted", "filtered", "rows")},
        "mix": st.get(f"build.{method}", {}).get("mix"),
        "train": {k: v for k, v in st.get(f"train.{method}", {}).items() if k not in ("status", "fingerprint", "started", "finished")},
        "in_domain": {name: r.stage_record(f"eval.{name}")["accuracy"]
                      for name, r in (("base", s.run), (method, s.method_run)) if r.stage_record(f"eval.{name}")},
        "stage_seconds": {k: v.get("seconds") for k, v in st.items()},
    }
    write_json(s.run / "metrics.json", metrics)
    lines = [f"# S3FT run: {s.cfg.task} / {method}", "",
             f"Model `{s.cfg.model}`, judge `{s.judge_name}`, {metrics['mix']['n'] if metrics['mix'] else '?'} training examples, "
             f"seed {s.cfg.seed}. Run directory `{s.cfg.output_dir}`.", ""]
    if metrics["mix"]:
        c, p = metrics["mix"]["counts"], metrics["mix"]["percent"]
        lines += ["## Training-set mix", "", "| source | rows | % |", "|---|---|---|"]
        lines += [f"| {name} | {c[k]} | {p[k]} |" for k, name in (("self", "own answer"), ("paraphrase", "paraphrased gold"), ("gold", "gold"))]
        lines.append("")
    if metrics["in_domain"]:
        lines += [f"## In-domain accuracy ({s.cfg.eval_split} split)", "", "| model | correct | accuracy % | 95% CI |", "|---|---|---|---|"]
        for name, a in metrics["in_domain"].items():
            lines.append(f"| {name} | {a['k']}/{a['n']} | {a['accuracy']} | {a.get('ci95')} |")
        lines.append("")
    t = metrics["train"]
    if t:
        lines += ["## Training", "", f"{t.get('global_step')} steps, final loss {t.get('train_loss')}, "
                  f"{t.get('tokens_per_second')} tokens/s, peak RSS {t.get('peak_rss_mb')} MB, "
                  f"{t.get('truncated_rows', 0)} rows truncated to max_length.", ""]
    lines += ["## Stage wall times (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in metrics["stage_seconds"].items()]
    (s.run / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return s.run / "summary.md"


def preflight(s: Session, stages: tuple[str, ...] = STAGES) -> None:
    """Check every user input the run will need before any expensive work starts: the model
    resolves, the task and its data files load (every row validated), the judge can be built
    (e.g. the code judge without the opt-in fails here, not after an hour of generation)."""
    from s3ft.models import resolve_model

    resolve_model(s.cfg.model)
    if s.cfg.backend == "vllm":  # fail before any work when the extra is missing
        from s3ft.backends_vllm import _import_vllm

        _import_vllm()
    n_train = len(s.train_examples())
    n_eval = len(s.eval_examples()) if "eval" in stages else 0
    s.judge()  # (an llm judge loads its model only when first asked to judge)
    from s3ft.judges.custom import check_on_gold, is_custom

    if is_custom(s.judge_name):  # your judge on a few gold answers: it must run, and should accept them
        ok, n = check_on_gold(s.judge(), s.train_examples()[:8])
        if ok < n:
            log(f"warning: judge {s.judge_name} accepts {ok} of the first {n} gold training answers; "
                "it is meant to accept a correct answer")
    if "eval" in stages and s.cfg.general_benchmarks:  # lm-eval's task hooks import their deps here
        from s3ft.general import check_ready

        check_ready(list(s.cfg.general_benchmarks))
    if s.cfg.backend != "openai":  # (a server applies its own template)
        from s3ft.models import check_chat_template

        check_chat_template(s.cfg.model)
        if s.judge_name == "llm" and s.cfg.judge_model and not s.cfg.judge_base_url:
            check_chat_template(s.cfg.judge_model)  # the judge model is found and can be prompted
    if s.judge_name == "llm" and s.cfg.judge_base_url and {"judge", "paraphrase", "eval"} & set(stages):
        # one short request: a judge server that is down or serves another name would otherwise turn
        # every verdict into "cannot judge" (and S3FT into SFT on the gold) without stopping the run
        try:
            s.judge_generator().generate([[{"role": "user", "content": "Reply with the word OK."}]], 2, progress=False)
        except Exception as e:
            raise ValueError(f"judge_base_url {s.cfg.judge_base_url}: the judge model {s.cfg.judge_model!r} "
                             f"did not answer a test request ({type(e).__name__}: {e})") from e
    skipped = {split: rows for split, rows in s.task.invalid.items() if rows}
    if skipped:
        for split, rows in skipped.items():
            log(f"skipped {len(rows)} invalid {split} rows (on_invalid: skip), e.g. {rows[0]['error']}")
    log(f"task {s.cfg.task}: {n_train} training examples" + (f", {n_eval} {s.cfg.eval_split} examples" if n_eval else "")
        + f"; judge {s.judge_name}; model {s.cfg.model}")


def write_manifest(s: Session) -> None:
    s.run.path.mkdir(parents=True, exist_ok=True)
    invalid = {split: {"count": len(rows), "rows": rows} for split, rows in s.task.invalid.items() if rows}
    s.run.update_manifest(config=s.cfg.to_dict(), versions=versions(), updated=time.strftime("%Y-%m-%dT%H:%M:%S"),
                          invalid_rows=invalid)


def require_single_process(what: str) -> None:
    if world_size() > 1:
        raise ValueError(f"{what} runs in one process; only `s3ft train` runs under torchrun / accelerate launch "
                         "(run `s3ft build RECIPE` first if you like, then `accelerate launch ... -m s3ft.cli train RECIPE`, "
                         "then `s3ft eval RECIPE` in one process: it reuses the trained model)")


def _train_multiprocess(s: Session) -> Path:
    """`s3ft train` under torchrun / accelerate launch (WORLD_SIZE > 1). Rank 0 takes the run lock,
    writes the manifest and runs any stale data stage (the model generates there only) while the
    other ranks wait; then every rank trains (DDP / DeepSpeed / FSDP through the Trainer). Only rank 0
    writes run state: the RunDir writes are no-ops on the other ranks."""
    import datetime

    import torch.distributed as dist
    from accelerate import PartialState

    from s3ft.training import _device_and_dtype

    state = PartialState(cpu=_device_and_dtype(s.cfg)[1])  # joins the launcher's process group
    # the data stages can take hours, far past the default group's timeout (10-30 min): the other
    # ranks wait for them on a CPU group of their own (if rank 0 fails, the launcher stops them)
    wait_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(days=7)) if dist.is_initialized() else None
    with s.run.lock():
        if state.is_main_process:
            write_manifest(s)
            stage_build(s)
        s.force &= {"train", f"train.{s.cfg.method}"}  # the data stages are current now (their --force is honoured)
        if wait_group is not None:
            dist.barrier(group=wait_group)
        else:
            state.wait_for_everyone()
        return stage_train(s, barrier=state.wait_for_everyone)


def run_stage(cfg: S3FTConfig, stage: str, force: set[str] | None = None) -> Any:
    """Run one stage (and whatever stale stages it depends on) under the run lock."""
    s = Session(cfg, force=set(force or ()))
    preflight(s, (stage,))
    if world_size() > 1:
        if stage == "train":
            return _train_multiprocess(s)
        require_single_process(f"s3ft {stage}")
    with s.run.lock():
        write_manifest(s)
        fn = {"generate": stage_generate, "judge": stage_judge, "paraphrase": stage_paraphrase,
              "build": stage_build, "train": stage_train, "eval": stage_eval}[stage]
        result = fn(s)
        if stage in ("eval",):
            summarize(s)
        return result


def run_all(cfg: S3FTConfig, force: set[str] | None = None) -> dict[str, Any]:
    """Every stage for cfg.method; returns metrics.json's content."""
    import json

    require_single_process("s3ft run")
    s = Session(cfg, force=set(force or ()))
    preflight(s)
    with s.run.lock():
        write_manifest(s)
        stage_build(s)
        stage_eval(s)
        path = summarize(s)
        log(f"summary: {path}")
        return json.loads((s.run / "metrics.json").read_text())
