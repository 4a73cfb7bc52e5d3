"""What the stages of one run share: the configuration, the run directory, the task and its
examples, the judge, and a pool of loaded models.

A `Session` is cheap: `s3ft compare` derives one per seed, tuning trial and cross task
(`Session.derive`); derived sessions share the loaded models, the loaded examples and the
record of which stages were re-run on request (`--force`), so nothing is loaded or forced twice."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from s3ft.config import S3FTConfig
from s3ft.runs import RunDir, fingerprint, versions
from s3ft.stages.common import Decoding, Judge, Stages, libs_fp, log
from s3ft.tasks import Task, get_task
from s3ft.types import Example


# --------------------------------------------------------------------------- model pool
class ModelPool:
    """The models a run has loaded, each once, keyed by model name (a path or hub name):
    generators on the run's backend, transformers models for scoring (log-probabilities) when the
    backend is not hf, and an llm judge's server client. Stages get handles (`generator`,
    `scorer`) that load their model on first use, so a stage that finds its output up to date
    loads nothing."""

    def __init__(self, cfg: S3FTConfig):
        self.cfg = cfg
        self._generators: dict[str, Any] = {}  # model -> generator on cfg.backend
        self._scorers: dict[str, Any] = {}  # model -> HFGenerator (backend != hf)
        self._judge_clients: dict[tuple[str, str], Any] = {}  # (url, name) -> OpenAIGenerator

    # generators ------------------------------------------------------------
    def generator(self, model: str) -> "PooledGenerator":
        """A handle on `model`'s generator; the model loads when the handle first generates."""
        return PooledGenerator(self, model)

    def load(self, model: str):
        """`model`'s generator on the run's backend, loaded now if it is not loaded yet."""
        if model not in self._generators:
            from s3ft.backends import make_generator

            c = self.cfg
            log(f"loading {model}" + (f" ({c.resolved_dtype()})" if c.backend in ("hf", "vllm") else ""))
            self._generators[model] = make_generator(c, model)
        return self._generators[model]

    def put(self, model: str, generator: Any) -> None:
        """Use an already loaded `generator` for `model` (benchmarks and tests)."""
        self._generators[model] = generator

    def loaded(self) -> list[str]:
        return list(self._generators) + [f"{m} (scoring)" for m in self._scorers]

    # scoring ---------------------------------------------------------------
    def scorer(self, model: str):
        """A transformers model + tokenizer for `model` (log-probability scoring): the generator
        when the backend is hf, else a model loaded for this (after stopping a vLLM engine)."""
        if self.cfg.backend == "hf":
            return self.load(model)
        if model not in self._scorers:
            from s3ft.backends.hf import HFGenerator

            c = self.cfg
            self.free_for_training()
            log(f"loading {model} ({c.resolved_dtype()})")
            self._scorers[model] = HFGenerator.from_name(model, batch_size=c.batch_size, dtype=c.dtype, device=c.device,
                                                         **c.model_options(model))
        return self._scorers[model]

    # the llm judge on its own server --------------------------------------
    def judge_client(self, base_url: str, served_name: str):
        """The openai backend's client pointed at a judge server (same key, limits, retries)."""
        key = (base_url, served_name)
        if key not in self._judge_clients:
            from s3ft.backends.openai import OpenAIGenerator

            log(f"llm judge: {served_name} at {base_url}")
            served = dataclasses.replace(self.cfg, openai_base_url=base_url, openai_model=served_name)
            self._judge_clients[key] = OpenAIGenerator.from_config(served, served_name)
        return self._judge_clients[key]

    # letting go -------------------------------------------------------------
    def release(self, model: str) -> None:
        """Let `model` go (a fine-tuned model after its evaluation)."""
        self._generators.pop(model, None)
        self._scorers.pop(model, None)

    def free_for_training(self) -> None:
        """Before a stage loads a model outside the generation backend (training, lm-evaluation-
        harness, log-prob scoring): stop the vLLM engine, which holds most of the device's memory
        (its generators start it again when next asked). On a GPU the hf backend's loaded models
        (the base model, an llm judge's model) are let go too, so that training does not share the
        device with them; they load again when next needed (seconds, against the training's
        minutes). On a CPU they stay: RAM is rarely the limit there."""
        if self.cfg.backend == "vllm":
            from s3ft.backends.vllm import shutdown_engines

            if shutdown_engines():
                log("vllm: engine stopped to free its memory for this stage")
            return
        from s3ft.models import on_gpu

        if self.cfg.backend != "hf" or not on_gpu(self.cfg.device):
            return
        local = list(self._generators) + list(self._scorers)  # (a judge server's client holds no model)
        if local:
            import gc

            import torch

            self._generators.clear()
            self._scorers.clear()
            gc.collect()
            torch.cuda.empty_cache()
            log(f"released {', '.join(local)} from the GPU for this stage (loaded again when next needed)")


class PooledGenerator:
    """A generator handle: loads its model from the pool when it first generates, and again
    after the pool let it go."""

    def __init__(self, pool: ModelPool, model: str):
        self.pool = pool
        self.model_name = model

    def stream(self, prompts, max_new_tokens: int, **kw):
        return self.pool.load(self.model_name).stream(prompts, max_new_tokens, **kw)

    def generate(self, prompts, max_new_tokens: int, **kw):
        return self.pool.load(self.model_name).generate(prompts, max_new_tokens, **kw)


class JudgeModel:
    """The llm judge's generator, fetched from the pool at each call rather than held: the judge
    must not keep a model the pool has let go of, nor load one before it is first asked."""

    def __init__(self, pool: ModelPool, cfg: S3FTConfig):
        self.pool = pool
        self.cfg = cfg

    def resolve(self):
        c = self.cfg
        if c.judge_base_url:
            return self.pool.judge_client(c.judge_base_url, c.judge_model)
        return self.pool.load(c.judge_model or c.model)

    def generate(self, prompts, max_new_tokens: int, **kwargs):
        from s3ft.judges.llm import JudgeModelError

        try:
            generator = self.resolve()
        except Exception as e:  # not a failed generation ("cannot judge"): there is no judge
            raise JudgeModelError(f"the llm judge's model {self.cfg.judge_model or self.cfg.model!r} "
                                  f"could not be loaded: {type(e).__name__}: {e}") from e
        return generator.generate(prompts, max_new_tokens, **kwargs)


# --------------------------------------------------------------------------- session
@dataclass
class Shared:
    """What derived sessions share: loaded models, tasks, examples, judges, forced stages."""

    models: ModelPool
    tasks: dict[tuple, Task] = field(default_factory=dict)
    examples: dict[tuple, list[Example]] = field(default_factory=dict)
    judges: dict[tuple, Judge] = field(default_factory=dict)
    rerun: set[tuple[str, str]] = field(default_factory=set)  # (run dir, stage) re-run on --force
    methods: tuple[str, ...] = ()  # the methods the shared data pass serves (`s3ft compare`'s; empty: cfg.method)


class Session:
    """One run: `cfg`, the run directory (`run`: output_dir, where the data stages and the base
    model's evaluations live), the directory of trained models (`method_run`: a seed's folder in
    `s3ft compare`, else the run directory), and the stages' bookkeeping with `--force`."""

    def __init__(self, cfg: S3FTConfig, force: set[str] | frozenset[str] = frozenset(), seed_dir: str | None = None,
                 shared: Shared | None = None):
        self.cfg = cfg
        self.force = frozenset(force)
        self.seed_dir = seed_dir
        self.shared = shared or Shared(ModelPool(cfg))
        self.run = RunDir(cfg.output_dir)
        self.method_run = RunDir(seed_dir) if seed_dir else self.run

    def derive(self, seed_dir: str | None = None, **changes: Any) -> "Session":
        """A session for another seed, trial or task of the same comparison: the config with
        `changes`, trained models under `seed_dir`; loaded models and examples are shared."""
        cfg = dataclasses.replace(self.cfg, **changes) if changes else self.cfg
        return Session(cfg, self.force, seed_dir, self.shared)

    @property
    def models(self) -> ModelPool:
        return self.shared.models

    def stages(self, run: RunDir | None = None) -> Stages:
        """The stage bookkeeping for `run` (default: the run directory)."""
        return Stages(run or self.run, self.force, self.shared.rerun)

    # task and examples ---------------------------------------------------------
    def task_options(self) -> dict[str, Any]:
        c = self.cfg
        if c.task != "jsonl":
            return {}
        opts = dict(data_files=c.data_files, prompt_field=c.prompt_field, response_field=c.response_field,
                    messages_field=c.messages_field, id_field=c.id_field, on_invalid=c.on_invalid)
        if c.dataset_name:
            opts.update(dataset_name=c.dataset_name, dataset_config=c.dataset_config, dataset_revision=c.dataset_revision)
        if c.judge:
            opts["judge"] = c.judge
        if c.max_new_tokens:
            opts["max_new_tokens"] = c.max_new_tokens
        return opts

    @property
    def task(self) -> Task:
        opts = self.task_options()
        key = (self.cfg.task, fingerprint(opts))
        if key not in self.shared.tasks:
            self.shared.tasks[key] = get_task(self.cfg.task, **opts)
        return self.shared.tasks[key]

    def examples(self, split: str, size: int | None) -> list[Example]:
        """The split's examples, loaded (and, for user data, validated) once: every stage asks."""
        c = self.cfg
        key = (c.task, fingerprint(self.task_options()), split, size, c.data_seed, c.system_prompt)
        if key not in self.shared.examples:
            exs = self.task.load(split, limit=size, seed=c.data_seed)
            if c.system_prompt:
                sys_msg = {"role": "system", "content": c.system_prompt}
                exs = [Example(e.id, [sys_msg] + [m for m in e.prompt if m["role"] != "system"], e.gold, e.meta) for e in exs]
            self.shared.examples[key] = exs
        return self.shared.examples[key]

    def train_examples(self) -> list[Example]:
        return self.examples(self.cfg.train_split, self.cfg.train_size)

    def eval_examples(self) -> list[Example]:
        return self.examples(self.cfg.eval_split, self.cfg.eval_size)

    # models ------------------------------------------------------------------
    def model_id(self) -> str:
        """The base model's identity (its weights and tokenizer files; the recipe's revision,
        trust_remote_code and chat_template): part of fingerprints."""
        from s3ft.models import model_identity

        return model_identity(self.cfg.model, **self.cfg.model_options())

    def generator(self, model: str | None = None):
        """A handle on `model`'s generator (default: the base model)."""
        return self.models.generator(model or self.cfg.model)

    def decoding(self, kind: str = "answer") -> Decoding:
        """How `kind` (answer: own answers; sample: the k sampled answers - the own answers' length
        limit, sample_temperature, sample_top_p, sample_seed; paraphrase; eval: evaluation answers;
        ifeval: IFEval answers, greedy)
        is generated: length limit, sampling, and what else the text depends on."""
        c, t = self.cfg, self.task
        if kind == "sample":
            return dataclasses.replace(self.decoding(), temperature=c.sample_temperature, top_p=c.sample_top_p,
                                       seed=c.sample_seed)
        if kind == "ifeval":  # greedy, as lm-evaluation-harness's ifeval task
            return dataclasses.replace(self.decoding(), max_new_tokens=c.ifeval_max_new_tokens, temperature=0.0)
        limit = {"answer": c.max_new_tokens or t.max_new_tokens,
                 "paraphrase": c.paraphrase_max_new_tokens or c.max_new_tokens or t.paraphrase_max_new_tokens,
                 "eval": c.eval_max_new_tokens or c.max_new_tokens or t.eval_max_new_tokens}[kind]
        served = (c.openai_model, c.openai_base_url) if c.backend == "openai" else ()
        return Decoding(max_new_tokens=limit, temperature=c.temperature, top_p=c.top_p, seed=c.seed, backend=c.backend,
                        dtype=c.resolved_dtype(), served=served)

    # judge --------------------------------------------------------------------
    @property
    def judge_name(self) -> str:
        return self.cfg.judge or self.task.judge

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
            from s3ft.backends.openai import server_url

            return f"{c.judge_model}@{server_url(c)}"
        return model_identity(c.judge_model, **c.model_options(c.judge_model))

    def judge(self) -> Judge:
        """The run's judge, built once per session family (your own judge's code is read once)."""
        from s3ft.judges import get_judge
        from s3ft.judges.custom import is_custom

        c, name = self.cfg, self.judge_name
        options = self.judge_options(name)
        key = (name, fingerprint({k: v for k, v in options.items() if k != "generator"}), c.judge_model, c.judge_base_url)
        if key not in self.shared.judges:
            fn = get_judge(name, **options)
            # your own judge: the hash of the code this session's judge runs (not of the file now on disk)
            extra = [self.judge_model_id()] if name == "llm" else [fn.source_hash] if is_custom(name) else []
            self.shared.judges[key] = Judge(name, fn, [name, c.qa_policy, c.qa_f1_threshold] + extra + libs_fp("math-verify"))
        return self.shared.judges[key]

    def judge_options(self, name: str) -> dict[str, Any]:
        from s3ft.judges.custom import is_custom

        c = self.cfg
        if name == "qa":
            return {"policy": c.qa_policy, "f1_threshold": c.qa_f1_threshold}
        if name == "code":
            return {"allow_code_execution": c.allow_code_execution, "workers": c.judge_workers}
        if is_custom(name):  # your own judge: how long one call may take
            return {"timeout": c.judge_timeout}
        if name == "llm":
            # one cache per judge model: the same prompt to another judge is another verdict
            judge_id = fingerprint(self.judge_model_id())[:12]
            return {"generator": JudgeModel(self.models, c), "cache_path": str(self.run / f"llm_judge_cache.{judge_id}.jsonl")}
        return {}

    def judge_server_check(self) -> None:
        """One short request to a judge server: one that is down or serves another name would
        otherwise turn every verdict into "cannot judge" (and S3FT into SFT on the gold)."""
        c = self.cfg
        try:
            JudgeModel(self.models, c).resolve().generate([[{"role": "user", "content": "Reply with the word OK."}]], 2,
                                                          progress=False)
        except Exception as e:
            raise ValueError(f"judge_base_url {c.judge_base_url}: the judge model {c.judge_model!r} "
                             f"did not answer a test request ({type(e).__name__}: {e})") from e

    # run directory --------------------------------------------------------------
    def check_run_dir(self) -> None:
        """Before any work: output_dir is a folder s3ft may write - new, empty, or an s3ft run
        directory (runs.RunDir.check_usable says why not, naming the files it would overwrite)."""
        self.run.check_usable()

    # manifest -----------------------------------------------------------------
    def write_manifest(self) -> None:
        self.run.path.mkdir(parents=True, exist_ok=True)
        invalid = {split: {"count": len(rows), "rows": rows} for split, rows in self.task.invalid.items() if rows}
        self.run.update_manifest(config=self.cfg.to_dict(), versions=versions(), updated=time.strftime("%Y-%m-%dT%H:%M:%S"),
                                 invalid_rows=invalid)
