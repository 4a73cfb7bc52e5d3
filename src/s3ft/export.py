"""`s3ft export`: a finished run's fine-tuned model as a standard transformers folder that
anyone can load with `AutoModelForCausalLM.from_pretrained` - a LoRA adapter merged into its base
model in float32 (PEFT `merge_and_unload`) and then cast to the requested dtype (a full
fine-tuned model is cast the same way) - with the tokenizer and its chat template, and a model
card (README.md) built from the run's own records; optionally uploaded to the Hugging Face Hub.

Folder written (safetensors):
    config.json, generation_config.json, model.safetensors   the model
    tokenizer.json, tokenizer_config.json, chat_template.jinja, ...   the tokenizer
    README.md          the model card: method, base model, data, training-set mix, in-domain
                       accuracy base vs fine-tuned (95% CI), general benchmarks, the config
    s3ft-export.json   what was exported from where (a later export may replace this folder)"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from s3ft.checks import file_above
from s3ft.methods import METHODS
from s3ft.models import EMBEDDED_ALIASES
from s3ft.runs import file_fingerprint, versions
from s3ft.stages.common import log
from s3ft.trained import TrainedModel, TrainedModelError

EXPORT_RECORD = "s3ft-export.json"
EXPORT_DTYPES = ("float32", "bfloat16", "float16")
EMBEDDED_HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the embedded default is a GGUF copy of
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def default_output(tm: TrainedModel) -> Path:
    return tm.method_run / tm.method / "export"


def check_repo_id(repo_id: str) -> None:
    if not REPO_ID.match(repo_id) or ".." in repo_id or len(repo_id) > 96:
        raise TrainedModelError(f"--push_to_hub {repo_id!r}: expected a Hub repository id ORG/NAME (letters, digits, "
                                "'-', '_', '.'), e.g. my-org/smollm2-squad-s3ft")


def check_output(out: Path, tm: TrainedModel) -> None:
    """OUT is a new folder, an empty one, or an earlier export (replaced); never the model itself
    nor a folder holding other files."""
    src = tm.model_dir.resolve()
    target = out.resolve()
    if target == src or src in target.parents or target in src.parents:
        raise TrainedModelError(f"--output {out}: it overlaps the run's model folder {tm.model_dir}; give another folder")
    if os.path.lexists(out) and not out.is_dir():
        raise TrainedModelError(f"--output {out} is a file; give a folder to write the model into")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_RECORD).is_file():
        raise TrainedModelError(f"--output {out} is not empty and is not an earlier `s3ft export` (no {EXPORT_RECORD}); "
                                "give a new or empty folder")
    if (parent := file_above(out)) is not None:
        raise TrainedModelError(f"--output {out}: {parent} is a file, so the folder cannot be made under it")


def export(tm: TrainedModel, output: str | Path | None = None, dtype: str | None = None) -> Path:
    """Write `tm`'s model as a plain transformers folder (module docstring); returns the folder."""
    import torch
    from transformers import AutoModelForCausalLM

    from s3ft.backends.base import stop_ids
    from s3ft.models import load_tokenizer, pretrained_kwargs

    out = Path(output) if output else default_output(tm)
    check_output(out, tm)
    dtype = dtype or tm.eval_dtype()
    if dtype not in EXPORT_DTYPES:
        raise TrainedModelError(f"--dtype {dtype!r}: one of {', '.join(EXPORT_DTYPES)}")
    opts = tm.cfg.model_options(str(tm.model_dir))  # revision (a hub base), trust_remote_code
    tokenizer = load_tokenizer(str(tm.model_dir), **opts)  # saved by training, with the chat template it used
    if tm.is_adapter:
        import warnings

        from peft import PeftModel

        base = tm.base_path()
        log(f"export: merging the LoRA adapter {tm.model_dir} into {base} (float32), then casting to {dtype}")
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32,
                                                     **pretrained_kwargs(base, opts["revision"], opts["trust_remote_code"]))
        with warnings.catch_warnings():  # PEFT asks transformers 5 a deprecated question
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = PeftModel.from_pretrained(model, str(tm.model_dir)).merge_and_unload()
    else:
        log(f"export: the fully fine-tuned model {tm.model_dir}, cast to {dtype}")
        model = AutoModelForCausalLM.from_pretrained(str(tm.model_dir), dtype=torch.float32,
                                                     **pretrained_kwargs(str(tm.model_dir), None, opts["trust_remote_code"]))
    model = model.to(getattr(torch, dtype)).eval()
    gen = model.generation_config
    stops = stop_ids(tokenizer, gen)  # a plain `generate` stops where s3ft's generators stop
    gen.eos_token_id = stops[0] if len(stops) == 1 else stops
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        record = export_record(tm, dtype)
        (tmp / "README.md").write_text(model_card(tm, dtype), encoding="utf-8")
        (tmp / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if out.exists():  # an earlier export (check_output): replaced whole
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"export: {out} ({dtype}, {'merged LoRA adapter' if tm.is_adapter else 'full fine-tune'}; model card README.md)")
    return out


def export_record(tm: TrainedModel, dtype: str) -> dict[str, Any]:
    return {"method": tm.method, "seed": tm.seed if tm.is_compare else None, "run": tm.run.path.name,
            "point": {k: tm.point.get(k) for k in ("learning_rate", "epoch", "peft", "alpha")} if tm.point else None,
            "source": str(tm.model_dir.relative_to(tm.run.path)), "source_fingerprint": file_fingerprint(tm.model_dir),
            "merged_adapter": tm.is_adapter, "dtype": dtype, "base_model": tm.cfg.model,
            "system_prompt": tm.cfg.system_prompt, "s3ft": versions().get("s3ft"),
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S")}


# --------------------------------------------------------------------------- the model card
def base_hub_name(model: str) -> str | None:
    """The base model's Hub id for the card's metadata: a hub name as given, the embedded default's
    original; None for a local folder or file."""
    if model.lower() in EMBEDDED_ALIASES:
        return EMBEDDED_HUB_NAME
    if model.count("/") == 1 and not model.startswith((".", "/", "~")) and not Path(model).exists():
        return model
    return None


def _acc(a: dict[str, Any] | None) -> str:
    if not a or a.get("n") is None:
        return "not evaluated"
    ci = a.get("ci95")
    return f"{a['accuracy']}% ({a['k']}/{a['n']}" + (f"; 95% CI [{ci[0]}, {ci[1]}]" if ci else "") + ")"


def model_card(tm: TrainedModel, dtype: str) -> str:
    """README.md for the exported folder, from the run's manifest records (and compare.json)."""
    import yaml

    c, m = tm.cfg, METHODS[tm.method]
    hub = base_hub_name(c.model)
    base_text = (f"`{hub}` (s3ft's embedded default, `{c.model}`)" if hub and hub != c.model
                 else f"`{c.model}`")
    tags = list(dict.fromkeys(["s3ft", tm.method, "lora-merged" if tm.is_adapter else "full-fine-tune"]))
    meta: dict[str, Any] = {"library_name": "transformers", "pipeline_tag": "text-generation", "tags": tags}
    if hub:
        meta["base_model"] = hub
    train = tm.record(f"train.{tm.method}")
    mix = tm.record(f"build.{tm.method}").get("mix")
    acc_base = tm.record("eval.base").get("accuracy")
    acc_tuned = tm.record(f"eval.{tm.name}").get("accuracy")
    judge = judge_name(tm)
    data = ("your own data (`task: jsonl`): " + ", ".join(f"{split}: `{Path(str(f)).name}`" for split, files in
                                                      c.data_files.items() for f in (files if isinstance(files, list) else [files]))
            if c.task == "jsonl" else f"the `{c.task}` task")
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {m.display} fine-tune of {hub or Path(c.model).name}", "",
             f"Fine-tuned from {base_text} with **{m.display}** ({m.paper}; training target: {m.summary}) "
             f"with s3ft, on {data}. "
             + (f"Trained as a LoRA adapter (r {c.lora_r}, alpha {c.lora_alpha}), merged into the base model in "
                f"float32 and saved in {dtype}." if tm.is_adapter else f"Fully fine-tuned; saved in {dtype}."), ""]
    lines += ["## Data", "",
              f"- training: {c.train_split} split" + (f", {c.train_size} examples (seeded subset, data_seed {c.data_seed})"
                                                     if c.train_size else ""),
              f"- evaluation: {c.eval_split} split" + (f", {c.eval_size} examples" if c.eval_size else "")
              + f", judged by the `{judge}` judge"]
    if c.system_prompt:
        lines.append(f"- system prompt (used in training and evaluation; give it to the model too): `{c.system_prompt}`")
    lines.append("")
    if mix:
        cnt, pct = mix["counts"], mix["percent"]
        lines += [f"## Training-set mix ({mix['n']} rows)", "", "| target | rows | % |", "|---|---|---|"]
        lines += [f"| {name} | {cnt.get(k, 0)} | {pct.get(k, 0)} |" for k, name in
                  (("self", "the base model's own answer (judged correct)"), ("paraphrase", "its paraphrase of the gold"),
                   ("gold", "the gold answer"))]
        lines.append("")
    lines += [f"## In-domain accuracy ({c.task}, {c.eval_split} split)", "", "| model | accuracy |", "|---|---|",
              f"| base model | {_acc(acc_base)} |", f"| {m.display} (this model) | {_acc(acc_tuned)} |", ""]
    if not acc_tuned:
        lines += ["The run has not evaluated this model yet (`s3ft eval RECIPE`).", ""]
    general = {"base": tm.record("general.base").get("results") or {},
               m.display: tm.record(f"general.{tm.name}").get("results") or {}}
    benches = sorted({b for r in general.values() for b in r})
    if benches:
        lines += ["## General benchmarks (lm-evaluation-harness" + (f", {c.general_limit} seeded questions each"
                                                                     if c.general_limit else "") + ")", "",
                  "| benchmark | metric | base | " + m.display + " |", "|---|---|---|---|"]
        for b in benches:
            rb, rt = general["base"].get(b, {}), general[m.display].get(b, {})
            lines.append(f"| {b} | {rt.get('metric') or rb.get('metric') or ''} | {_num(rb.get('value'))} | "
                         f"{_num(rt.get('value'))} |")
        lines.append("")
    # s3ft compare's tuned values (a sweep point has its own learning rate and epochs)
    chosen = {} if tm.point else (tm.compare_result().get("tuning") or {}).get("chosen") or {}
    if tm.point:
        p = tm.point
        lines += ["## Sweep point", "",
                  f"This is one point of an `s3ft compare` learning-forgetting sweep: learning rate {p['learning_rate']:g}, "
                  f"the model at the end of epoch {p['epoch']:g} of a {c.num_train_epochs:g}-epoch run"
                  + (f", interpolated toward the base model with alpha {p['alpha']:g} (WiSE-FT: {p['alpha']:g} of the "
                     "fine-tuning update)" if p.get("alpha", 1.0) < 1 else "") + ". Its forgetting against the base model: "
                  + ", ".join(f"{k} {p[k]:.4g}" for k in ("ifeval_drop", "kl_general", "kl_task", "mc_drop")
                              if isinstance(p.get(k), (int, float)))
                  + (f" (means over the sweep's {len(p['seeds'])} training seeds; this model is seed {c.seed})"
                     if len(p.get("seeds") or []) > 1 else "") + " (docs/compare.md#frontiers in s3ft).", ""]
    if train:
        lines += ["## Training", "",
                  f"{train.get('global_step')} optimizer steps, final training loss {_num(train.get('train_loss'))}, "
                  f"learning rate {chosen.get('learning_rate', c.learning_rate):g}, "
                  + (f"epoch {tm.point['epoch']:g} of a {c.num_train_epochs:g}-epoch run (the steps and loss are the whole "
                     "run's)" if tm.point else f"{chosen.get('num_train_epochs', c.num_train_epochs):g} epoch(s)")
                  + f", computed in {train.get('dtype')} on "
                  f"{train.get('device')}, seed {c.seed}" + (" of an `s3ft compare` run" if tm.is_compare else "")
                  + (" (learning rate and epochs chosen by its tuning on the "
                     f"{c.tune_split} split)" if chosen else "") + ".", ""]
    prompt = ([{"role": "system", "content": c.system_prompt}] if c.system_prompt else []) + \
        [{"role": "user", "content": "Your question here"}]
    lines += ["## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              'model = AutoModelForCausalLM.from_pretrained("THIS_FOLDER_OR_REPO")',
              'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER_OR_REPO")',
              f"messages = {prompt!r}",
              "ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\", return_dict=True)",
              "out = model.generate(**ids, max_new_tokens=256, do_sample=False)",
              "print(tokenizer.decode(out[0, ids[\"input_ids\"].shape[1]:], skip_special_tokens=True))", "```", ""]
    config = {k: v for k, v in c.to_dict().items() if k not in ("output_dir",)}
    lines += ["## Run configuration", "",
              ("<details><summary>The run's s3ft recipe, every key (<code>s3ft run</code> takes it back as a "
               "recipe)</summary>"), "",
              "```yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True).strip(), "```", "", "</details>", "",
              f"Exported by s3ft {versions().get('s3ft', '')} on {time.strftime('%Y-%m-%d')}.", ""]
    return "\n".join(lines)


def judge_name(tm: TrainedModel) -> str:
    """The judge the run scored answers with: its recipe's, else its task's default."""
    if tm.cfg.judge:
        return tm.cfg.judge
    try:
        from s3ft.session import Session

        return Session(tm.cfg).judge_name
    except Exception:  # noqa: BLE001 - a task that cannot be built here (moved data) only loses this line
        return "the task's default"


def _num(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return "" if x is None else str(x)


# --------------------------------------------------------------------------- the Hub
def push_to_hub(folder: Path, repo_id: str, private: bool = False) -> str:
    """Create the Hub model repository `repo_id` (if it does not exist) and upload `folder` to it;
    returns the repository's URL. Needs a token (`hf auth login`, or HF_TOKEN)."""
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    api = HfApi()
    log(f"export: uploading {folder} to the Hub as {repo_id}" + (" (private)" if private else ""))
    try:
        url = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                          commit_message=f"s3ft export of {folder.name}")
    except Exception as e:  # noqa: BLE001 - no network, no token, no permission: the exported folder stays
        raise TrainedModelError(f"--push_to_hub {repo_id}: the upload failed ({type(e).__name__}: {str(e).strip()[:300]}); "
                                f"the exported model is in {folder} - upload it later with "
                                f"`hf upload {repo_id} {folder}`") from None
    return str(url)
