"""Every knob of a run, in one dataclass whose field help doubles as `s3ft --help` and docs.

Recipes are YAML files with these field names (HF-style); any field can be overridden on the
command line as `--field value`. Unknown keys are errors that name the closest valid key."""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHODS = ("sft", "ssr", "sdft", "s3ft")


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class S3FTConfig:
    # ---- run ----
    output_dir: str = _f("runs/s3ft", "Run directory: every stage writes its plain files here.")
    method: str = _f("s3ft", "Training-set construction: sft (gold), ssr (own if correct, else gold), "
                     "sdft (validated paraphrase, else gold), s3ft (own, else paraphrase, else gold).",
                     choices=METHODS)
    seed: int = _f(42, "Random seed for subsets, training and sampling.")

    # ---- model ----
    model: str = _f("smollm2-135m-instruct", "Base model: the embedded default (smollm2-135m-instruct), "
                    "a local model folder, a .gguf file, or a hub name (online users).")
    dtype: str = _f("auto", "Weights dtype: auto (bf16 on a capable GPU, else float32), float32, bfloat16, float16.")
    device: str = _f("auto", "auto, cpu, cuda, cuda:N.")

    # ---- task ----
    task: str = _f("squad", "Task: squad, gsm8k, mbpp, nq_open, or jsonl (your own data, see data_files).")
    train_split: str = _f("train", "Split the training inputs come from.")
    eval_split: str = _f("test", "Split in-domain accuracy is measured on.")
    train_size: int | None = _f(None, "Use a seeded subset of this many training examples (None: all).")
    eval_size: int | None = _f(None, "Use a seeded subset of this many evaluation examples (None: all).")
    data_files: dict[str, str] = _f({}, "jsonl task: split name -> JSONL path, e.g. {train: a.jsonl, test: b.jsonl}.")
    prompt_field: str = _f("prompt", "jsonl task: field holding the input text.")
    response_field: str = _f("response", "jsonl task: field holding the gold response.")
    messages_field: str | None = _f(None, "jsonl task: field holding chat messages (last assistant turn is the gold); "
                                    "used instead of prompt_field/response_field when set.")
    id_field: str | None = _f(None, "jsonl task: field holding a unique id (default: the line number).")
    system_prompt: str | None = _f(None, "Optional system message prepended to every prompt (training and inference alike).")

    # ---- judge ----
    judge: str | None = _f(None, "Judge: qa, math, code, llm, exact (None: the task's default).")
    qa_policy: str = _f("contains_or_f1", "qa judge: em, contains, f1, contains_or_f1.")
    qa_f1_threshold: float = _f(0.5, "qa judge: token F1 at or above this counts as correct.")
    allow_code_execution: bool = _f(False, "code judge: run model-written programs in the sandbox (opt-in).")
    judge_workers: int = _f(0, "Parallel workers for the code judge (0: one per CPU core).")

    # ---- generation ----
    backend: str = _f("hf", "Generation backend: hf (transformers), vllm (GPU, optional extra), openai (a server).")
    batch_size: int = _f(16, "Generation batch size (prompts are sorted by length into batches).")
    max_new_tokens: int | None = _f(None, "Answer length limit in tokens (None: the task's default).")
    paraphrase_max_new_tokens: int | None = _f(None, "Paraphrase length limit (None: max_new_tokens).")
    temperature: float = _f(0.0, "Sampling temperature; 0 means greedy.")
    top_p: float = _f(1.0, "Nucleus sampling p (only with temperature > 0).")

    # ---- paraphrase ----
    paraphrase_scope: str = _f("auto", "Which examples get a paraphrase: auto (failed own answers for s3ft, "
                               "all for sdft, none for sft/ssr), failed, all, none.",
                               choices=("auto", "failed", "all", "none"))

    # ---- training (names follow transformers / TRL) ----
    use_peft: bool = _f(True, "Train a LoRA adapter (PEFT); false: full fine-tuning.")
    lora_r: int = _f(8, "LoRA rank (paper: 8).")
    lora_alpha: int = _f(16, "LoRA alpha (paper: 16).")
    lora_dropout: float = _f(0.1, "LoRA dropout (paper: 0.1).")
    lora_target_modules: list[str] = _f(["all-linear"], "Modules LoRA adapts: all-linear, or names like q_proj v_proj.")
    learning_rate: float = _f(1e-4, "Peak learning rate.")
    num_train_epochs: float = _f(1.0, "Training epochs.")
    per_device_train_batch_size: int = _f(4, "Training batch size per device.")
    gradient_accumulation_steps: int = _f(1, "Steps to accumulate before an optimizer step.")
    lr_scheduler_type: str = _f("cosine", "Learning-rate schedule (transformers names).")
    warmup_ratio: float = _f(0.0, "Fraction of steps for linear warm-up.")
    weight_decay: float = _f(0.0, "Weight decay.")
    max_length: int = _f(1024, "Longest training sequence in tokens (prompt + completion); longer rows are truncated and counted.")
    gradient_checkpointing: bool = _f(False, "Trade compute for memory in training.")
    logging_steps: int = _f(5, "Log the training loss every N steps.")
    save_steps: int = _f(50, "Checkpoint every N steps (training resumes from the last one).")
    report_to: str = _f("none", "Experiment tracker for training logs: none, tensorboard, wandb, ...")

    # ---- evaluation ----
    eval_base: bool = _f(True, "Also evaluate the base model in-domain, for the base vs fine-tuned table.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir)

    def effective_paraphrase_scope(self) -> str:
        if self.paraphrase_scope != "auto":
            return self.paraphrase_scope
        return {"s3ft": "failed", "sdft": "all"}.get(self.method, "none")


FIELDS = {f.name: f for f in dataclasses.fields(S3FTConfig)}


class ConfigError(ValueError):
    pass


def suggest(key: str) -> str:
    close = difflib.get_close_matches(key, FIELDS, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
