"""Write docs/bad-input.md: malformed inputs fed to the real `s3ft` command, and the message
each one gets. Every case must fail before any model is loaded, exit 2 and print no traceback.

    python scripts/bad_input_table.py [OUT.md]
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
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
        ("unknown method", "method: rft\n"),
        ("misspelled task", "task: sqaud\n"),
        ("jsonl task without data", "task: jsonl\n"),
        ("misspelled judge", "judge: mth\n"),
        ("zero learning rate", "learning_rate: 0\n"),
        ("negative size", "train_size: -5\n"),
        ("empty model", "model: null\n"),
        ("list expected", "lora_target_modules: {a: 1}\n"),
    ]:
        out.append(("recipe", desc, ["run", recipe(desc.replace(" ", "_"), base + text)]))
    out.append(("recipe", "recipe file missing", ["run", str(tmp / "nope.yaml")]))
    ok = recipe("ok", base + "task: squad\n")
    # command line
    out.append(("command line", "misspelled option", ["run", ok, "--num_train_epoch", "2"]))
    out.append(("command line", "option without value", ["run", ok, "--seed"]))
    out.append(("command line", "wrong type", ["run", ok, "--learning_rate", "fast"]))
    out.append(("command line", "unknown stage for --force", ["run", ok, "--force", "gen"]))
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
    out.append(("judge", "code judge without opt-in", ["run", recipe("code", base + "task: mbpp\n")]))
    judge_py = tmp / "my_judge.py"
    judge_py.write_text("def judge(example, response):\n    return example.meta['answer'] in response\n"
                        "def two_args(response):\n    return True\n")
    out.append(("judge", "own judge: file missing", ["run", recipe("judge_nofile", base + f"judge: {tmp / 'nope.py'}:judge\n")]))
    out.append(("judge", "own judge: misspelled function", ["run", recipe("judge_nofunc", base + f"judge: {judge_py}:jugde\n")]))
    out.append(("judge", "own judge: wrong signature", ["run", recipe("judge_sig", base + f"judge: {judge_py}:two_args\n")]))
    trivia = ROOT / "examples" / "trivia_train.jsonl"
    out.append(("judge", "own judge raises on a gold answer (preflight)",
                ["run", recipe("judge_raises", base + "task: jsonl\nid_field: id\nprompt_field: question\nresponse_field: answer\n"
                               f"data_files: {{train: {trivia}, test: {trivia}}}\njudge: {judge_py}:judge\n")]))
    # user data files
    bad_cases, write = _data_cases()
    for name, lines, options, *_ in bad_cases:
        path = write(tmp / f"{name.replace(' ', '_').replace('/', '_')}.jsonl", lines)
        opts = "".join(f"{k}: {v}\n" for k, v in options.items())
        out.append(("data file", name, ["run", recipe("data_" + name.replace(" ", "_").replace("/", "_"),
                                                      base + f"task: jsonl\ndata_files: {{train: {path}, test: {path}}}\n" + opts)]))
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
    return out


def build_table() -> list[tuple[str, str, int, str]]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind, desc, argv in cases(tmp):
            code, err = run_cli(argv)
            rows.append((kind, desc, code, err.replace(d, "/tmp/x")))
    return rows


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "docs" / "bad-input.md"
    rows = build_table()
    lines = ["# What s3ft says about bad input", "",
             f"Generated by `python scripts/bad_input_table.py` ({len(rows)} cases). Each input is given to the real "
             "`s3ft` command; every one is refused before any model is loaded or any work is done, with exit "
             "code 2 and no traceback (`s3ft --debug ...` shows one). Paths are shortened to /tmp/x.", "",
             "| # | input | case | exit | message |", "|---|---|---|---|---|"]
    for i, (kind, desc, code, err) in enumerate(rows, 1):
        msg = err.replace("|", "\\|").replace("\n", " ").replace("`", "'")
        lines.append(f"| {i} | {kind} | {desc} | {code} | `{msg}` |")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out} ({len(rows)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
