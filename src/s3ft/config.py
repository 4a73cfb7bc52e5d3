"""Every knob of a run, in one dataclass whose field help doubles as `s3ft --help` and docs.

Recipes are YAML files with these field names (HF-style); any field can be overridden on the
command line as `--field value`. Unknown keys are errors that name the closest valid key."""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s3ft.checks import brief, path_problem, text_problem
from s3ft.frontier import INSTRUMENT, MEASURES
from s3ft.judges.qa import POLICIES
from s3ft.methods import BASE, METHODS, PAPER_METHODS, method_help
from s3ft.models import DTYPES, on_gpu, resolve_dtype


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


SEED_MAX = 2**32 - 1  # (NumPy's seeds are 32-bit)
# transformers' names (trainer_utils.SchedulerType; integration_utils.INTEGRATION_TO_CALLBACK), written out so
# that loading a recipe does not import transformers; tests/test_config.py checks them against it
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
                 "warmup_stable_decay", "greedy")
TRACKERS = ("azure_ml", "comet_ml", "mlflow", "neptune", "tensorboard", "trackio", "wandb", "codecarbon", "clearml",
            "dagshub", "flyte", "dvclive", "swanlab", "kubeflow")


@dataclass
class S3FTConfig:
    # ---- run ----
    output_dir: str = _f("runs/s3ft", "Run directory: every stage writes its plain files here. A new or empty folder, or "
                         "an s3ft run directory (its manifest.json says so); any other folder is refused.", path=True)
    method: str = _f("s3ft", "Training method: " + method_help() + ".", choices=tuple(METHODS))
    seed: int = _f(42, "Random seed for training and sampling.", ge=0, le=SEED_MAX)
    data_seed: int = _f(0, "Seed of the train_size / eval_size subsets (fixed across training seeds, so every "
                        "seed and method sees the same questions).", ge=0, le=SEED_MAX)

    # ---- model ----
    model: str = _f("smollm2-135m-instruct", "Base model: the embedded default (smollm2-135m-instruct), "
                    "a local model folder, a .gguf file, or a hub name (online users).")
    dtype: str = _f("auto", "Compute dtype: auto (bfloat16 on a GPU that supports it; on CPU float32, except full "
                    "fine-tuning on a CPU with native bf16 - AVX512-BF16 or AMX - which autocasts to bfloat16), "
                    "float32, bfloat16, float16. Training autocasts and keeps float32 master weights.", choices=DTYPES)
    device: str = _f("auto", "auto, cpu, cuda, cuda:N.", pattern=(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N"))
    revision: str | None = _f(None, "Hub model: the branch, tag or commit of `model` to load (None: main); part of the "
                              "model's identity in stage fingerprints.")
    trust_remote_code: bool = _f(False, "Let transformers run the Python code a hub model's repository ships (models "
                                 "whose architecture transformers lacks); passed to every model and tokenizer load.")
    chat_template: str | None = _f(None, "The chat template to use instead of the tokenizer's: a .jinja file, or the "
                                   "Jinja text itself. Used to render prompts for generation, training and evaluation, "
                                   "saved with the trained model and its export; part of the model's identity.")

    # ---- task ----
    task: str = _f("squad", "Task: squad, squad_sentence (SQuAD answered in one sentence), gsm8k, mbpp, nq_open, or "
                   "jsonl (your own data, see data_files).")
    train_split: str = _f("train", "Split the training inputs come from.")
    eval_split: str = _f("test", "Split in-domain accuracy is measured on.")
    train_size: int | None = _f(None, "Use a seeded subset of this many training examples (None: all).", ge=1)
    eval_size: int | None = _f(None, "Use a seeded subset of this many evaluation examples (None: all).", ge=1)
    data_files: dict[str, str | list[str]] = _f({}, "jsonl task: split name -> data file, e.g. {train: a.jsonl, test: b.jsonl}, "
                                      "or a list of files read one after another, {train: [a.jsonl, b.jsonl]}, or a glob "
                                      "(shards: {train: data/train-*.parquet}) "
                                      "(.jsonl[.gz], .parquet, .csv, .json; or a URL fsspec opens, e.g. hf://datasets/ORG/NAME/FILE.parquet).")
    dataset_name: str | None = _f(None, "jsonl task, instead of data_files: a dataset loaded by the datasets library - a "
                                  "Hub name (ORG/NAME, online), a folder written by save_to_disk, or a local folder of "
                                  "data files; train_split and eval_split name its splits (slices too: train[:1000]).")
    dataset_config: str | None = _f(None, "dataset_name: the dataset's configuration (subset) name, e.g. main.")
    dataset_revision: str | None = _f(None, "dataset_name: the Hub dataset's branch, tag or commit (None: main).")
    prompt_field: str = _f("prompt", "jsonl task: field holding the input text.")
    response_field: str = _f("response", "jsonl task: field holding the gold response.")
    messages_field: str | None = _f(None, "jsonl task: field holding chat messages (last assistant turn is the gold); "
                                    "used instead of prompt_field/response_field when set.")
    id_field: str | None = _f(None, "jsonl task: field holding a unique id (default: the line number).")
    on_invalid: str = _f("error", "jsonl task: what to do with an invalid row: error (stop, naming file, line and field) "
                         "or skip (leave it out; the manifest lists which rows and why).", choices=("error", "skip"))
    system_prompt: str | None = _f(None, "Optional system message prepended to every prompt (training and inference alike).")

    # ---- judge ----
    judge: str | None = _f(None, "Judge: squad, squad_sentence, qa, math, code, llm, exact, or your own FILE.py:FUNCTION / "
                           "module:FUNCTION (None: the task's default).")
    qa_policy: str = _f("contains_or_f1", "qa judge: em, contains, f1, contains_or_f1.", choices=POLICIES)
    qa_f1_threshold: float = _f(0.5, "qa judge: token F1 at or above this counts as correct.", gt=0, le=1)
    allow_code_execution: bool = _f(False, "code judge: run model-written programs in the sandbox (opt-in).")
    judge_workers: int = _f(0, "Parallel workers for the code judge (0: one per CPU core).", ge=0)
    judge_timeout: float = _f(60.0, "Your own judge (FILE.py:FUNCTION): seconds one call may take (a batched judge: one "
                              "batch) before the stage stops, naming the example.", gt=0)
    judge_model: str | None = _f(None, "llm judge: the model that judges (None: the base model, as in the paper) - a "
                                 "model folder, .gguf or hub name run on the generation backend, or with "
                                 "judge_base_url the name a server serves it as.")
    judge_base_url: str | None = _f(None, "llm judge: an OpenAI-compatible server for the judge alone (e.g. "
                                    "http://127.0.0.1:8000/v1; needs judge_model); generation keeps its backend. "
                                    "API key: openai_api_key_env.")

    # ---- generation ----
    backend: str = _f("hf", "Generation backend: hf (transformers), vllm (GPU, optional extra), openai (a server).",
                      choices=("hf", "vllm", "openai"))
    batch_size: int = _f(0, "Generation batch size (prompts are sorted by length into batches); 0: chosen per batch "
                         "from the memory its KV cache and activations need (GPU: free memory; CPU: up to 64 rows).", ge=0)
    max_new_tokens: int | None = _f(None, "Length limit in tokens of the base model's own answers, and of evaluation "
                                    "answers unless eval_max_new_tokens is set (None: the task's limits). An answer "
                                    "that reaches it is recorded as cut off (stop: length) and is never a training target.", ge=1)
    paraphrase_max_new_tokens: int | None = _f(None, "Paraphrase length limit (None: the task's paraphrase limit, or "
                                               "max_new_tokens when that is set).", ge=1)
    eval_max_new_tokens: int | None = _f(None, "Length limit of evaluation answers (None: max_new_tokens, else the task's "
                                         "evaluation limit).", ge=1)
    paraphrase_min_length_ratio: float = _f(0.5, "Reject a paraphrase shorter than this fraction of its gold "
                                            "answer's words, for golds of 20+ words (worked solutions), so that "
                                            "'The answer is N.' does not replace a worked solution; not applied to code (its "
                                            "tests check all of it); 0: off.", ge=0, le=1)
    temperature: float = _f(0.0, "Sampling temperature; 0 means greedy.", ge=0, le=100)
    top_p: float = _f(1.0, "Nucleus sampling p (only with temperature > 0).", gt=0, le=1)
    openai_base_url: str | None = _f(None, "openai backend: the server's API root, e.g. http://127.0.0.1:8000/v1 "
                                     "(None: the OPENAI_BASE_URL environment variable).")
    openai_model: str | None = _f(None, "openai backend: model name sent in requests, as the server serves it (None: model).")
    openai_api_key_env: str = _f("OPENAI_API_KEY", "openai backend: environment variable holding the API key "
                                 "(sent as a Bearer token when set; local servers need none).")
    max_concurrency: int = _f(8, "openai backend: requests in flight at once.", ge=1)
    request_timeout: float = _f(120.0, "openai backend: seconds one request may take before it is retried.", gt=0)
    max_retries: int = _f(5, "openai backend: retries (exponential backoff) after a connection error, HTTP 429 or 5xx.", ge=0)
    vllm_tensor_parallel_size: int = _f(1, "vllm backend: GPUs one model is sharded over (tensor parallelism).", ge=1)
    vllm_pipeline_parallel_size: int = _f(1, "vllm backend: pipeline stages (with tensor parallelism, spans nodes).", ge=1)
    vllm_distributed_executor_backend: str | None = _f(None, "vllm backend: mp or ray (multi-node); None: vLLM's choice.",
                                                       choices=("mp", "ray", "uni", "external_launcher"))
    vllm_gpu_memory_utilization: float = _f(0.85, "vllm backend: fraction of GPU memory (a CPU build: of RAM) vLLM may take (weights + KV cache).", gt=0, le=1)
    vllm_kv_cache_gib: float | None = _f(None, "vllm backend: KV-cache size in GiB, instead of what vllm_gpu_memory_utilization leaves (a CPU build: set it, or the engine takes 85% of RAM).", gt=0)
    vllm_max_model_len: int | None = _f(None, "vllm backend: longest prompt + answer in tokens (None: the model's limit).", ge=1)
    vllm_chunk_size: int = _f(512, "vllm backend: prompts per engine call; each call's rows are written when it ends.", ge=1)

    # ---- paraphrase ----
    paraphrase_scope: str = _f("auto", "Which examples get a paraphrase: auto (failed own answers for s3ft, "
                               "all for sdft, none for sft/ssr), failed, all, none.",
                               choices=("auto", "failed", "all", "none"))

    # ---- k sampled answers per training input (rft, grape, s3ft_k) ----
    sample_k: int = _f(4, "rft, grape, s3ft_k: answers sampled per training input (vLLM's and the openai backend's n; "
                       "the hf backend's num_return_sequences), each judged.", ge=1, le=1024)
    sample_temperature: float = _f(0.7, "rft, grape, s3ft_k: sampling temperature of the k answers (Yuan et al.'s RFT: 0.7).",
                                   gt=0, le=100)
    sample_top_p: float = _f(1.0, "rft, grape, s3ft_k: nucleus sampling p of the k answers.", gt=0, le=1)
    sample_seed: int = _f(0, "rft, grape, s3ft_k: seed of the k answers (apart from seed, so that every training seed "
                          "trains on the same samples).", ge=0, le=SEED_MAX)
    rft_gold: str = _f("fallback", "rft: the gold response as a target - fallback (for inputs without a correct sample), "
                       "never (such inputs get no row), always (beside the correct samples: Yuan et al.'s augmented set).",
                       choices=("fallback", "never", "always"))

    # ---- training (names follow transformers / TRL) ----
    use_peft: bool = _f(True, "Train a LoRA adapter (PEFT); false: full fine-tuning.")
    lora_r: int = _f(8, "LoRA rank (paper: 8).", ge=1)
    lora_alpha: int = _f(16, "LoRA alpha (paper: 16).", ge=1)
    lora_dropout: float = _f(0.1, "LoRA dropout (paper: 0.1).", ge=0, lt=1)
    lora_target_modules: list[str] = _f(["all-linear"], "Modules LoRA adapts: all-linear, or names like q_proj v_proj.")
    learning_rate: float = _f(1e-4, "Peak learning rate.", gt=0)
    num_train_epochs: float = _f(1.0, "Training epochs.", gt=0)
    per_device_train_batch_size: int = _f(4, "Training batch size per device.", ge=1)
    gradient_accumulation_steps: int = _f(1, "Steps to accumulate before an optimizer step.", ge=1)
    lr_scheduler_type: str = _f("cosine", "Learning-rate schedule (transformers names).", choices=LR_SCHEDULERS)
    warmup_ratio: float = _f(0.0, "Fraction of steps for linear warm-up.", ge=0, lt=1)
    weight_decay: float = _f(0.0, "Weight decay.", ge=0)
    max_length: int = _f(1024, "Longest training sequence in tokens (prompt + completion); longer rows are truncated and counted.", ge=1)
    gradient_checkpointing: bool = _f(False, "Trade compute for memory in training.")
    saved_activations: str = _f("auto", "dtype training keeps the activations it saves for the backward pass in: auto "
                                "(bfloat16 when training computes in float32 on CPU without gradient checkpointing, "
                                "else as computed), float32, bfloat16. bfloat16 halves their memory; the forward "
                                "pass stays exact, the gradients round like bf16 autocast's.",
                                choices=("auto", "float32", "bfloat16"))
    asft_kl_weight: float = _f(0.1, "asft: weight of the KL(base || model) term added to DFT's loss, averaged per "
                               "supervised token like it (Zhu et al.'s code: 0.1; their range about 0.05-0.1).", ge=0)
    klsft_beta: float = _f(0.1, "klsft: weight beta of the KL(base || model) term added to the cross-entropy, averaged "
                           "per supervised token (0: SFT's loss, the KL only logged).", ge=0)
    logging_steps: int = _f(5, "Log the training loss every N steps.", ge=1)
    save_steps: int = _f(50, "Checkpoint every N steps (training resumes from the last one).", ge=1)
    report_to: str = _f("none", "Experiment tracker for training logs: none, all, or trackers separated by commas "
                        "(transformers names: tensorboard, wandb, mlflow, ...). At the end of `s3ft run` / `s3ft eval` "
                        "the run's summary goes there too: mix, in-domain accuracy, general benchmarks and their change "
                        "from the base model (TensorBoard: OUTPUT_DIR/tensorboard/).")

    # ---- evaluation ----
    eval_base: bool = _f(True, "Also evaluate the base model in-domain, for the base vs fine-tuned table.")
    general_benchmarks: list[str] = _f([], "General-ability benchmarks (lm-evaluation-harness over bundled data) run by "
                                       "`s3ft eval` and `s3ft compare`: mmlu, mmlu_5shot, truthfulqa_mc1, truthfulqa_mc2, "
                                       "hellaswag, arc_easy, arc_challenge, winogrande.")
    general_limit: int | None = _f(None, "Evaluate a seeded subset of this many questions per general benchmark (None: full sets).", ge=1)
    ifeval: bool = _f(False, "Answer the IFEval instruction-following prompts (bundled, scored offline with "
                      "lm-evaluation-harness's checkers: prompt / instruction level, strict / loose) with every model "
                      "`s3ft eval` and `s3ft compare` evaluate; the answers' style (length, short, empty, cut off, "
                      "repetition) is recorded beside.")
    ifeval_limit: int | None = _f(None, "Answer a seeded subset of this many of IFEval's 541 prompts (None: all).", ge=1)
    ifeval_max_new_tokens: int = _f(1280, "Length limit of IFEval answers (lm-evaluation-harness's ifeval: 1280); "
                                    "answers that hit it are counted as cut off in the style table.", ge=1)
    drift: bool = _f(False, "Measure each fine-tuned model's drift from the base model: per-token KL(base || tuned) "
                     "and the drop in log-likelihood, along the base model's own greedy answers to the IFEval prompts "
                     "(the ifeval_limit subset) and to the task's evaluation prompts (turns on ifeval for the base model "
                     "and eval_base).")
    drift_tokens_per_batch: int = _f(2048, "Tokens per forward pass of the drift measure (bounds the memory of "
                                     "the two models' logits).", ge=64)
    cross_tasks: list[str] = _f([], "Other built-in tasks evaluated in-domain-style as cross-task checks (e.g. [gsm8k]).")
    cross_task_size: int | None = _f(None, "Seeded subset size for each cross task's test split (None: all).", ge=1)

    # ---- comparison (s3ft compare) ----
    methods: list[str] = _f([BASE, *PAPER_METHODS], "Methods `s3ft compare` trains and evaluates (base = no "
                            "training); any of base, " + ", ".join(METHODS) + ".")
    seeds: list[int] = _f([], "Training seeds for `s3ft compare` (empty: just `seed`); results give mean and spread.", ge=0, le=SEED_MAX)
    logprob_analysis: bool = _f(True, "`s3ft compare`: log-probabilities of gold / paraphrase / own answers under the base model (paper Fig. 2).")
    tune_learning_rates: list[float] = _f([], "`s3ft compare`: candidate learning rates, tried for SFT on the training set and "
                                        "scored in-domain on tune_split before any method trains; the best is then used "
                                        "by every method. Ties go to the earlier candidate (empty: no tuning).", gt=0)
    tune_epochs: list[float] = _f([], "`s3ft compare`: candidate epoch counts, tried for SFT at the chosen learning rate "
                                "after the learning-rate search (which uses the first count). Empty: num_train_epochs.", gt=0)
    tune_split: str = _f("validation", "`s3ft compare`: split the tuning candidates are scored on (never the test split).")
    tune_size: int | None = _f(None, "`s3ft compare`: score each tuning candidate on a seeded subset (data_seed) of this "
                               "many tune_split examples (None: all of them).", ge=1)
    tune_seed: int | None = _f(None, "`s3ft compare`: training seed of the tuning trials (None: the first of seeds). "
                               "Set it when seeds run in separate invocations (scripts/compare_parallel.py) so that "
                               "they share one tuning.", ge=0, le=SEED_MAX)
    # ---- learning-forgetting frontier (s3ft compare; docs/compare.md#frontiers) ----
    sweep_learning_rates: list[float] = _f([], "`s3ft compare` sweep: learning rates every method trains at, each point "
                                         "evaluated in-domain and on the recipe's forgetting measures (empty, with the "
                                         "other sweep keys empty too: no sweep; else [learning_rate]).", gt=0)
    sweep_epochs: list[int] = _f([], "`s3ft compare` sweep: epochs whose end-of-epoch model is evaluated; one training run "
                                 "of the largest count per learning rate serves them all (its checkpoints, under its "
                                 "learning-rate schedule). Empty: [num_train_epochs].", ge=1)
    sweep_finetuning: list[str] = _f([], "`s3ft compare` sweep: lora, full or both (empty: as use_peft says).")
    sweep_seeds: list[int] = _f([], "`s3ft compare` sweep: training seeds of every sweep run (empty: the tuning seed, "
                                "tune_seed or the first of seeds); with several, a point is the mean over them and "
                                "its intervals are over seeds and questions together.", ge=0, le=SEED_MAX)
    interpolation_alphas: list[float] = _f([], "`s3ft compare` sweep: WiSE-FT points between the base (0) and each trained "
                                         "model (1) at no training cost: a LoRA update scaled by alpha, a full fine-tune's "
                                         "weights (1 - alpha) * base + alpha * tuned.", gt=0, lt=1)
    sweep_measures: list[str] = _f([], "`s3ft compare` sweep: the forgetting measures taken at every sweep point "
                                   "(ifeval_drop, kl_general, kl_task, mc_drop; each needs its instrument, as "
                                   "forgetting_measure says). Empty: every one the recipe takes. The per-seed comparison "
                                   "takes them all either way; [kl_general, kl_task] keeps a CPU sweep to in-domain "
                                   "evaluation and drift, and [kl_general] to drift on the general prompts only (the "
                                   "drift stage scores only the sets of the measures asked for).")
    forgetting_measure: str = _f("ifeval_drop", "`s3ft compare` sweep: the forgetting measure of the budget: ifeval_drop "
                                 "(IFEval prompt-strict points lost; needs ifeval), kl_general or kl_task (KL drift from "
                                 "the base on IFEval / task prompts, nats per token; needs drift), mc_drop (informative "
                                 "multiple-choice points lost; needs general_benchmarks).", choices=tuple(MEASURES))
    forgetting_max: float | None = _f(None, "`s3ft compare` sweep: the forgetting budget, the most forgetting_measure may "
                                      "reach; the report recommends the point with the best in-domain score within it, "
                                      "chosen on tune_split and reported on the test split (None: no recommendation).", ge=-100)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir)

    # rows per call where batch_size 0 ("automatic") has no memory-based choice behind it: only the
    # hf generator sizes its batches from memory; these stages take a fixed count instead
    AUTOMATIC_ROWS = {"judge_flush": 32, "lm_eval": 16, "logprob": 8}

    def rows_per_call(self, stage: str) -> int:
        """batch_size, or the stage's fixed count from AUTOMATIC_ROWS when batch_size is 0.
        Stages: judge_flush (answers judged and written at a time), lm_eval (lm-evaluation-harness
        batch), logprob (sequences scored per forward pass, half the generation batch: each
        carries its whole target)."""
        if stage == "logprob":
            return max(1, self.batch_size // 2) if self.batch_size else self.AUTOMATIC_ROWS[stage]
        return self.batch_size or self.AUTOMATIC_ROWS[stage]

    def resolved_dtype(self, training: bool = False) -> str:
        """The dtype `auto` stands for on this machine (what stage fingerprints record, so a run
        resumed on hardware that computes in another dtype redoes its stages). Generation and
        evaluation of every model - base and fine-tuned alike, so that they compare on equal
        terms - use resolved_dtype(); training uses resolved_dtype(training=True), bf16 on a CPU
        with native bf16 for full fine-tuning only (models.resolve_dtype says why)."""
        return resolve_dtype(self.dtype, self.device, full_training=training and not self.use_peft)

    def resolved_saved_activations(self) -> str | None:
        """"bfloat16" when training that computes in float32 keeps its saved activations in bf16
        (training.SavedActivationsInBf16): asked for, or auto on CPU without gradient
        checkpointing. None otherwise - kept as computed (under autocast they are bf16 already)."""
        if self.resolved_dtype(training=True) != "float32":
            return None
        if self.saved_activations == "bfloat16" or (
                self.saved_activations == "auto" and not self.gradient_checkpointing and not on_gpu(self.device)):
            return "bfloat16"
        return None

    def train_knobs(self) -> dict[str, Any]:
        """The TRAIN_FIELDS values a training run depends on, dtype resolved (resolved_dtype), and
        the saved activations' dtype when they are packed (absent otherwise, as before it existed)."""
        knobs = {k: getattr(self, k) for k in TRAIN_FIELDS} | {"dtype": self.resolved_dtype(training=True)}
        for k in ("learning_rate", "num_train_epochs"):  # 2 and 2.0 epochs are one training run
            knobs[k] = float(knobs[k])
        if (packed := self.resolved_saved_activations()) is not None:
            knobs["saved_activations"] = packed
        return knobs

    def chat_template_text(self) -> str | None:
        """chat_template as Jinja text: the file's content when it names a file, else the value."""
        if self.chat_template is None or is_jinja(self.chat_template):
            return self.chat_template
        return Path(os.path.expanduser(self.chat_template)).read_text(encoding="utf-8")

    def model_options(self, model: str | None = None) -> dict[str, Any]:
        """How `model` (default: the base model) is loaded - the keyword arguments of
        models.load_model / load_tokenizer / model_identity: for the base model revision,
        trust_remote_code and chat_template; for a model trained from it (its folder, whose saved
        tokenizer carries the chat template it was trained with) revision, for an adapter's base,
        and trust_remote_code; for an llm judge's judge_model trust_remote_code only."""
        if model is None or model == self.model:
            return {"revision": self.revision, "trust_remote_code": self.trust_remote_code,
                    "chat_template": self.chat_template_text()}
        return {"revision": None if model == self.judge_model else self.revision,
                "trust_remote_code": self.trust_remote_code, "chat_template": None}


FIELDS = {f.name: f for f in dataclasses.fields(S3FTConfig)}

# The fields a training run depends on (its stage fingerprint).
TRAIN_FIELDS = (
    "model", "dtype", "seed", "use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
    "learning_rate", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
    "lr_scheduler_type", "warmup_ratio", "weight_decay", "max_length", "gradient_checkpointing",
)


class ConfigError(ValueError):
    pass


def is_jinja(text: str) -> bool:
    """Whether a chat_template value is Jinja text (it has {{ or {%) rather than a file name."""
    return "{{" in text or "{%" in text


def suggest(key: str) -> str:
    close = difflib.get_close_matches(key, FIELDS, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------- recipes and overrides
def _type_str(name: str) -> str:
    t = FIELDS[name].type
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def coerce(name: str, value: Any, where: str) -> Any:
    """Check and convert `value` for field `name`; `where` says where it came from (for errors).
    Text must be valid Unicode (a byte that is not UTF-8 on the command line is refused here,
    not when the manifest is written); a path field's `~` is the home folder."""
    t = _type_str(name).replace(" ", "")
    optional = t.endswith("|None")
    base = t[: -len("|None")] if optional else t
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
        if optional:
            return None
        raise ConfigError(f"{where}: field {name!r} must not be empty (expected {base})")
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
                return value.lower() in ("true", "yes", "1", "on")
            raise ValueError
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base == "str":
            if _nonscalar(value):
                raise ValueError
            text = _text(name, value, where)
            if not text.strip():
                raise ConfigError(f"{where}: field {name!r} must not be empty (expected str)")
            return os.path.expanduser(text) if FIELDS[name].metadata.get("path") else text
        if base.startswith("list"):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
                raise ValueError
            item = base[len("list["):-1]
            if item == "int":
                return [_int(v) for v in value]
            if item == "float":
                return [float(v) for v in value]
            return [_text(name, v, where) for v in value]
        if base.startswith("dict"):
            if not isinstance(value, dict):
                raise ValueError
            return {_text(name, k, where): _dict_value(name, k, v, "|list[str]" in base, where) for k, v in value.items()}
    except ConfigError:
        raise
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{where}: field {name!r} expects {base}, got {brief(value)}") from None
    return value


def _nonscalar(value: Any) -> bool:
    return value is None or isinstance(value, (dict, list, tuple, set, bytes, bytearray))


def _text(name: str, value: Any, where: str) -> str:
    """str(value), refused when it is not valid text (a byte that is not UTF-8 on the command
    line arrives as a lone surrogate, and would fail when the manifest is written)."""
    if _nonscalar(value):
        raise ValueError
    text = str(value)
    if (problem := text_problem(text)) is not None:
        raise ConfigError(f"{where}: field {name!r}: the value {problem}; give it as UTF-8 text")
    return text


def _dict_value(name: str, key: Any, value: Any, lists: bool, where: str) -> str | list[str]:
    """A value of a dict field: text, or (data_files) a non-empty list of texts; a local path's `~`
    is the home folder."""
    def path(v: Any) -> str:
        text = _text(name, v, where)
        return text if "://" in text else os.path.expanduser(text)

    if isinstance(value, list) and lists:
        if value and all(isinstance(v, str) and v.strip() for v in value):
            return [path(v) for v in value]
    elif not _nonscalar(value) and str(value).strip():
        return path(value)
    expected = "a file path or a non-empty list of file paths" if lists else "a string"
    raise ConfigError(f"{where}: field {name!r}, key {brief(key)}: expected {expected}, got {brief(value)}")


def _int(v: Any) -> int:
    """An integer from an int, an integral float or its text ("3", "3.0"); anything else raises."""
    if isinstance(v, int):
        return v
    f = float(v)
    if not f.is_integer():
        raise ValueError
    return int(f)


def _yaml_loader():
    """PyYAML's SafeLoader, stricter: a key given twice in one mapping is an error (YAML keeps the
    last one silently), and a value its constructor cannot build (an integer of more than 4300
    digits) is reported at its line."""
    import yaml
    from yaml.constructor import ConstructorError

    class DuplicateKeyError(ConstructorError):
        pass

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict[str, int] = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    if key_node.value in seen:
                        raise DuplicateKeyError(None, None, f"duplicate key {brief(key_node.value)} (also on line "
                                                f"{seen[key_node.value]}); give each key once", key_node.start_mark)
                    seen[key_node.value] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep)

        def construct_object(self, node, deep=False):
            try:
                return super().construct_object(node, deep)
            except ValueError as e:
                what = (f"an integer of more than {sys.get_int_max_str_digits()} digits, longer than Python reads"
                        if "digits" in str(e) else str(e))
                raise ConstructorError(None, None, f"cannot read the value: {what}", node.start_mark) from None

    StrictLoader.DuplicateKeyError = DuplicateKeyError
    return StrictLoader


def _yaml_lines(text: str) -> dict[str, int]:
    """Top-level key -> 1-based line number in a YAML mapping."""
    import yaml

    try:
        with _shallow_stack():
            node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


TOO_DEEP = "nested too deeply to read (lists or mappings inside each other more than about 100 levels deep)"


def _too_deep(text: str, limit: int = 100) -> int | None:
    """The line on which flow collections ([...], {...}) nest more than `limit` deep, or None. A
    quick look before PyYAML, which takes seconds on such text (quotes and comments are skipped,
    roughly; what this misses, _shallow_stack catches)."""
    depth, line, quote, comment, prev = 0, 1, "", False, ""
    for ch in text:
        if ch == "\n":
            line, comment, quote = line + 1, False, ("" if quote == "'" else quote)
        elif comment:
            pass
        elif quote:
            if ch == quote and not (quote == '"' and prev == "\\"):
                quote = ""
        elif ch in "\"'" and prev in " \t:[{,-":
            quote = ch
        elif ch == "#" and prev in " \t":
            comment = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return line
        elif ch in "]}":
            depth = max(0, depth - 1)
        prev = ch
    return None


@contextmanager
def _shallow_stack(frames: int = 400):
    """Let the code run under it recurse `frames` deeper than here, not the interpreter's whole
    limit: PyYAML parses nesting recursively and ever more slowly (a 500-deep flow list takes
    seconds before its RecursionError); a recipe has no reason to nest more than a few levels."""
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(min(old, depth + frames))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def read_recipe(path: str | Path) -> dict[str, tuple[Any, str]]:
    """A recipe's keys -> (value, "file line N") after validating names and types."""
    import yaml

    path = Path(path)
    if not os.path.lexists(path):
        raise ConfigError(f"recipe {path} does not exist")
    if (problem := path_problem(path, "recipe")) is not None:
        raise ConfigError(f"recipe {path}: {problem}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"recipe {path}: not UTF-8 text ({e})") from None
    except OSError as e:
        raise ConfigError(f"recipe {path}: cannot read it ({e.strerror})") from None
    if (line := _too_deep(text)) is not None:
        raise ConfigError(f"recipe {path} line {line}: {TOO_DEEP}")
    try:
        with _shallow_stack():
            data = yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"recipe {path}{at}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise ConfigError(f"recipe {path}: {TOO_DEEP}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path}: expected a mapping of field: value, got {type(data).__name__}")
    lines = _yaml_lines(text)
    out = {}
    for key, value in data.items():
        where = f"recipe {path} line {lines.get(key, '?')}" if isinstance(key, str) else f"recipe {path}"
        if key not in FIELDS:
            raise ConfigError(f"{where}: unknown key {brief(key)}{suggest(key) if isinstance(key, str) else ''}")
        out[key] = (coerce(key, value, where), where)
    return out


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """`--key value`, `--key=value`, `--flag` (true) -> {key: raw value}. Dashes in keys become
    underscores; values are read as YAML scalars/lists/mappings (so `--data_files "{train: a}"`).
    A list key also takes several values in a row: `--lora_target_modules q_proj v_proj`."""
    import yaml

    loader = _yaml_loader()
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise ConfigError(f"command line: unexpected argument {brief(a)} (overrides look like --key value)")
        key, eq, val = a[2:].partition("=")
        key = key.replace("-", "_")
        if key not in FIELDS:
            raise ConfigError(f"command line: unknown option --{brief(key)[1:-1]}{suggest(key)}")
        if not eq:
            if _type_str(key) == "bool" and (i + 1 >= len(args) or args[i + 1].startswith("--")):
                val = "true"
            elif i + 1 < len(args):
                i += 1
                val = args[i]
            else:
                raise ConfigError(f"command line: option --{key} needs a value")
        where = f"command line --{key}"
        if not eq and _type_str(key).replace(" ", "").startswith("list"):
            while i + 1 < len(args) and not args[i + 1].startswith("--"):  # --key a b c
                i += 1
                val = f"{val},{args[i]}"
        if (problem := text_problem(val)) is not None:
            raise ConfigError(f"{where}: the value {problem}; give it as UTF-8 text")
        if _too_deep(val) is not None:
            raise ConfigError(f"{where}: the value is {TOO_DEEP}")
        try:
            with _shallow_stack():
                parsed = yaml.load(val, Loader=loader) if val.strip() else val
        except loader.DuplicateKeyError as e:
            raise ConfigError(f"{where}: {e.problem}") from None
        except (yaml.YAMLError, ValueError):
            parsed = val
        except RecursionError:
            raise ConfigError(f"{where}: the value is {TOO_DEEP}") from None
        out[key] = coerce(key, parsed, where)
        i += 1
    return out


def load_config(recipe: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> S3FTConfig:
    """Defaults <- recipe YAML <- command-line overrides, validated."""
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    if recipe:
        for k, (v, w) in read_recipe(recipe).items():
            values[k], where[k] = v, w
    if isinstance(overrides, dict):
        for k, v in overrides.items():
            if k not in FIELDS:
                raise ConfigError(f"override: unknown key {brief(k)}{suggest(k) if isinstance(k, str) else ''}")
            values[k] = coerce(k, v, f"override {k}")
    elif overrides:
        for k, v in parse_overrides(overrides).items():
            values[k], where[k] = v, f"command line --{k}"
    cfg = S3FTConfig(**values)
    validate(cfg, where, default=f"recipe {recipe}" if recipe else "config")
    return cfg


INT_LIMIT = 2**63 - 1  # what the libraries a run hands integers to (torch, NumPy) take


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def range_text(name: str) -> str | None:
    """Field `name`'s allowed range in words ("> 0", "in [0, 1)"), from its metadata; None: none."""
    meta = FIELDS[name].metadata
    lo = ("[", ">=", meta["ge"]) if "ge" in meta else ("(", ">", meta["gt"]) if "gt" in meta else None
    hi = ("]", "<=", meta["le"]) if "le" in meta else (")", "<", meta["lt"]) if "lt" in meta else None
    if lo and hi:
        return f"in {lo[0]}{_num(lo[2])}, {_num(hi[2])}{hi[0]}"
    if lo:
        return f"{lo[1]} {_num(lo[2])}"
    if hi:
        return f"{hi[1]} {_num(hi[2])}"
    return None


def range_problem(name: str, value: Any) -> str | None:
    """Why `value` (a number, or a list of numbers) is outside field `name`'s range: every number
    in its range, floats finite (no nan or inf), integers below 2**63; None when it is fine."""
    meta = FIELDS[name].metadata
    rng = range_text(name)
    numbers = value if isinstance(value, list) else [value]
    for v in numbers:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        finite = not isinstance(v, float) or math.isfinite(v)
        in_range = finite and not (
            ("ge" in meta and v < meta["ge"]) or ("gt" in meta and v <= meta["gt"])
            or ("le" in meta and v > meta["le"]) or ("lt" in meta and v >= meta["lt"]))
        if in_range and abs(v) <= INT_LIMIT:
            continue
        if isinstance(value, list):
            floats = _type_str(name).replace(" ", "").startswith("list[float]")
            what = ("positive finite numbers" if rng == "> 0" else f"finite numbers {rng}") if floats else f"numbers {rng}"
            return f"{name} must be {what}, got {brief(value)}"
        if in_range:  # (no upper bound of its own)
            return f"{name} must be below 2**63, got {brief(v)}"
        optional = _type_str(name).replace(" ", "").endswith("|None")
        return f"{name} must be {'' if finite else 'a finite number '}{rng}{' or null' if optional else ''}, got {brief(v)}"
    return None


def validate(cfg: S3FTConfig, where: dict[str, str] | None = None, default: str = "config") -> None:
    """Check values against their allowed choices and ranges (every field's metadata) and against
    each other; errors say where the value came from (recipe file and line, or the command-line
    option)."""
    where = where or {}

    def fail(name: str, msg: str) -> None:
        raise ConfigError(f"{where.get(name, default)}: {msg}")

    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        choices = f.metadata.get("choices")
        if choices and value is not None and value not in choices:
            hint = suggest_in(value, tuple(choices)) if isinstance(value, str) else ""
            fail(f.name, f"{f.name} must be one of {', '.join(choices)}, got {brief(value)}{hint}")
        pattern = f.metadata.get("pattern")
        if pattern and value is not None and not re.fullmatch(pattern[0], str(value)):
            fail(f.name, f"{f.name} must be {pattern[1]}, got {brief(value)}")
        if (problem := range_problem(f.name, value)) is not None:
            fail(f.name, problem)
    trackers = [t.strip() for t in cfg.report_to.split(",")]
    bad = [t for t in trackers if t not in ("none", "all", *TRACKERS)]
    if bad:
        fail("report_to", f"report_to: unknown tracker {brief(bad[0])}{suggest_in(bad[0], TRACKERS)}; none, all, or "
                          f"any of {', '.join(TRACKERS)} (separated by commas)")
    out = Path(cfg.output_dir).resolve()
    if out == Path(out.anchor):
        fail("output_dir", f"output_dir {cfg.output_dir!r} is the filesystem root; give a folder of its own, e.g. runs/NAME")
    from s3ft.tasks import BUILTIN_TASKS

    if cfg.task not in BUILTIN_TASKS:
        fail("task", f"unknown task {brief(cfg.task)}{suggest_in(cfg.task, BUILTIN_TASKS)}; built-in tasks: {', '.join(BUILTIN_TASKS)}")
    if cfg.task == "jsonl" and not (cfg.data_files or cfg.dataset_name):
        fail("task", "task jsonl needs data_files, e.g. data_files: {train: train.jsonl, test: test.jsonl}, or "
                     "dataset_name (a Hub dataset or a save_to_disk folder)")
    if cfg.dataset_name and cfg.data_files:
        fail("dataset_name", "give data_files or dataset_name, not both")
    if cfg.dataset_name and cfg.task != "jsonl":
        fail("dataset_name", f"dataset_name is for your own data (task: jsonl); the task is {cfg.task}")
    for name in ("dataset_config", "dataset_revision"):
        if getattr(cfg, name) and not cfg.dataset_name:
            fail(name, f"{name} goes with dataset_name, which is not set")
    if cfg.chat_template is not None and not is_jinja(cfg.chat_template):
        if (problem := path_problem(Path(os.path.expanduser(cfg.chat_template)), "chat template file")) is not None:
            fail("chat_template", f"chat_template {brief(cfg.chat_template)}: not Jinja text (no {{{{ or {{%) and "
                                  f"not a readable file: {problem}")
        try:
            cfg.chat_template_text()
        except (OSError, UnicodeDecodeError) as e:
            fail("chat_template", f"chat_template {cfg.chat_template}: cannot read it as UTF-8 text ({e})")
    from s3ft.judges import JUDGES

    from s3ft.judges.custom import JudgeError, is_custom, load_function

    if is_custom(cfg.judge):
        try:
            load_function(cfg.judge, timeout=cfg.judge_timeout)
        except JudgeError as e:
            fail("judge", str(e))
    elif cfg.judge is not None and cfg.judge not in JUDGES:
        fail("judge", f"unknown judge {brief(cfg.judge)}{suggest_in(cfg.judge, JUDGES)}; judges: {', '.join(JUDGES)}, "
                      "or your own FILE.py:FUNCTION")
    for name in ("judge_model", "judge_base_url"):
        if getattr(cfg, name) and cfg.judge != "llm":
            fail(name, f"{name} is for the llm judge; set judge: llm (the judge is {cfg.judge or 'the task default'})")
    if cfg.judge_base_url and not cfg.judge_model:
        fail("judge_base_url", "judge_base_url needs judge_model: the name the server serves the judge as")
    if cfg.judge_model and not cfg.judge_base_url and cfg.backend == "vllm":
        fail("judge_model", "with backend vllm the engine serves the base model and its adapters only; run the judge "
                            "model on a server (e.g. `vllm serve JUDGE`) and set judge_base_url")
    unknown = [m for m in cfg.methods if m != BASE and m not in METHODS]
    if unknown:
        fail("methods", f"methods: unknown {', '.join(map(brief, unknown))}{suggest_in(unknown[0], tuple(METHODS))}; "
                        f"choose from {BASE}, {', '.join(METHODS)}")
    bad = [v for v in cfg.sweep_finetuning if v not in ("lora", "full")]
    if bad:
        fail("sweep_finetuning", f"sweep_finetuning takes lora and / or full, got {brief(bad[0])}")
    needs = {m: (key, bool(getattr(cfg, key))) for m, key in INSTRUMENT.items()}  # measure -> (its recipe key, set)
    for m in cfg.sweep_measures:
        if m not in needs:
            fail("sweep_measures", f"sweep_measures: unknown {brief(m)}{suggest_in(m, tuple(needs))}; choose from "
                                   f"{', '.join(needs)}")
        if not needs[m][1]:
            fail("sweep_measures", f"sweep_measures: {m} is not measured: set {needs[m][0]}")
    if cfg.forgetting_max is not None:
        if not needs[cfg.forgetting_measure][1]:
            fail("forgetting_max", f"forgetting_measure {cfg.forgetting_measure} is not measured: set "
                                   f"{needs[cfg.forgetting_measure][0]}")
        if cfg.sweep_measures and cfg.forgetting_measure not in cfg.sweep_measures:
            fail("sweep_measures", f"sweep_measures leaves out forgetting_measure {cfg.forgetting_measure}, whose budget "
                                   "the sweep's points are chosen within")
    bad = [t for t in cfg.cross_tasks if t not in BUILTIN_TASKS or t == "jsonl"]
    if bad:
        fail("cross_tasks", f"cross_tasks must be built-in tasks (squad, squad_sentence, gsm8k, mbpp, nq_open), got {', '.join(map(brief, bad))}")
    if cfg.general_benchmarks:
        from s3ft.general import check_benchmarks

        try:
            check_benchmarks(cfg.general_benchmarks)
        except ValueError as e:
            fail("general_benchmarks", str(e))


def suggest_in(value: str, options: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def fields_help() -> str:
    """All fields with type, default and help (for `s3ft --help` and the docs)."""
    lines = []
    for f in dataclasses.fields(S3FTConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"  --{f.name} ({_type_str(f.name)}, default {default!r})\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)
