"""Supervised fine-tuning on the constructed targets (TRL SFTTrainer, LoRA or full).

`train(rows, cfg, output_dir)` turns each row into a TRL conversational prompt/completion
example (prompt = the chat messages, completion = one assistant message), so TRL renders the
chat template exactly as at inference (`apply_chat_template(prompt, add_generation_prompt=True)`
is the prefix) and supervises only the completion tokens: the answer plus the template's
end-of-turn (`<|im_end|>\\n` for ChatML).

Layout of `output_dir`:
    checkpoints/checkpoint-N/   Trainer checkpoints (every cfg.save_steps, last 2 kept); a rerun
                                resumes from the newest one
    model/                      the LoRA adapter (or the full model) + tokenizer; an adapter's
                                base_model_name_or_path is the resolved local base folder, so
                                `s3ft.models.load_model(output_dir/"model")` works offline
    train_log.jsonl             trainer.state.log_history, one entry a line
    train_metrics.json          the dict `train` returns

Works unchanged under `accelerate launch`: every process runs the same code, files are written
by the world-process-zero only (trainer.save_model handles that itself).

Over-long rows: TRL truncates every tokenised prompt+completion to max_length keeping the start
(truncation_mode="keep_start"), so the part that is cut is always the end of the completion,
including its end-of-turn token; a row whose prompt alone fills max_length has no completion
token left and TRL drops it. Both are counted (truncated_rows, dropped_rows) and warned about.
"""
from __future__ import annotations

import json
import logging
import math
import os
import resource
import sys
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

from s3ft.config import S3FTConfig
from s3ft.models import load_tokenizer, pretrained_kwargs, resolve_model
from s3ft.runs import CHECKPOINTS, write_json, write_jsonl
from s3ft.selection import as_messages, completion_text

logger = logging.getLogger(__name__)

MODEL = "model"
TRAIN_LOG = "train_log.jsonl"
TRAIN_METRICS = "train_metrics.json"


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def to_trl_rows(rows: list[dict]) -> list[dict]:
    """s3ft training rows -> TRL conversational prompt/completion rows."""
    out = []
    for i, row in enumerate(rows):
        prompt = row["prompt"]
        if isinstance(prompt, str):  # tolerate a bare user message
            prompt = [{"role": "user", "content": prompt}]
        if not prompt or prompt[-1].get("role") == "assistant":
            raise ValueError(f"row {row.get('id', i)!r}: prompt must be chat messages ending in a non-assistant turn")
        completion = completion_text(row)  # one assistant message (build's file), or its text
        out.append({
            "prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
            "completion": as_messages(completion),
        })
    return out


def length_stats(trl_rows: list[dict], tokenizer, max_length: int | None) -> dict[str, Any]:
    """Token lengths as TRL computes them (prompt with the generation prompt; prompt+completion
    through the chat template), and what truncation to max_length does to them."""
    truncated = dropped = cut_tokens = 0
    longest = 0
    truncated_ids: list[int] = []
    for i, r in enumerate(trl_rows):
        p = tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        pc = tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=True, return_dict=True)["input_ids"]
        n = len(pc)
        longest = max(longest, n)
        if max_length is not None and n > max_length:
            truncated += 1
            truncated_ids.append(i)
            cut_tokens += n - max_length
            prompt_len = _common_prefix(p, pc)
            if prompt_len >= max_length:
                dropped += 1
    return {
        "truncated_rows": truncated,
        "dropped_rows": dropped,
        "truncated_tokens": cut_tokens,
        "longest_row_tokens": longest,
        "truncated_indices": truncated_ids,
    }


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


# ---------------------------------------------------------------------------------------------
# model / args
# ---------------------------------------------------------------------------------------------
def device_and_dtype(cfg: S3FTConfig):
    """(device, on_cpu, compute dtype, weights dtype).

    The compute dtype (models.resolve_dtype: auto is bfloat16 on a GPU that supports it, and for
    full fine-tuning on a CPU with native bf16 - LoRA on CPU stays float32, where bf16 drops small
    adapter updates - else float32) drives bf16/fp16 autocast, on CPU as on CUDA. LoRA loads
    the frozen base in that dtype (PEFT keeps the adapter in float32); full fine-tuning always
    keeps float32 master weights (pure-bf16 AdamW silently drops small updates). float16 needs
    a GPU."""
    import torch

    from s3ft.models import on_gpu, resolve_device

    device = resolve_device(cfg.device)
    on_cpu = not on_gpu(device)
    dtype = getattr(torch, cfg.resolved_dtype(training=True))
    if on_cpu and dtype == torch.float16:
        raise ValueError("float16 training on CPU is not supported: use float32 (or bfloat16)")
    # full fine-tuning: float32 master weights even for an explicit bfloat16 - pure-bf16 AdamW drops
    # small updates (measured: lr 1e-5 on SmolLM2, loss 2.54 vs 1.49 with float32 master weights)
    weights = dtype if cfg.use_peft else torch.float32
    return device, on_cpu, dtype, weights


def _base_path(cfg: S3FTConfig) -> str:
    path = resolve_model(cfg.model)
    p = Path(path).expanduser()
    if p.exists():
        if (p / "adapter_config.json").exists() and not (p / "config.json").exists():
            raise ValueError(f"{p} is a PEFT adapter: training on top of an adapter is not supported; "
                             "merge it into its base and save that as a model folder first")
        return str(p.resolve())  # absolute, so the adapter's base_model_name_or_path works from anywhere
    return path  # hub name


def _lora_targets(modules: list[str] | str):
    if isinstance(modules, str):
        return modules
    mods = list(modules)
    if mods == ["all-linear"]:
        return "all-linear"  # PEFT only recognises the shorthand as a plain string
    if "all-linear" in mods:
        raise ValueError("lora_target_modules: 'all-linear' cannot be combined with module names")
    return mods


def make_sft_config(cfg: S3FTConfig, output_dir: Path, on_cpu: bool, dtype, loss: str = "nll") -> Any:
    """TRL's SFTConfig for the recipe; `loss`: TRL's loss_type (nll, or dft - the method table's loss)."""
    import torch
    from trl import SFTConfig

    use_bf16 = dtype == torch.bfloat16  # autocast, also on CPU (see device_and_dtype)
    use_fp16 = (not on_cpu) and dtype == torch.float16
    return SFTConfig(
        output_dir=str(output_dir / CHECKPOINTS),
        # hyper-parameters from the recipe
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        # transformers 5 dropped warmup_ratio: a float warmup_steps in [0, 1) is the ratio
        warmup_steps=float(cfg.warmup_ratio),
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=cfg.report_to,
        # TRL defaults that must not apply silently. Gradient checkpointing (TRL: on by default) is
        # called activation_checkpointing in transformers 5 (the old name warns)
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        use_cpu=on_cpu,
        bf16=use_bf16,
        fp16=use_fp16,
        packing=False,
        padding_free=False,
        shuffle_dataset=False,  # the Trainer's seeded sampler still shuffles per epoch, reproducibly
        completion_only_loss=True,
        loss_type=loss,
        assistant_only_loss=False,
        truncation_mode="keep_start",
        dataset_num_proc=None,
        # every parameter that requires grad gets one: DDP's per-step search for unused ones is pure overhead
        ddp_find_unused_parameters=False,
        # logging / checkpoints
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        eval_strategy="no",
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=True,
        dataloader_num_workers=0,
    )


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------
def last_checkpoint(output_dir: str | Path) -> str | None:
    """Newest complete checkpoint under output_dir/checkpoints (one with trainer_state.json)."""
    ckdir = Path(output_dir) / CHECKPOINTS
    if not ckdir.is_dir():
        return None
    best = None
    for d in ckdir.iterdir():
        if d.is_dir() and d.name.startswith("checkpoint-") and d.name.split("-")[-1].isdigit():
            if not (d / "trainer_state.json").exists():
                continue  # a save interrupted half-way
            step = int(d.name.split("-")[-1])
            if best is None or step > best[0]:
                best = (step, d)
    return str(best[1]) if best else None


def score_only_supervised_positions() -> bool:
    """Make TRL's fused LM head project only the supervised positions on CPU too.

    TRL's SFTTrainer computes the loss with a fused, chunked LM head. On Triton devices (CUDA, XPU)
    it projects only the positions that have a label; everywhere else it projects every position
    and masks afterwards (so that Neuron's compiler sees fixed shapes). On CPU nothing is compiled,
    and with completion-only loss most positions have no label - a SQuAD row is ~240 prompt
    tokens and ~10 answer tokens - so projecting all of them onto the 49k-word vocabulary is most
    of the LM head's work and its biggest activation (its effect on speed and memory:
    docs/speed.md, bench/results/train_speed.md). The loss and gradients are the same up to float
    rounding (tests/test_training.py). Process-wide; returns whether the hook was installed
    (False: this TRL has no such switch, nothing changed)."""
    try:
        import trl.trainer.utils as tu
    except ImportError:
        return False
    orig = getattr(tu, "_use_triton", None)
    if orig is None:
        return False
    if getattr(orig, "_s3ft_compact", False):
        return True

    def compact(device) -> bool:
        return device.type == "cpu" or orig(device)

    compact._s3ft_compact = True  # type: ignore[attr-defined]
    tu._use_triton = compact
    return True


MMAP_THRESHOLD = 8 << 20  # bytes; see return_freed_memory (lower thresholds: less memory, much slower)


class SavedActivationsInBf16:
    """Keep the float32 activations autograd saves for the backward pass in bf16 (half their
    memory), for training that computes in float32 (LoRA on CPU, see models.resolve_dtype): the
    forward pass stays exact float32 - what bf16 autocast loses, small adapter updates, is kept -
    and the backward pass multiplies with bf16-rounded activations, as under autocast.

    Installed around the Trainer's training_step with torch's saved-tensor hooks. Parameters are
    saved as they are (no copy). A tensor that several ops save (q, k and v projections share
    their input) is packed once: the cache is keyed by address, shape, strides and version and
    checked against a weak reference to the original, so an address freed and reused within the
    step is never mistaken for it. Measured (bench/train_speed.py, SmolLM2-135M LoRA, 64 SQuAD
    rows, CPU): peak RSS 9.9 -> 6.3 GB, train loss 1.88351 -> 1.88340; bench/train_memory.py:
    LoRA 9.08 -> 5.49 GB, now below full fine-tuning's 7.24."""

    MIN_NUMEL = 4096  # small tensors are not worth a copy

    def __init__(self, model):
        import torch

        self.params = {p.data_ptr() for p in model.parameters()}
        self.cache: dict[tuple, tuple] = {}
        self.float32, self.bfloat16 = torch.float32, torch.bfloat16  # pack runs for every saved tensor

    def pack(self, t):
        if t.dtype != self.float32 or t.numel() < self.MIN_NUMEL or t.data_ptr() in self.params:
            return t, False
        key = (t.data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t._version)
        hit = self.cache.get(key)
        if hit is not None and hit[0]() is not None:
            return hit[1], True
        packed = t.to(self.bfloat16)
        self.cache[key] = (weakref.ref(t), packed)
        return packed, True

    @staticmethod
    def unpack(saved):
        t, packed = saved
        return t.float() if packed else t

    def install(self, trainer) -> None:
        import torch

        step = trainer.training_step

        def training_step(*args, **kwargs):
            try:
                with torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack):
                    return step(*args, **kwargs)
            finally:
                self.cache.clear()

        trainer.training_step = training_step


def return_freed_memory() -> bool:
    """Make glibc give large freed blocks back to the system at once (a fixed mmap threshold).

    By default glibc raises its mmap threshold each time a large block is freed (up to 32 MB), so
    after the first step activations come from the heap, whose freed holes are reused badly by
    tensors of other sizes and are not returned: resident memory grows far past what is live.
    LoRA suffers most: per adapted projection it makes several temporaries the size of the
    layer's input (dropout, x @ A, B's output, the scaled sum) between the kept activations.
    A fixed 8 MB threshold maps the big activations and unmaps them when freed; lower thresholds
    trade speed for memory (page faults on every mapped block; figures in docs/speed.md). Live
    memory alone is below full fine-tuning's; the rest of LoRA's peak is this heap. A user who
    prefers memory to speed sets MALLOC_MMAP_THRESHOLD_ (kept) or gradient checkpointing.
    Process-wide; returns whether it was set."""
    import ctypes
    import ctypes.util

    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, MMAP_THRESHOLD))  # -3: M_MMAP_THRESHOLD; 1 on success
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False


def build_trainer(rows: list[dict], cfg: S3FTConfig, output_dir: str | Path, loss: str = "nll",
                  kl_weight: float | None = None):
    """The SFTTrainer `train` uses (model loaded, LoRA applied, dataset tokenised and labelled),
    without training it, plus the length statistics of the rows. Exposed for inspection (tests
    look at a collated batch's labels). `kl_weight` (ASFT, KL-SFT): add kl_weight * KL(base ||
    model) per supervised token to TRL's loss (kl_anchor.AnchoredSFTTrainer); None: TRL's loss alone."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, set_seed
    from trl import SFTTrainer

    if not rows:
        raise ValueError("no training rows")
    output_dir = Path(output_dir)
    device, on_cpu, dtype, weights_dtype = device_and_dtype(cfg)
    if on_cpu:
        return_freed_memory()
    if device.startswith("cuda:") and "LOCAL_RANK" not in os.environ:  # single process on a chosen GPU
        import torch

        torch.cuda.set_device(int(device.split(":", 1)[1]))
    base = _base_path(cfg)

    tokenizer = load_tokenizer(base, **cfg.model_options())  # (saved with the model: its chat template too)
    trl_rows = to_trl_rows(rows)
    lengths = length_stats(trl_rows, tokenizer, cfg.max_length)
    if lengths["truncated_rows"]:
        logger.warning(
            "%d of %d training rows exceed max_length=%d tokens (longest %d): their completion end, including "
            "the end-of-turn token, is cut off%s. Raise max_length to keep them whole.",
            lengths["truncated_rows"], len(rows), cfg.max_length, lengths["longest_row_tokens"],
            f"; {lengths['dropped_rows']} have no completion token left and are dropped" if lengths["dropped_rows"] else "",
        )

    score_only_supervised_positions()
    set_seed(cfg.seed)  # before the model and the LoRA weights are created
    model = AutoModelForCausalLM.from_pretrained(base, dtype=weights_dtype,
                                                 **pretrained_kwargs(base, cfg.revision, cfg.trust_remote_code))
    if cfg.gradient_checkpointing:
        model.config.use_cache = False

    trainer_class, anchor = SFTTrainer, {}
    if kl_weight is not None:
        from s3ft.kl_anchor import AnchoredSFTTrainer

        trainer_class, anchor = AnchoredSFTTrainer, {"kl_weight": kl_weight}
        if not cfg.use_peft:  # full fine-tuning: a frozen copy of the base, made before TRL patches its forward;
            import copy  # in the trained weights' dtype, under the same autocast: KL exactly 0 before the first update

            anchor["ref_model"] = copy.deepcopy(model)

    peft_config = None
    if cfg.use_peft:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=_lora_targets(cfg.lora_target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )

    with warnings.catch_warnings():  # PEFT reads the deprecated model.is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        trainer = trainer_class(
            model=model,
            args=make_sft_config(cfg, output_dir, on_cpu, dtype, loss),
            train_dataset=Dataset.from_list(trl_rows),
            processing_class=tokenizer,
            peft_config=peft_config,
            **anchor,
        )
    if cfg.use_peft:
        from s3ft.lora_dropout import memory_efficient_lora_dropout

        memory_efficient_lora_dropout(trainer.model)
    packed = cfg.resolved_saved_activations()
    if packed == "bfloat16":
        SavedActivationsInBf16(trainer.model).install(trainer)
    info = dict(lengths)
    info["dtype"] = str(dtype).replace("torch.", "")
    info["weights_dtype"] = str(weights_dtype).replace("torch.", "")
    info["saved_activations"] = packed or info["dtype"]
    return trainer, info


EPOCHS = "epochs"


def epoch_dir(output_dir: str | Path, epoch: float) -> Path:
    """Where `train(..., keep_epochs=...)` saves the model as it is at the end of `epoch`."""
    return Path(output_dir) / EPOCHS / f"epoch-{epoch:g}"


def keep_epochs_callback(trainer, epochs, output_dir: Path):
    """A TrainerCallback that saves the model (adapter or full) to epoch_dir at the end of each
    of `epochs` (whole epochs)."""
    from transformers import TrainerCallback

    wanted = {int(e) for e in epochs}

    class KeepEpochs(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            e = round(state.epoch or 0)
            if e in wanted and abs((state.epoch or 0) - e) < 1e-3:
                trainer.save_model(str(epoch_dir(output_dir, e)))

    return KeepEpochs()


def train(rows: list[dict], cfg: S3FTConfig, output_dir: str | Path, loss: str = "nll",
          kl_weight: float | None = None, keep_epochs: tuple[int, ...] = ()) -> dict:
    """Fine-tune cfg.model on rows ({"id", "prompt": messages, "completion": str, "source"}),
    resuming from output_dir/checkpoints if a checkpoint is there. Saves the adapter / model to
    output_dir/model and returns the metrics dict (also written to output_dir/train_metrics.json).
    `loss`: TRL's loss_type; `kl_weight`: weight of the KL-to-base term (build_trainer);
    `keep_epochs`: whole epochs at whose end the model is also saved, to epoch_dir (the learning
    rate schedule is the whole run's: these are checkpoints of it, not shorter runs)."""
    import torch

    output_dir = Path(output_dir)
    trainer, info = build_trainer(rows, cfg, output_dir, loss, kl_weight)
    if keep_epochs:
        trainer.add_callback(keep_epochs_callback(trainer, keep_epochs, output_dir))
    labels = trainer.train_dataset["labels"]
    supervised_tokens = sum(sum(1 for t in seq if t != -100) for seq in labels)
    train_tokens = sum(len(seq) for seq in trainer.train_dataset["input_ids"])
    train_samples = len(trainer.train_dataset)

    resume = last_checkpoint(output_dir)
    # read before training: checkpoint rotation (save_total_limit) may delete it meanwhile
    resume_step = _checkpoint_step(resume) if resume else 0
    if resume and trainer.is_world_process_zero():
        print(f"[s3ft] resuming training from {resume}", file=sys.stderr, flush=True)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    wall = time.time() - t0

    model_dir = output_dir / MODEL
    trainer.save_model(str(model_dir))  # adapter (or full model) + tokenizer; writes on process zero only

    state = trainer.state
    losses = [e["loss"] for e in state.log_history if "loss" in e]
    runtime = float(result.metrics.get("train_runtime", wall))
    tokens_seen = state.num_input_tokens_seen - getattr(trainer, "_initial_num_input_tokens_seen", 0)
    metrics = {
        "train_loss": _run_train_loss(state.log_history, resume_step, state.global_step, float(result.training_loss)),
        "first_loss": float(losses[0]) if losses else math.nan,
        "last_loss": float(losses[-1]) if losses else math.nan,
        "global_step": int(state.global_step),
        "max_steps": int(state.max_steps),
        "resumed_from": resume,
        "train_runtime": runtime,
        "train_samples": train_samples,
        "rows": len(rows),
        "supervised_tokens": int(supervised_tokens),
        "train_tokens": int(train_tokens),
        "tokens_per_second": float(tokens_seen / runtime) if runtime > 0 else 0.0,
        "peak_rss_mb": _peak_rss_mb(),
        "truncated_rows": info["truncated_rows"],
        "dropped_rows": info["dropped_rows"],
        "truncated_tokens": info["truncated_tokens"],
        "longest_row_tokens": info["longest_row_tokens"],
        "truncated_ids": [str(rows[i].get("id", i)) for i in info["truncated_indices"][:50]],
        "use_peft": bool(cfg.use_peft),
        "loss_type": loss,
        "device": str(trainer.args.device),
        "dtype": info["dtype"],
        "weights_dtype": info["weights_dtype"],
        "saved_activations": info["saved_activations"],
        "model_path": str(model_dir),
    }
    if kl_weight is not None:
        kls = [e["kl"] for e in state.log_history if "kl" in e]
        metrics |= {"kl_weight": kl_weight, "last_kl": float(kls[-1]) if kls else math.nan}
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(output_dir / TRAIN_LOG, state.log_history)
        write_json(output_dir / TRAIN_METRICS, metrics)
    trainer.accelerator.wait_for_everyone()
    del trainer
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return metrics


def _checkpoint_step(path: str) -> int:
    return int(json.loads((Path(path) / "trainer_state.json").read_text())["global_step"])


def _run_train_loss(log_history: list[dict], resume_step: int, global_step: int, session_loss: float) -> float:
    """Average training loss over the whole run. The Trainer's own train_loss only covers the
    steps of this call, so after a resume the steps before the checkpoint are rebuilt from the
    logged losses (each the mean since the previous log): exact when the checkpoint step was a
    logging step (save_steps a multiple of logging_steps)."""
    if resume_step == 0:
        return session_loss
    total, covered, last = 0.0, 0, 0
    for e in log_history:
        if "loss" in e and e["step"] <= resume_step:
            total += e["loss"] * (e["step"] - last)
            covered += e["step"] - last
            last = e["step"]
    session_steps = global_step - resume_step
    total += session_loss * session_steps
    covered += session_steps
    return total / covered if covered else session_loss


def _peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024, 1)  # bytes on macOS, KiB on Linux


