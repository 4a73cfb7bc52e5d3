"""Write docs/bad-input.md: malformed inputs fed to the real `s3ft` command, and the message
each one gets. Every case must fail before any model is loaded, exit 2 and print no traceback.

    python scripts/bad_input_table.py [OUT.md]
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _data_cases():
    spec = importlib.util.spec_from_file_location("jsonl_cases", ROOT / "tests" / "tasks" / "test_jsonl_task.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.BAD_CASES, mod.write


def run_cli(argv: list[str]) -> tuple[int, str]:
    from s3ft.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = e.code
    return code, err.getvalue().strip()


def _base_model(folder: Path) -> Path:
    """A model folder whose tokenizer has no chat template (a word-level one, built here)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>", "capital", "of", "france", "paris"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>").save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


def _chat_model(folder: Path, context: int) -> Path:
    """A model folder that passes every check made before weights load: a word-level tokenizer
    with a chat template, and a config whose context is `context` tokens (no weights: nothing may
    load them)."""
    _base_model(folder)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["chat_template"] = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": context}))
    return folder


def _run_dir(folder: Path, lock: str | None = None) -> Path:
    """An s3ft run directory (its manifest says so), optionally with a `.lock`."""
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"s3ft_run": {"format": 1, "version": "0"}, "stages": {}}))
    if lock is not None:
        (folder / ".lock").write_text(lock)
    return folder


def cases(tmp: Path) -> list[tuple[str, str, list[str]]]:
    """(kind, description, argv) for every malformed input."""
    model = tmp / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    out = []

    def recipe(name: str, text: str) -> str:
        p = tmp / f"{name}.yaml"
        p.write_text(text)
        return str(p)

    base = f"model: {model}\noutput_dir: {tmp / 'run'}\n"
    # recipes
    for desc, text in [
        ("misspelled key", "task: squad\nlearnig_rate: 1e-4\n"),
        ("wrong type", "task: squad\ntrain_size: lots\n"),
        ("bool expected", "use_peft: maybe\n"),
        ("invalid YAML", "task: squad\n  bad: [\n"),
        ("not a mapping", "- a\n- b\n"),
        ("unknown method", "method: xft\n"),
        ("misspelled task", "task: sqaud\n"),
        ("jsonl task without data", "task: jsonl\n"),
        ("misspelled judge", "judge: mth\n"),
        ("zero learning rate", "learning_rate: 0\n"),
        ("negative size", "train_size: -5\n"),
        ("empty model", "model: null\n"),
        ("list expected", "lora_target_modules: {a: 1}\n"),
        # settings that used to pass and silently ruin a run
        ("infinite learning rate", "learning_rate: .inf\n"),
        ("lora_alpha 0 (the fine-tuned model would be the base model)", "lora_alpha: 0\n"),
        ("misspelled qa_policy", "qa_policy: contain\n"),
        ("qa_f1_threshold out of range", "qa_f1_threshold: 5\n"),
        ("negative judge_workers", "judge_workers: -4\n"),
        ("infinite epochs", "num_train_epochs: .inf\n"),
        ("NaN temperature", "temperature: .nan\n"),
        ("unknown device", "device: banana\n"),
        ("unknown learning-rate schedule", "lr_scheduler_type: cosin\n"),
        ("output_dir is the filesystem root", "output_dir: /\n"),
        # recipes that used to end in a traceback, a hang or a silently dropped key
        ("duplicate key", "seed: 1\nseed: 2\n"),
        ("YAML billion laughs (anchors of anchors)", "lora_target_modules:\n  - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
         + "".join(f"  - &{y} [{', '.join([f'*{x}'] * 9)}]\n" for x, y in zip("abcdefgh", "bcdefghi"))),
        ("nested 20000 lists deep", "lora_target_modules: " + "[" * 20000 + "]" * 20000 + "\n"),
        ("integer of 5000 digits", "seed: 1" + "0" * 5000 + "\n"),
        ("lone surrogate in a value", 'model: "caf\\ud800"\n'),
        ("data_files: a list inside a split's list", "task: jsonl\ndata_files: {train: [a.jsonl, [b.jsonl]]}\n"),
    ]:
        head = "".join(line + "\n" for line in base.splitlines()  # (a key given twice is an error of its own)
                       if line.split(":")[0] not in {t.split(":")[0] for t in text.splitlines()})
        out.append(("recipe", desc, ["run", recipe(desc.replace(" ", "_").replace("/", "_")[:40], head + text)]))
    out.append(("recipe", "recipe file missing", ["run", str(tmp / "nope.yaml")]))
    fifo = tmp / "fifo.yaml"
    os.mkfifo(fifo)
    out.append(("recipe", "recipe is a FIFO", ["run", str(fifo)]))
    loop = tmp / "loop.yaml"
    loop.symlink_to(loop)
    out.append(("recipe", "recipe is a symbolic link loop", ["run", str(loop)]))
    ok = recipe("ok", base + "task: squad\n")
    # command line
    out.append(("command line", "misspelled option", ["run", ok, "--num_train_epoch", "2"]))
    out.append(("command line", "option without value", ["run", ok, "--seed"]))
    out.append(("command line", "wrong type", ["run", ok, "--learning_rate", "fast"]))
    out.append(("command line", "unknown stage for --force", ["run", ok, "--force", "gen"]))
    out.append(("command line", "infinite learning rate", ["run", ok, "--learning_rate", "inf"]))
    out.append(("command line", "a byte that is not UTF-8 in a value", ["run", ok, "--output_dir", "runs/caf\udce9"]))
    out.append(("command line", "duplicate key in a value", ["run", ok, "--data_files", "{train: a.jsonl, train: b.jsonl}"]))
    # models and judges
    out.append(("model", "model path missing", ["run", recipe("nomodel", f"task: squad\nmodel: {tmp / 'missing-model'}\n")]))
    out.append(("model", "model folder without config", ["run", recipe("emptymodel", f"task: squad\nmodel: {tmp}\n")]))
    out.append(("model", "gguf file missing", ["run", recipe("nogguf", f"task: squad\nmodel: {tmp / 'x.gguf'}\n")]))
    data = tmp / "ok.jsonl"
    data.write_text(json.dumps({"prompt": "Capital of France?", "response": "Paris"}) + "\n")
    jsonl = f"task: jsonl\ndata_files: {{train: {data}, test: {data}}}\noutput_dir: {tmp / 'run'}\n"
    out.append(("model", "model folder without a tokenizer", ["run", recipe("notok", jsonl + f"model: {model}\n")]))
    out.append(("model", "tokenizer without a chat template (a base model)",
                ["run", recipe("notemplate", jsonl + f"model: {_base_model(tmp / 'base-model')}\n")]))
    out.append(("model", "chat_template file missing", ["run", recipe("template_missing", jsonl + f"model: {model}\n"
                                                                      f"chat_template: {tmp / 'chatml.jinja'}\n")]))
    out.append(("model", "chat_template that does not render (Jinja error)",
                ["run", recipe("template_broken", jsonl + f"model: {_base_model(tmp / 'templated-model')}\n"
                               "chat_template: \"{% for m in messages %}{{ m.content }\"\n")]))
    out.append(("model", "device cuda:7 on a machine without it", ["run", recipe("cuda", base + "task: squad\ndevice: cuda:7\n")]))
    out.append(("judge", "code judge without opt-in", ["run", recipe("code", base + "task: mbpp\n")]))
    judge_py = tmp / "my_judge.py"
    judge_py.write_text("def judge(example, response):\n    return example.meta['answer'] in response\n"
                        "def two_args(response):\n    return True\n")
    out.append(("judge", "own judge: file missing", ["run", recipe("judge_nofile", base + f"judge: {tmp / 'nope.py'}:judge\n")]))
    out.append(("judge", "own judge: misspelled function", ["run", recipe("judge_nofunc", base + f"judge: {judge_py}:jugde\n")]))
    out.append(("judge", "own judge: wrong signature", ["run", recipe("judge_sig", base + f"judge: {judge_py}:two_args\n")]))
    trivia = ROOT / "examples" / "trivia_train.jsonl"
    trivia_task = f"task: jsonl\nid_field: id\nprompt_field: question\nresponse_field: answer\ndata_files: {{train: {trivia}, test: {trivia}}}\n"
    out.append(("judge", "own judge raises on a gold answer (preflight)",
                ["run", recipe("judge_raises", base + trivia_task + f"judge: {judge_py}:judge\n")]))
    hostile = tmp / "hostile_judge.py"
    hostile.write_text("import sys\nimport time\n\ndef exits(example, response):\n    sys.exit(0)\n\n"
                       "def hangs(example, response):\n    time.sleep(3600)\n")
    script = tmp / "script_judge.py"
    script.write_text("import sys\n\ndef judge(example, response):\n    return True\n\nsys.exit(0)\n")
    out.append(("judge", "own judge calls sys.exit(0) when imported", ["run", recipe("judge_exit_import", base + trivia_task + f"judge: {script}:judge\n")]))
    out.append(("judge", "own judge calls sys.exit(0) in a call (preflight)",
                ["run", recipe("judge_exit_call", base + trivia_task + f"judge: {hostile}:exits\n")]))
    out.append(("judge", "own judge never returns (judge_timeout: 1)",
                ["run", recipe("judge_hangs", base + trivia_task + f"judge: {hostile}:hangs\njudge_timeout: 1\n")]))
    # user data files
    bad_cases, write = _data_cases()
    for name, lines, options, *_ in bad_cases:
        path = write(tmp / f"{name.replace(' ', '_').replace('/', '_')}.jsonl", lines)
        opts = "".join(f"{k}: {v}\n" for k, v in options.items())
        out.append(("data file", name, ["run", recipe("data_" + name.replace(" ", "_").replace("/", "_"),
                                                      base + f"task: jsonl\ndata_files: {{train: {path}, test: {path}}}\n" + opts)]))
    data_fifo = tmp / "fifo.jsonl"
    os.mkfifo(data_fifo)
    out.append(("data path", "a FIFO as a data file", ["run", recipe("data_fifo", base + f"task: jsonl\ndata_files: {{train: {data_fifo}}}\n")]))
    data_loop = tmp / "loop.jsonl"
    data_loop.symlink_to(data_loop)
    out.append(("data path", "a symbolic link loop as a data file", ["run", recipe("data_loop", base + f"task: jsonl\ndata_files: {{train: {data_loop}}}\n")]))
    out.append(("data path", "a list of files for one split, one missing",
                ["run", recipe("data_list", base + f"task: jsonl\ndata_files: {{train: [{data}, {tmp / 'gone.jsonl'}]}}\n")]))
    out.append(("data path", "a glob that matches no file",
                ["run", recipe("data_glob", base + f"task: jsonl\ndata_files: {{train: {tmp / 'shards' / 'train-*.jsonl'}}}\n")]))
    out.append(("dataset", "dataset_name that cannot be loaded (offline, or no such dataset)",
                ["run", recipe("data_hub", base + "task: jsonl\ndataset_name: test-org/no-such-dataset\n")]))
    missing = recipe("data_missing", base + f"task: jsonl\ndata_files: {{train: {tmp / 'none.jsonl'}}}\n")
    out.append(("data file", "file missing", ["run", missing]))
    empty = tmp / "empty.jsonl"
    empty.write_text("")
    out.append(("data file", "empty file", ["run", recipe("data_empty", base + f"task: jsonl\ndata_files: {{train: {empty}, test: {empty}}}\n")]))
    # predictions for `s3ft judge`
    preds = tmp / "preds.jsonl"
    preds.write_text(json.dumps({"id": "gsm8k-train-0", "response": "x"}) + "\n" + json.dumps({"id": "gsm8k-train-1"}) + "\n")
    out.append(("predictions", "row without response", ["judge", "--task", "gsm8k", "--predictions", str(preds), "--output", str(tmp / "o.jsonl")]))
    preds2 = tmp / "preds2.jsonl"
    preds2.write_text(json.dumps({"id": "nope", "response": "x"}) + "\n")
    out.append(("predictions", "unknown example id", ["judge", "--task", "gsm8k", "--predictions", str(preds2), "--output", str(tmp / "o.jsonl")]))
    good = tmp / "preds3.jsonl"
    good.write_text(json.dumps({"id": "gsm8k-train-0", "response": "The answer is 72."}) + "\n")
    out.append(("predictions", "--output equal to --predictions", ["judge", "--task", "gsm8k", "--predictions", str(good), "--output", str(good)]))
    out.append(("predictions", "--output is a folder", ["judge", "--task", "gsm8k", "--predictions", str(good), "--output", str(tmp)]))
    dup = tmp / "preds4.jsonl"
    dup.write_text((json.dumps({"id": "gsm8k-train-0", "response": "The answer is 72."}) + "\n") * 2)
    out.append(("predictions", "duplicate prediction id", ["judge", "--task", "gsm8k", "--predictions", str(dup), "--output", str(tmp / "o.jsonl")]))
    a, b = tmp / "split_a.jsonl", tmp / "split_b.jsonl"
    a.write_text(json.dumps({"id": 1, "question": "Capital of France?", "answer": "Paris"}) + "\n")
    b.write_text(json.dumps({"id": 1, "question": "Capital of Italy?", "answer": "Rome"}) + "\n")
    one = tmp / "preds5.jsonl"
    one.write_text(json.dumps({"id": 1, "response": "Rome"}) + "\n")
    out.append(("predictions", "an id in two splits (each file numbers from 1)",
                ["judge", "--task", "jsonl", "--data_files", f"{{train: {a}, test: {b}}}", "--id_field", "id", "--prompt_field",
                 "question", "--response_field", "answer", "--predictions", str(one), "--output", str(tmp / "o.jsonl")]))
    # the run directory (a model and data that pass every earlier check, so that these are what stops the run)
    chat = _chat_model(tmp / "chat-model", 64)
    task = f"task: jsonl\ndata_files: {{train: {data}, test: {data}}}\nmodel: {chat}\n"
    mine = tmp / "mine"
    (mine / "eval").mkdir(parents=True)
    (mine / "own.jsonl").write_text("my notes\n")
    (mine / "eval" / "base.jsonl").write_text("mine\n")
    (mine / "notes.txt").write_text("notes\n")
    out.append(("output_dir", "a folder that is not an s3ft run", ["run", recipe("dir_mine", task + f"output_dir: {mine}\n")]))
    for name, manifest in (("a list", "[1, 2]"), ("not JSON", "{oops")):
        folder = tmp / f"manifest-{name.replace(' ', '-')}"
        folder.mkdir()
        (folder / "manifest.json").write_text(manifest)
        out.append(("output_dir", f"manifest.json that is {name}", ["run", recipe(f"dir_{folder.name}", task + f"output_dir: {folder}\n")]))
    out.append(("output_dir", "output_dir is a file", ["run", recipe("dir_file", task + f"output_dir: {data}\n")]))
    out.append(("output_dir", "output_dir under a file", ["run", recipe("dir_under", task + f"output_dir: {data / 'run'}\n")]))
    other = _run_dir(tmp / "locked-elsewhere", "4242 another-host")
    out.append(("output_dir", "locked by a process on another host", ["run", recipe("dir_other_host", task + f"output_dir: {other}\n")]))
    starting = _run_dir(tmp / "lock-empty", "")
    out.append(("output_dir", "an empty lock (a process starting)", ["run", recipe("dir_empty_lock", task + f"output_dir: {starting}\n")]))
    # the model's context
    long_data = tmp / "long.jsonl"
    long_data.write_text("".join(json.dumps({"prompt": p, "response": "Paris"}) + "\n" for p in
                                 ["Capital of France?", " ".join(["capital"] * 40) + "?", "of France?"]))
    short = _chat_model(tmp / "short-model", 16)
    out.append(("model", "a prompt longer than the model's context",
                ["run", recipe("long_prompt", f"task: jsonl\ndata_files: {{train: {long_data}, test: {long_data}}}\nmodel: {short}\n"
                                              f"output_dir: {tmp / 'run'}\n")]))
    return out


def build_table() -> list[tuple[str, str, int, str]]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind, desc, argv in cases(tmp):
            code, err = run_cli(argv)
            rows.append((kind, desc, code, err.replace(d, "/tmp/x").replace(f"this is {platform.node()};", "this is HOST;")))
    return rows


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "docs" / "bad-input.md"
    rows = build_table()
    lines = ["# What s3ft says about bad input", "",
             f"Generated by `python scripts/bad_input_table.py` ({len(rows)} cases). Each input is given to the real "
             "`s3ft` command; every one is refused before any model is loaded or any work is done, with exit "
             "code 2 and no traceback (`s3ft --debug ...` shows one); a folder given as output_dir is left as it was. "
             "The output_dir rows use a model folder and data that pass every check before the run directory's. Paths "
             "are shortened to /tmp/x.", "",
             "| # | input | case | exit | message |", "|---|---|---|---|---|"]
    for i, (kind, desc, code, err) in enumerate(rows, 1):
        msg = err.replace("|", "\\|").replace("\n", " ").replace("`", "'")
        lines.append(f"| {i} | {kind} | {desc} | {code} | `{msg}` |")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out} ({len(rows)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
