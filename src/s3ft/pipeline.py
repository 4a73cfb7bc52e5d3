"""The S3FT pipeline: preflight, then the stages in order. Each stage (`s3ft.stages`) is a plain
function of what it works on; this module hands each the outputs of the stages before it, so a
stage asked for alone runs whatever stale stages it depends on first.

    generate -> judge -> paraphrase -> build -> train -> eval (+ general) -> summarize
    (rft, grape, s3ft_k: sample -> judge.samples, and likelihood before build)

A stage whose output is complete and current (same fingerprint) does nothing; an interrupted
one continues where it stopped (`s3ft.stages.common`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from s3ft.config import S3FTConfig
from s3ft.methods import METHODS, failure_sources, paraphrase_scope, scored_sources
from s3ft.runs import RunDir, file_fingerprint, world_size
from s3ft.session import Session
from s3ft.stages.build import build
from s3ft.stages.common import log
from s3ft.stages.drift import SETS as DRIFT_SETS
from s3ft.stages.drift import drift
from s3ft.stages.evaluate import evaluate
from s3ft.stages.general import general
from s3ft.stages.ifeval import examples as ifeval_examples
from s3ft.stages.ifeval import ifeval
from s3ft.stages.generate import generate
from s3ft.stages.judge import judge, judge_samples
from s3ft.stages.likelihood import likelihood
from s3ft.stages.paraphrase import paraphrase
from s3ft.stages.sample import sample
from s3ft.stages.summarize import summarize
from s3ft.stages.train import train

COMMANDS = ("generate", "judge", "paraphrase", "build", "train", "eval")  # `s3ft STAGE RECIPE`


# --------------------------------------------------------------------------- the order of stages
def own_answers(s: Session) -> Path:
    """generate: the base model's answers to the training inputs."""
    return generate(s.stages(), s.train_examples(), s.generator(), s.model_id(), s.decoding(),
                    s.cfg.rows_per_call("judge_flush"))


def judged_answers(s: Session) -> Path:
    """generate -> judge."""
    return judge(s.stages(), own_answers(s), s.train_examples(), s.judge())


def sampled_answers(s: Session) -> Path:
    """sample: sample_k answers of the base model per training input."""
    return sample(s.stages(), s.train_examples(), s.generator(), s.model_id(), s.decoding("sample"), s.cfg.sample_k)


def judged_samples(s: Session) -> Path:
    """sample -> judge.samples."""
    return judge_samples(s.stages(), sampled_answers(s), s.train_examples(), s.judge())


def data_methods(s: Session) -> list[str]:
    """The methods the run's data pass serves: `s3ft compare`'s (s.shared.methods), else cfg.method."""
    return list(s.shared.methods) or [s.cfg.method]


def paraphrase_scope_of(cfg: S3FTConfig) -> str:
    """paraphrase_scope, with `auto` resolved for cfg.method (`s3ft compare` resolves it for all
    its methods at once)."""
    return paraphrase_scope([cfg.method]) if cfg.paraphrase_scope == "auto" else cfg.paraphrase_scope


def paraphrases(s: Session) -> Path:
    """(generate -> judge and / or sample -> judge.samples, when only failed own answers get one)
    -> paraphrase."""
    c = s.cfg
    scope = paraphrase_scope_of(c)
    failure = failure_sources(data_methods(s)) if scope == "failed" else ()
    judged = judged_answers(s) if "self" in failure else None
    samples = judged_samples(s) if "sampled" in failure else None
    return paraphrase(s.stages(), s.train_examples(), judged, scope, s.generator(), s.model_id(),
                      s.decoding("paraphrase"), s.judge(), s.task.paraphrase_kind,
                      paraphrase_length_ratio(c, s.task.paraphrase_kind), c.rows_per_call("judge_flush"),
                      samples_path=samples)


def likelihoods(s: Session) -> Path:
    """(the candidates' stages) -> likelihood: the candidates every method of the data pass picks
    among by likelihood, scored once for all of them."""
    c = s.cfg
    kinds = scored_sources(data_methods(s))
    judged = judged_answers(s) if "self" in kinds else None
    para = paraphrases(s) if "paraphrase" in kinds else None
    samples = judged_samples(s) if "sampled" in kinds else None
    # a model loaded for scoring alone (backend vllm / openai) goes after it
    done = (lambda: s.models.release(c.model)) if c.backend != "hf" else (lambda: None)
    return likelihood(s.stages(), s.train_examples(), kinds, judged, para, samples, lambda: s.models.scorer(c.model),
                      s.model_id(), c.resolved_dtype(), c.rows_per_call("logprob"), done=done)


def paraphrase_length_ratio(cfg: S3FTConfig, kind: str) -> float:
    """paraphrase_min_length_ratio where it applies: not to code, whose tests check all of it (a
    shorter program that passes them is a good paraphrase)."""
    return 0.0 if kind == "code" else cfg.paraphrase_min_length_ratio


def training_set(s: Session, method: str | None = None) -> Path:
    """The data stages the method needs -> build."""
    method = method or s.cfg.method
    m = METHODS[method]
    judged = judged_answers(s) if "own" in m.needs else None
    samples = judged_samples(s) if "samples" in m.needs else None
    para = paraphrases(s) if "paraphrases" in m.needs else None
    scores = likelihoods(s) if "likelihood" in m.needs else None
    return build(s.stages(), method, s.train_examples(), judged, para, samples, scores,
                 gold=s.cfg.rft_gold if "samples" in m.needs and m.samples == "all" else None)


def trained_model(s: Session, method: str | None = None, barrier: Callable[[], None] | None = None,
                  keep_epochs: tuple[int, ...] = ()) -> Path:
    """build -> train; the model goes under s.method_run (and the models at the end of
    `keep_epochs` beside it, training.epoch_dir)."""
    method = method or s.cfg.method
    return train(s.stages(s.method_run), method, training_set(s, method), s.cfg, s.model_id(),
                 free_memory=s.models.free_for_training, barrier=barrier, keep_epochs=keep_epochs)


def in_domain(s: Session, name: str, model: str, model_fp: str, run: RunDir) -> dict[str, Any]:
    """eval: `model` answers s's evaluation split, judged -> <run>/eval/<name>.jsonl."""
    c = s.cfg
    return evaluate(s.stages(run), name, s.eval_examples(), s.generator(model), model_fp, s.decoding("eval"), s.judge(),
                    c.rows_per_call("judge_flush"), what=f"{c.task} {c.eval_split} examples")


def general_benchmarks(s: Session, name: str, model: str, model_fp: str, run: RunDir) -> dict[str, Any]:
    """general: the recipe's general-ability benchmarks for `model` (empty when none are chosen)."""
    if not s.cfg.general_benchmarks:
        return {}
    return general(s.stages(run), name, model, model_fp, s.cfg, free_memory=s.models.free_for_training)


def instruction_following(s: Session, name: str, model: str, model_fp: str, run: RunDir) -> dict[str, Any]:
    """ifeval: `model` answers the IFEval prompts (when the recipe asks for IFEval; the base
    model also when it asks for drift, whose general prompts are answered by it)."""
    c = s.cfg
    if not (c.ifeval or (c.drift and model == c.model)):
        return {}
    return ifeval(s.stages(run), name, s.generator(model), model_fp, s.decoding("ifeval"), c.ifeval_limit, c.data_seed,
                  c.rows_per_call("judge_flush"))


def drift_from_base(s: Session, name: str, model: str, model_fp: str, run: RunDir,
                    sets: Sequence[str] = DRIFT_SETS) -> dict[str, Any]:
    """drift: KL(base || `model`) along the base model's answers to the IFEval prompts (set
    "general") and to the evaluation split ("task"), those of `sets` only (their base answers
    made first if they are not there yet); empty unless the recipe asks."""
    c = s.cfg
    if not c.drift or model == c.model:
        return {}
    unknown = sorted(set(sets) - set(DRIFT_SETS))
    if unknown or not sets:
        raise ValueError(f"drift sets {list(sets)}: choose from {list(DRIFT_SETS)}")
    made = {}
    if "general" in sets:
        instruction_following(s, "base", c.model, s.model_id(), s.run)
        made["general"] = (ifeval_examples(c.ifeval_limit, c.data_seed), s.run / "ifeval" / "base.jsonl")
    if "task" in sets:
        in_domain(s, "base", c.model, s.model_id(), s.run)
        made["task"] = (s.eval_examples(), s.run / "eval" / "base.jsonl")

    def load():
        from s3ft.models import load_model, load_tokenizer

        dtype = c.resolved_dtype()
        opts = c.model_options(model)
        tuned = load_model(model, dtype=dtype, device=c.device, merge_adapter=False, revision=opts["revision"],
                           trust_remote_code=opts["trust_remote_code"])
        reference = None
        if not hasattr(tuned, "disable_adapter"):  # a full fine-tune: the base model beside it
            base_opts = c.model_options()
            reference = load_model(c.model, dtype=dtype, device=c.device, revision=base_opts["revision"],
                                   trust_remote_code=base_opts["trust_remote_code"])
        return tuned, load_tokenizer(model, **opts), reference

    return drift(s.stages(run), name, model_fp, made, load, c.resolved_dtype(), c.drift_tokens_per_batch,
                 free_memory=s.models.free_for_training)["drift"]


def evaluate_run(s: Session, method: str | None = None) -> dict[str, Any]:
    """eval for `s3ft run` / `s3ft eval`: the base model (eval_base), then train -> the fine-tuned one."""
    method = method or s.cfg.method
    results: dict[str, Any] = {}
    if s.cfg.eval_base:
        results["base"] = in_domain(s, "base", s.cfg.model, s.model_id(), s.run)
        general_benchmarks(s, "base", s.cfg.model, s.model_id(), s.run)
        instruction_following(s, "base", s.cfg.model, s.model_id(), s.run)
    model_dir = trained_model(s, method)
    fp = file_fingerprint(model_dir)
    results[method] = in_domain(s, method, str(model_dir), fp, s.method_run)
    general_benchmarks(s, method, str(model_dir), fp, s.method_run)
    instruction_following(s, method, str(model_dir), fp, s.method_run)
    drift_from_base(s, method, str(model_dir), fp, s.method_run)
    s.models.release(str(model_dir))
    return results


def summary(s: Session, method: str | None = None) -> Path:
    return summarize(s.run, s.method_run, s.cfg, method or s.cfg.method, s.judge_name)


# --------------------------------------------------------------------------- preflight
def preflight(s: Session, stages: tuple[str, ...] = COMMANDS) -> None:
    """Check every user input the run will need before any expensive work starts: the model
    resolves, the task and its data files load (every row validated), the judge can be built
    (e.g. the code judge without the opt-in fails here, not after an hour of generation)."""
    from s3ft.judges.custom import check_on_gold, is_custom
    from s3ft.models import check_chat_template, check_device, check_lora_targets, resolve_model

    c = s.cfg
    s.check_run_dir()  # a folder that is not an s3ft run is refused before anything else
    check_device(c.device)
    resolve_model(c.model)
    if c.backend == "vllm":  # fail before any work when the extra is missing
        from s3ft.backends.vllm import import_vllm

        import_vllm()
    n_train = len(s.train_examples())
    n_eval = len(s.eval_examples()) if "eval" in stages else 0
    s.judge()  # (an llm judge loads its model only when first asked to judge)
    if is_custom(s.judge_name):  # your judge on a few gold answers: it must run, and should accept them
        ok, n = check_on_gold(s.judge().fn, s.train_examples()[:8])
        if ok < n:
            log(f"warning: judge {s.judge_name} accepts {ok} of the first {n} gold training answers; "
                "it is meant to accept a correct answer")
    if "eval" in stages and c.general_benchmarks:  # lm-eval's task hooks import their deps here
        from s3ft.general import check_ready

        check_ready(list(c.general_benchmarks))
    if c.backend != "openai":  # (a server applies its own template)
        check_chat_template(c.model, **c.model_options())
        if s.judge_name == "llm" and c.judge_model and not c.judge_base_url:
            check_chat_template(c.judge_model, **c.model_options(c.judge_model))  # found, and can be prompted
        check_prompt_lengths(s, stages)
    if c.use_peft and {"train", "eval"} & set(stages):  # a typo in a module name fails here, not after generation
        check_lora_targets(c.model, list(c.lora_target_modules), c.revision, c.trust_remote_code)
    if s.judge_name == "llm" and c.judge_base_url and {"judge", "paraphrase", "eval"} & set(stages):
        s.judge_server_check()
    for split, rows in s.task.invalid.items():
        if rows:
            log(f"skipped {len(rows)} invalid {split} rows (on_invalid: skip), e.g. {rows[0]['error']}")
    log(f"task {c.task}: {n_train} training examples" + (f", {n_eval} {c.eval_split} examples" if n_eval else "")
        + f"; judge {s.judge_name}; model {c.model}")


def check_prompt_lengths(s: Session, stages: tuple[str, ...] = COMMANDS) -> None:
    """A prompt longer than the model's context gets an empty or meaningless answer: refuse such
    prompts before any work, counting them and naming the first (a jsonl task with on_invalid:
    skip leaves them out instead, listed in the manifest's invalid_rows); warn when prompts leave
    less room than max_new_tokens, so that answers may be cut short. Needs the model's files
    (hf and vllm backends; a server applies its own limits)."""
    from s3ft.backends.base import render_prompt
    from s3ft.models import context_length, load_tokenizer

    c = s.cfg
    if c.backend == "openai" or (found := context_length(c.model)) is None:
        return
    limit, source = found
    if c.backend == "vllm" and c.vllm_max_model_len and c.vllm_max_model_len < limit:
        limit, source = c.vllm_max_model_len, "vllm_max_model_len"
    tok = load_tokenizer(c.model, **c.model_options())
    room = s.decoding().max_new_tokens
    splits = {c.train_split: s.train_examples()}
    if "eval" in stages:
        splits.setdefault(c.eval_split, s.eval_examples())
    for split, exs in splits.items():
        texts = [render_prompt(tok, e.prompt) for e in exs]
        lengths = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]] if texts else []
        over = [(e, n) for e, n in zip(exs, lengths) if n >= limit]
        if over:
            e, n = over[0]
            what = (f"{len(over)} of the {len(exs)} {split} prompts are longer than the model's context ({limit} tokens, "
                    f"{source}): example {e.id!r} has {n} tokens")
            if c.task == "jsonl" and c.on_invalid == "skip" and len(over) < len(exs):
                skip = {x.id for x, _ in over}
                s.task.invalid.setdefault(split, []).extend(
                    {"id": x.id, "error": f"prompt of {m} tokens, longer than the model's context ({limit})"} for x, m in over)
                exs[:] = [x for x in exs if x.id not in skip]
                log(f"skipped {what} (on_invalid: skip)")
                continue
            raise ValueError(f"{what}; the model cannot answer them. Shorten those prompts, use a model with a longer "
                             "context" + (", or set on_invalid: skip to leave them out" if c.task == "jsonl" else ""))
        short = [(e, n) for e, n in zip(exs, lengths) if n + room > limit]
        if short:
            e, n = short[0]
            log(f"warning: {len(short)} {split} prompts leave less than max_new_tokens ({room}) tokens for the answer "
                f"within the model's context ({limit}); their answers may be cut short (e.g. example {e.id!r}: {n} tokens)")


# --------------------------------------------------------------------------- commands
def require_single_process(what: str) -> None:
    if world_size() > 1:
        raise ValueError(f"{what} runs in one process; only `s3ft train` runs under torchrun / accelerate launch "
                         "(run `s3ft build RECIPE` first if you like, then `accelerate launch ... -m s3ft.cli train RECIPE`, "
                         "then `s3ft eval RECIPE` in one process: it reuses the trained model)")


def train_multiprocess(s: Session) -> Path:
    """`s3ft train` under torchrun / accelerate launch (WORLD_SIZE > 1). Rank 0 takes the run lock,
    writes the manifest and runs any stale data stage (the model generates there only) while the
    other ranks wait; then every rank trains (DDP / DeepSpeed / FSDP through the Trainer). Only rank 0
    writes run state: the RunDir writes are no-ops on the other ranks."""
    import datetime

    import torch.distributed as dist
    from accelerate import PartialState

    from s3ft.training import device_and_dtype

    state = PartialState(cpu=device_and_dtype(s.cfg)[1])  # joins the launcher's process group
    # the data stages can take hours, far past the default group's timeout (10-30 min): the other
    # ranks wait for them on a CPU group of their own (if rank 0 fails, the launcher stops them)
    wait_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(days=7)) if dist.is_initialized() else None
    with s.run.lock():
        if state.is_main_process:
            s.write_manifest()
            training_set(s)
        if wait_group is not None:
            dist.barrier(group=wait_group)
        else:
            state.wait_for_everyone()
        # the data stages are current now (rank 0 honoured their --force); every rank trains
        ts = Session(s.cfg, s.force & {"train", f"train.{s.cfg.method}"}, s.seed_dir, s.shared)
        return trained_model(ts, barrier=state.wait_for_everyone)


def run_stage(cfg: S3FTConfig, stage: str, force: set[str] | None = None) -> Any:
    """Run one stage (and whatever stale stages it depends on) under the run lock."""
    s = Session(cfg, force=set(force or ()))
    preflight(s, (stage,))
    if world_size() > 1:
        if stage == "train":
            return train_multiprocess(s)
        require_single_process(f"s3ft {stage}")
    steps = {"generate": own_answers, "judge": judged_answers, "paraphrase": paraphrases, "build": training_set,
             "train": trained_model, "eval": evaluate_run}
    with s.run.lock():
        s.write_manifest()
        result = steps[stage](s)
        if stage == "eval":
            summary(s)
        return result


def run_all(cfg: S3FTConfig, force: set[str] | None = None) -> dict[str, Any]:
    """Every stage for cfg.method; returns metrics.json's content."""
    require_single_process("s3ft run")
    s = Session(cfg, force=set(force or ()))
    preflight(s)
    with s.run.lock():
        s.write_manifest()
        training_set(s)  # the data stages first: their problems show before any evaluation
        evaluate_run(s)
        path = summary(s)
        log(f"summary: {path}")
        return json.loads((s.run / "metrics.json").read_text())
