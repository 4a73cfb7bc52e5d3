"""Taking the fine-tuned model away: `s3ft export` (a plain transformers folder + model card,
optionally pushed to the Hub), `s3ft predict` (resumable batch answers) and `s3ft chat` (stdin),
all on one tiny `s3ft run` shared by the module."""
import dataclasses
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from s3ft.cli import main
from s3ft.runs import read_jsonl

MAX_NEW = 8


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, sharp_model_dir):
    """`s3ft run` (S3FT, LoRA) on the sharp tiny model: 4 training and 3 test SQuAD questions; a
    high learning rate so that the adapter changes the model's answers."""
    root = tmp_path_factory.mktemp("use-run")
    recipe = root / "r.yaml"
    recipe.write_text(
        f"model: {sharp_model_dir}\ntask: squad\nmethod: s3ft\noutput_dir: {root / 'run'}\n"
        f"train_size: 4\neval_size: 3\nmax_new_tokens: {MAX_NEW}\nbatch_size: 4\nnum_train_epochs: 1\n"
        "per_device_train_batch_size: 2\nmax_length: 512\nlearning_rate: 0.05\ndevice: cpu\n")
    r = subprocess.run([sys.executable, "-m", "s3ft.cli", "run", str(recipe)], capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "run"


def eval_examples(run):
    from s3ft.session import Session
    from s3ft.trained import find_trained

    return Session(find_trained(run).cfg).eval_examples()


def answers(run, name):
    return {r["id"]: r for r in read_jsonl(run / "eval" / f"{name}.jsonl")}


def plain_greedy(folder, examples):
    """Greedy answers of a folder loaded with nothing but transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    out = []
    for e in examples:
        ids = tok.apply_chat_template(e.prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            gen = model.generate(**ids, max_new_tokens=MAX_NEW, do_sample=False)
        out.append(tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return model, out


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported") / "model"
    assert main(["export", str(tiny_run), "--output", str(out)]) == 0
    return out


# ---------------------------------------------------------------- export
def test_export_loads_with_plain_transformers_and_answers_like_the_adapter(tiny_run, exported):
    from s3ft.backends.hf import HFGenerator

    files = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "generation_config.json"} <= files
    assert "adapter_config.json" not in files  # merged: no PEFT needed to load it
    assert "chat_template.jinja" in files or "chat_template" in json.loads((exported / "tokenizer_config.json").read_text())
    examples = eval_examples(tiny_run)
    model, plain = plain_greedy(exported, examples)
    assert str(next(model.parameters()).dtype) == "torch.float32"  # the dtype the run evaluated in (CPU: float32)
    adapter = HFGenerator.from_name(str(tiny_run / "s3ft" / "model"), device="cpu").generate(
        [e.prompt for e in examples], MAX_NEW, progress=False)
    assert plain == adapter
    tuned, base = answers(tiny_run, "s3ft"), answers(tiny_run, "base")
    assert plain == [tuned[e.id]["response"] for e in examples]
    # the adapter changed the model, so equal answers say the merge carried it over
    assert plain != [base[e.id]["response"] for e in examples]


def test_export_model_card_comes_from_the_run(tiny_run, exported, sharp_model_dir):
    card = (exported / "README.md").read_text()
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert card.startswith("---\n") and "library_name: transformers" in card
    assert "S3FT" in card and str(sharp_model_dir) in card and "`squad` task" in card
    mix = metrics["mix"]
    assert f"## Training-set mix ({mix['n']} rows)" in card
    assert f"| the gold answer | {mix['counts']['gold']} | {mix['percent']['gold']} |" in card
    for name, label in (("base", "base model"), ("s3ft", "S3FT (this model)")):
        a = metrics["in_domain"][name]
        assert f"| {label} | {a['accuracy']}% ({a['k']}/{a['n']}; 95% CI [{a['ci95'][0]}, {a['ci95'][1]}]) |" in card
    assert "learning_rate: 0.05" in card and "train_size: 4" in card  # the config
    record = json.loads((exported / "s3ft-export.json").read_text())
    assert record["merged_adapter"] is True and record["dtype"] == "float32" and record["source"] == "s3ft/model"


def test_export_bfloat16_to_the_default_folder_and_push_to_hub(tiny_run, monkeypatch, capsys):
    import huggingface_hub
    from safetensors import safe_open

    calls = []

    def create_repo(self, repo_id, **kw):
        calls.append(("create_repo", repo_id, kw))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kw):
        calls.append(("upload_folder", kw["repo_id"], sorted(p.name for p in Path(kw["folder_path"]).iterdir())))

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert main(["export", str(tiny_run), "--dtype", "bfloat16", "--push_to_hub", "me/tiny-s3ft", "--private"]) == 0
    out = tiny_run / "s3ft" / "export"
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.bfloat16"}  # noqa: SIM118 (not iterable)
    assert calls[0] == ("create_repo", "me/tiny-s3ft", {"repo_type": "model", "private": True, "exist_ok": True})
    assert calls[1][:2] == ("upload_folder", "me/tiny-s3ft")
    assert {"README.md", "model.safetensors", "config.json", "tokenizer.json"} <= set(calls[1][2])
    assert "https://huggingface.co/me/tiny-s3ft" in capsys.readouterr().out

    def offline(self, **kw):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", offline)
    assert main(["export", str(tiny_run), "--push_to_hub", "me/tiny-s3ft"]) == 2  # replaces the earlier export
    err = capsys.readouterr().err
    assert "--push_to_hub me/tiny-s3ft: the upload failed (ConnectionError: no network)" in err and str(out) in err
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    assert main(["export", str(tiny_run), "--push_to_hub", "not a repo"]) == 2
    assert "expected a Hub repository id ORG/NAME" in capsys.readouterr().err


def test_missing_or_unfinished_runs_are_refused_naming_the_path(tiny_run, tmp_path, capsys):
    def refused(*argv):
        assert main(list(argv)) == 2
        return capsys.readouterr().err

    assert f"run directory {tmp_path / 'nope'} does not exist" in refused("export", str(tmp_path / "nope"))
    (tmp_path / "plain").mkdir()
    assert f"{tmp_path / 'plain'} is not an s3ft run directory: it has no manifest.json" in refused(
        "export", str(tmp_path / "plain"))
    assert f"{tiny_run / 'sft' / 'model'} does not exist" in refused("export", str(tiny_run), "--method", "sft")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("export", "checkpoints"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["stages"]["train.s3ft"]["status"] = "running"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"prompt": "hi"}\n')
    for argv in (["export", str(copy)], ["predict", str(copy), "--input", str(inp), "--output", str(tmp_path / "o.jsonl")],
                 ["chat", str(copy)]):
        err = refused(*argv)
        assert f"{copy / 's3ft' / 'model'} is not finished" in err and "running" in err, argv
    manifest["stages"]["train.s3ft"]["status"] = "done"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(copy / "s3ft" / "model")
    assert f"{copy / 's3ft' / 'model'} is missing" in refused("export", str(copy))
    assert not (tmp_path / "o.jsonl").exists()


def test_compare_runs_pick_the_seed_folder(tiny_run, tmp_path):
    from s3ft.trained import TrainedModelError, find_trained

    cmp = tmp_path / "cmp"
    cmp.mkdir()
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    manifest["config"]["methods"] = ["base", "sft", "s3ft"]
    (cmp / "manifest.json").write_text(json.dumps(manifest))
    (cmp / "compare.json").write_text("{}")
    trained_on = {1: {"status": "done", "dtype": "bfloat16", "device": "cpu"},  # full fine-tuning on a bf16 CPU
                  2: {"status": "done"}}
    for seed in (1, 2):
        shutil.copytree(tiny_run / "s3ft" / "model", cmp / f"seed-{seed}" / "s3ft" / "model")
        (cmp / f"seed-{seed}" / "manifest.json").write_text(json.dumps({"stages": {"train.s3ft": trained_on[seed]}}))
    with pytest.raises(TrainedModelError, match="models for seeds 1, 2: say which with --seed N"):
        find_trained(cmp)
    tm = find_trained(cmp, seed=2)
    assert tm.model_dir == cmp / "seed-2" / "s3ft" / "model" and tm.cfg.seed == 2 and tm.is_compare
    # the model card's records: the shared data stages from the run, the model's own from its seed folder
    assert tm.record("build.s3ft")["mix"] == manifest["stages"]["build.s3ft"]["mix"]
    assert tm.record("train.s3ft") == {"status": "done"} and tm.record("eval.s3ft") == {}
    assert tm.record("eval.base") == manifest["stages"]["eval.base"]
    # export's default dtype: what the run evaluated in (CPU: float32; a GPU: the dtype it trained in)
    assert find_trained(cmp, seed=1).eval_dtype() == "float32"
    trained_on[1]["device"] = "cuda:0"
    (cmp / "seed-1" / "manifest.json").write_text(json.dumps({"stages": {"train.s3ft": trained_on[1]}}))
    assert find_trained(cmp, seed=1).eval_dtype() == "bfloat16"
    manifest["config"]["dtype"] = "float16"
    (cmp / "manifest.json").write_text(json.dumps(manifest))
    assert find_trained(cmp, seed=1).eval_dtype() == "float16"  # an explicit recipe dtype
    with pytest.raises(TrainedModelError, match="seed-2/sft/model does not exist"):
        find_trained(cmp, "sft", seed=2)


# ---------------------------------------------------------------- predict
def test_predict_gives_the_runs_eval_answers_and_resumes(tiny_run, tmp_path, capsys):
    examples = eval_examples(tiny_run)
    tuned = answers(tiny_run, "s3ft")
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    # the jsonl task's messages format: the last assistant turn (the gold) is not part of the prompt
    inp.write_text("".join(json.dumps({"id": e.id, "messages": e.prompt + [{"role": "assistant", "content": e.gold}]}) + "\n"
                           for e in examples))
    argv = ["predict", str(tiny_run), "--input", str(inp), "--output", str(out), "--messages_field", "messages"]
    assert main(argv) == 0
    rows = read_jsonl(out)
    assert all(list(r) == ["id", "prompt", "response", "stop"] for r in rows)
    assert {r["id"]: (r["prompt"], r["response"], r["stop"]) for r in rows} == {
        e.id: (e.prompt, tuned[e.id]["response"], tuned[e.id]["stop"]) for e in examples}
    # killed after one row and half of the next: a rerun answers the rest, nothing doubled
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][:15])
    capsys.readouterr()
    assert main(argv) == 0
    assert f"{len(examples) - 1} answers written (1 already there)" in capsys.readouterr().out
    again = read_jsonl(out)
    assert sorted(r["id"] for r in again) == sorted(e.id for e in examples)
    assert {r["id"]: r for r in again} == {r["id"]: r for r in rows}
    assert main(argv) == 0 and "0 answers written" in capsys.readouterr().out
    # refused: writing over the input, continuing a file written with other settings
    before = out.read_text()
    assert main([*argv[:2], "--input", str(inp), "--output", str(inp), "--messages_field", "messages"]) == 2
    assert f"--output {inp} is the input file" in capsys.readouterr().err
    assert main([*argv, "--max_new_tokens", "3"]) == 2
    assert "holds answers of another model or other settings (max_new_tokens changed)" in capsys.readouterr().err
    assert out.read_text() == before


def test_predict_prompt_field_ids_from_line_numbers(tiny_run, tmp_path):
    examples = eval_examples(tiny_run)
    assert all(len(e.prompt) == 1 and e.prompt[0]["role"] == "user" for e in examples)
    tuned = answers(tiny_run, "s3ft")
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("\n".join(json.dumps({"question": e.prompt[0]["content"]}) for e in examples) + "\n")
    assert main(["predict", str(tiny_run), "--input", str(inp), "--output", str(out), "--prompt_field", "question"]) == 0
    got = {r["id"]: r for r in read_jsonl(out)}
    assert got == {str(i): {"id": str(i), "prompt": e.prompt[0]["content"], "response": tuned[e.id]["response"],
                            "stop": tuned[e.id]["stop"]} for i, e in enumerate(examples, start=1)}


class Recording:
    """A generator that answers `reply N` and records the prompts it was given."""

    def __init__(self):
        self.prompts = []

    def stream(self, prompts, max_new_tokens, **kw):
        for i, p in enumerate(prompts):
            self.prompts.append(p)
            yield i, f"reply {len(self.prompts)}", "end_of_turn"


def test_the_runs_system_prompt_goes_to_predict_and_chat(tiny_run, tmp_path, monkeypatch):
    from s3ft.predict import chat, predict
    from s3ft.session import ModelPool
    from s3ft.trained import find_trained

    gen = Recording()
    monkeypatch.setattr(ModelPool, "load", lambda self, model: gen)
    tm = find_trained(tiny_run)
    tm.cfg = dataclasses.replace(tm.cfg, system_prompt="Be brief.")
    sys_msg = {"role": "system", "content": "Be brief."}
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "a", "messages": [{"role": "system", "content": "other"},
                                                       {"role": "user", "content": "q"}]}) + "\n")
    predict(tm, inp, tmp_path / "out.jsonl", messages_field="messages")
    assert gen.prompts == [[sys_msg, {"role": "user", "content": "q"}]]
    gen.prompts.clear()
    stdout = io.StringIO()
    assert chat(tm, stdin=io.StringIO("hello\n\nmore\n/reset\nagain\n"), stdout=stdout) == 0  # ends at end of input
    u = lambda t: {"role": "user", "content": t}
    a = lambda t: {"role": "assistant", "content": t}
    assert gen.prompts == [[sys_msg, u("hello")], [sys_msg, u("hello"), a("reply 1"), u("more")], [sys_msg, u("again")]]
    assert stdout.getvalue() == "reply 1\nreply 2\nreply 3\n"


# ---------------------------------------------------------------- chat
def test_chat_through_a_pipe(tiny_run):
    from s3ft.backends.hf import HFGenerator

    q1, q2 = "Who wrote Hamlet?", "And when?"
    r = subprocess.run([sys.executable, "-m", "s3ft.cli", "chat", str(tiny_run)],
                       input=f"{q1}\n{q2}\n/reset\n{q1}\n/exit\nnever answered\n", capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    gen = HFGenerator.from_name(str(tiny_run / "s3ft" / "model"), device="cpu")
    u = lambda t: {"role": "user", "content": t}
    r1 = gen.generate([[u(q1)]], MAX_NEW, progress=False)[0]
    r2 = gen.generate([[u(q1), {"role": "assistant", "content": r1}, u(q2)]], MAX_NEW, progress=False)[0]
    assert r2 != gen.generate([[u(q2)]], MAX_NEW, progress=False)[0]  # the history matters to this reply
    assert r.stdout == f"{r1}\n{r2}\n{r1}\n"  # after /reset the first question gets the first reply again
    assert "(conversation cleared)" in r.stderr


def test_predict_on_a_server_names_the_served_adapter(tiny_run, tmp_path, capsys):
    """--backend openai: the fine-tuned model is asked for by the name the server serves it as
    (--openai_model), else by its folder's path, as `s3ft eval` does."""
    from stub_server import Stub, completion

    def respond(stub, body):
        return 200, completion(f"{body['model']} says {body['messages'][-1]['content']}")

    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": "x", "prompt": "hi"}\n{"id": "y", "prompt": "there"}\n')
    with Stub(respond) as stub:
        for name, extra in (("tuned", ["--openai_model", "tuned"]), (str(tiny_run / "s3ft" / "model"), [])):
            out = tmp_path / f"{len(extra)}.jsonl"
            assert main(["predict", str(tiny_run), "--input", str(inp), "--output", str(out), "--backend", "openai",
                         "--openai_base_url", stub.url, *extra]) == 0, capsys.readouterr().err
            assert {r["id"]: (r["response"], r["stop"]) for r in read_jsonl(out)} == {
                "x": (f"{name} says hi", "end_of_turn"), "y": (f"{name} says there", "end_of_turn")}
        assert {b["max_tokens"] if "max_tokens" in b else b.get("max_completion_tokens") for b in stub.bodies} == {MAX_NEW}


def test_export_of_a_full_fine_tune_is_cast_and_saved(tiny_run, sharp_model_dir, tmp_path):
    """use_peft: false leaves a whole model in <method>/model: exported as it is, in --dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    run = tmp_path / "full"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export", "checkpoints"))
    shutil.rmtree(run / "s3ft" / "model")
    shutil.copytree(sharp_model_dir, run / "s3ft" / "model")
    out = tmp_path / "out"
    assert main(["export", str(run), "--output", str(out), "--dtype", "bfloat16"]) == 0
    got = AutoModelForCausalLM.from_pretrained(out)
    want = AutoModelForCausalLM.from_pretrained(sharp_model_dir, dtype=torch.float32)
    assert next(got.parameters()).dtype == torch.bfloat16
    sd = got.state_dict()
    assert all(torch.equal(sd[k], v.to(torch.bfloat16)) for k, v in want.state_dict().items())
    assert "Fully fine-tuned; saved in bfloat16" in (out / "README.md").read_text()
    assert json.loads((out / "s3ft-export.json").read_text())["merged_adapter"] is False
