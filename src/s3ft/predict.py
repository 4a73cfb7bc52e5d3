"""`s3ft predict` and `s3ft chat`: answers from a finished run's fine-tuned model on the run's
backend (the session's model pool), with the run's chat template, system prompt and decoding.

predict: FILE.jsonl rows (a prompt text, or chat messages) -> OUTPUT.jsonl rows
{id, prompt, response, stop}, written as they are generated and keyed by id, so that a rerun
continues where an interrupted one stopped. OUTPUT.s3ft-predict.json records what the answers
depend on (the model's files, the decoding settings, the backend); a rerun with other ones is
refused rather than mixing answers of two models in one file.

chat: lines from stdin (a terminal or a pipe) -> the model's replies on stdout, one conversation
kept as chat messages; `/reset` starts a new one, `/exit` or end of input quits."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from s3ft.backends.base import LENGTH
from s3ft.checks import brief, file_above, same_file
from s3ft.runs import file_fingerprint, fingerprint, read_jsonl, write_json
from s3ft.selection import cut_off
from s3ft.stages.common import Decoding, log, pending, stream_rows
from s3ft.trained import TrainedModel
from s3ft.types import Example, Messages

# the recipe keys `s3ft predict` / `s3ft chat` take as --key value: how and where the model generates
# (sampling uses the run's seed: --seed picks an `s3ft compare` run's training seed)
GENERATION_KEYS = ("backend", "device", "dtype", "batch_size", "temperature", "top_p", "openai_base_url",
                   "openai_model", "openai_api_key_env", "max_concurrency", "request_timeout", "max_retries",
                   "vllm_tensor_parallel_size", "vllm_pipeline_parallel_size", "vllm_distributed_executor_backend",
                   "vllm_gpu_memory_utilization", "vllm_kv_cache_gib", "vllm_max_model_len", "vllm_chunk_size")
ROLES = ("system", "user", "assistant", "tool")


class PredictError(ValueError):
    """A predict input or output that cannot be used (the CLI exits with code 2)."""


def session_for(tm: TrainedModel, settings: dict[str, Any] | None = None):
    """A session on the run's config with the generation `settings` changed (GENERATION_KEYS)."""
    from s3ft.session import Session

    bad = sorted(set(settings or {}) - set(GENERATION_KEYS))
    if bad:
        raise PredictError(f"--{bad[0]} is not a generation setting; these are: --" + ", --".join(GENERATION_KEYS))
    return Session(dataclasses.replace(tm.cfg, **(settings or {})))


def served_name(tm: TrainedModel, s, settings: dict[str, Any] | None) -> str:
    """What the model pool is asked for: the model's folder; on the openai backend, the name the
    server serves the fine-tuned model as when --openai_model gives one (vLLM:
    `--lora-modules NAME=RUN/<method>/model`), else the folder's path, as `s3ft eval` sends it."""
    if s.cfg.backend == "openai" and (settings or {}).get("openai_model"):
        return settings["openai_model"]
    return str(tm.model_dir)


def decoding_for(s, max_new_tokens: int | None) -> Decoding:
    """The run's evaluation decoding (its length limit unless `max_new_tokens` is given)."""
    d = s.decoding("eval")
    return dataclasses.replace(d, max_new_tokens=max_new_tokens) if max_new_tokens else d


def with_system_prompt(messages: Messages, system_prompt: str | None) -> Messages:
    """The run's system prompt in place of any the messages carry, as in training and evaluation
    (session.Session.examples); messages unchanged without one."""
    if not system_prompt:
        return list(messages)
    return [{"role": "system", "content": system_prompt}] + [m for m in messages if m["role"] != "system"]


# --------------------------------------------------------------------------- predict
def read_prompts(path: Path, prompt_field: str | None, messages_field: str | None, id_field: str) -> list[Example]:
    """The input rows as examples: id (the id field, else the line number), prompt messages; the
    row's prompt as given goes into meta["prompt"]. A trailing assistant turn of a messages row is
    its gold answer (the jsonl task's format) and is left out of the prompt."""
    from s3ft.checks import path_problem
    from s3ft.tasks.jsonl import iter_jsonl_rows

    if (problem := path_problem(path)) is not None:
        raise PredictError(f"--input {path} {problem if problem.startswith('is ') else '(' + problem + ')'}")
    field = messages_field or prompt_field or "prompt"
    out: list[Example] = []
    lines: dict[str, int] = {}
    for lineno, row in iter_jsonl_rows(path):
        at = f"{path} line {lineno}"
        rid = row.get(id_field, lineno)
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            raise PredictError(f"{at}, field {id_field!r}: expected a string or an integer id, got {brief(rid)}")
        rid = str(rid)
        if rid in lines:
            raise PredictError(f"{at}, field {id_field!r}: duplicate id {brief(rid)} (also on line {lines[rid]}); "
                               "give each row its own id")
        lines[rid] = lineno
        if field not in row:
            raise PredictError(f"{at}, field {field!r}: missing (the row has fields: {', '.join(map(repr, row)) or 'none'}); "
                               f"say which field holds the prompt with --prompt_field or --messages_field")
        value = row[field]
        if messages_field:
            if not (isinstance(value, list) and value and all(
                    isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in value)):
                raise PredictError(f"{at}, field {field!r}: expected chat messages, a list of "
                                   "{\"role\": \"user\", \"content\": \"...\"} objects")
            messages = [{"role": m["role"], "content": m["content"]} for m in value]
            if messages[-1]["role"] == "assistant" and len(messages) > 1:
                messages = messages[:-1]
            if messages[-1]["role"] not in ("user", "tool"):
                raise PredictError(f"{at}, field {field!r}: the last message is a {messages[-1]['role']!r} turn; "
                                   "the model answers a user turn")
            prompt: Any = messages
        else:
            if not isinstance(value, str) or not value.strip():
                raise PredictError(f"{at}, field {field!r}: expected a non-empty string, got {brief(value)}")
            messages, prompt = [{"role": "user", "content": value}], value
        out.append(Example(rid, messages, "", {"prompt": prompt}))
    return out


def meta_path(output: Path) -> Path:
    return output.with_name(output.name + ".s3ft-predict.json")


def check_output(inp: Path, out: Path) -> None:
    if out.is_dir():
        raise PredictError(f"--output {out} is a folder; give the file to write, e.g. {out / 'predictions.jsonl'}")
    if same_file(out, inp):
        raise PredictError(f"--output {out} is the input file (--input {inp}): the answers would be written into "
                           "the prompts; write them to another file")
    if (parent := file_above(out)) is not None:
        raise PredictError(f"--output {out}: {parent} is a file, so {out} cannot be made under it")


def check_resumable(out: Path, settings: dict[str, Any], fp: str) -> None:
    """An existing OUTPUT may be continued only if it was written by `s3ft predict` with the
    same model and settings (its record says so)."""
    if not out.exists() or out.stat().st_size == 0:
        return
    meta = meta_path(out)
    try:
        old = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise PredictError(f"--output {out} exists and was not written by `s3ft predict` (no readable {meta.name} "
                           "beside it); give another file, or delete it") from None
    if old.get("fingerprint") != fp:
        changed = [k for k, v in settings.items() if old.get("settings", {}).get(k) != v]
        raise PredictError(f"--output {out} holds answers of another model or other settings "
                           f"({', '.join(changed) or 'the model files'} changed); give another file, or delete it "
                           "(and its " + meta.name + ") to start over")


def predict(tm: TrainedModel, input_path: str | Path, output_path: str | Path, prompt_field: str | None = None,
            messages_field: str | None = None, id_field: str = "id", max_new_tokens: int | None = None,
            settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Answer every row of `input_path` not yet in `output_path` (module docstring); returns
    {rows, done_before, written, output, cut_off}."""
    inp, out = Path(input_path), Path(output_path)
    check_output(inp, out)
    s = session_for(tm, settings)
    c = s.cfg
    decoding = decoding_for(s, max_new_tokens)
    examples = read_prompts(inp, prompt_field, messages_field, id_field)
    examples = [Example(e.id, with_system_prompt(e.prompt, c.system_prompt), e.gold, e.meta) for e in examples]
    model = served_name(tm, s, settings)
    record = {"model": tm.describe(), "method": tm.method, "seed": tm.seed, "backend": c.backend,
              "max_new_tokens": decoding.max_new_tokens, "temperature": c.temperature, "top_p": c.top_p,
              "seed_sampling": c.seed if c.temperature > 0 else None, "dtype": decoding.dtype,
              "served": list(decoding.served), "system_prompt": c.system_prompt}
    fp = fingerprint("predict", file_fingerprint(tm.model_dir), {k: v for k, v in record.items() if k != "model"})
    check_resumable(out, record, fp)
    todo, _ = pending(out, examples)
    done = len(examples) - len(todo)  # (rows of ids no longer in the input stay in the file, uncounted)
    write_json(meta_path(out), {"fingerprint": fp, "settings": record, "input": str(inp)})
    log(f"predict: {len(todo)} prompts to answer ({done} already in {out}) with the {tm.describe()} "
        f"on the {c.backend} backend, max_new_tokens {decoding.max_new_tokens}")
    stream_rows(out, todo, s.generator(model), [e.prompt for e in todo], decoding.max_new_tokens, decoding.kwargs(),
                "predict", lambda batch: [{"id": e.id, "prompt": e.meta["prompt"], "response": t} for e, t, _ in batch],
                flush_every=1)
    ids = {e.id for e in examples}
    rows = [r for r in read_jsonl(out) if r["id"] in ids]
    return {"rows": len(examples), "done_before": done, "written": len(todo), "output": str(out),
            "cut_off": sum(cut_off(r) for r in rows)}


# --------------------------------------------------------------------------- chat
def chat(tm: TrainedModel, stdin: TextIO | None = None, stdout: TextIO | None = None, max_new_tokens: int | None = None,
         settings: dict[str, Any] | None = None) -> int:
    """An interactive conversation with the model (module docstring). Replies go to `stdout`,
    everything else (loading, hints, cut-off notes) to stderr, so a pipe's output is the replies."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    s = session_for(tm, settings)
    c = s.cfg
    decoding = decoding_for(s, max_new_tokens)
    model = served_name(tm, s, settings)
    tty = stdin.isatty() and stdout.isatty()
    with contextlib.redirect_stdout(sys.stderr):  # the pool's "loading ..." line is not a reply
        s.models.load(model)
    generator = s.generator(model)
    start: Messages = [{"role": "system", "content": c.system_prompt}] if c.system_prompt else []
    history = list(start)
    print(f"s3ft chat: the {tm.describe()}; max_new_tokens {decoding.max_new_tokens}. "
          "/reset starts a new conversation, /exit quits.", file=sys.stderr, flush=True)
    while True:
        try:
            line = input("you> ") if tty else stdin.readline()
        except (EOFError, KeyboardInterrupt):  # Ctrl-D / Ctrl-C at the prompt: the end of the conversation
            print(file=sys.stderr)
            break
        if not tty and not line:
            break  # end of input
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            history = list(start)
            print("(conversation cleared)", file=sys.stderr, flush=True)
            continue
        history.append({"role": "user", "content": line.rstrip("\r\n")})
        (_, reply, stop), = generator.stream([list(history)], decoding.max_new_tokens, progress=False, **decoding.kwargs())
        history.append({"role": "assistant", "content": reply})
        print(reply, file=stdout, flush=True)
        if stop == LENGTH:
            print(f"(reply cut off at {decoding.max_new_tokens} tokens; --max_new_tokens N allows longer ones)",
                  file=sys.stderr, flush=True)
    return 0
