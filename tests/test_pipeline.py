"""The stages wired over files: a scripted generator (answers chosen by the test) checks what
each stage writes, resume and fingerprints; the CLI test runs everything on the tiny model."""
import json
import subprocess
import sys
import time

import pytest
from cli_here import cli_here

from s3ft import pipeline
from s3ft.config import load_config
from s3ft.runs import read_jsonl
from s3ft.session import Session

N = 12


def make_data(tmp_path):
    rows = [{"id": f"q{i}", "prompt": f"What is item {i}?", "response": f"answer {i}"} for i in range(N)]
    train = tmp_path / "train.jsonl"
    test = tmp_path / "test.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    test.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    return {"train": str(train), "test": str(test)}


class ScriptedGenerator:
    """Own answers: correct for i % 3 == 0. Paraphrases: correct for i % 3 == 1, leaking
    ("the reference answer says ...") for i % 3 == 2."""

    def __init__(self, cut_off=()):
        self.calls = []
        self.cut_off = set(cut_off)  # items whose answers stop at the length limit

    def stop_reason(self, i):
        return "length" if i in self.cut_off else "end_of_turn"

    def stream(self, prompts, max_new_tokens, desc=None, **kw):
        self.calls.append((desc, len(prompts)))
        for j, p in enumerate(prompts):
            text = p[-1]["content"]
            i = int(text.split("item ")[1].split("?")[0])
            if "Reference answer" in text:
                out = f"It is answer {i}." if i % 3 == 1 else f"The reference answer says answer {i}."
            else:
                out = f"answer {i}" if i % 3 == 0 else "no idea"
            yield j, out, self.stop_reason(i)

    def generate(self, prompts, max_new_tokens, **kw):
        return [t for _, t, _ in sorted(self.stream(prompts, max_new_tokens, **kw))]


@pytest.fixture
def session(tmp_path, monkeypatch):
    files = make_data(tmp_path)
    cfg = load_config(None, {"task": "jsonl", "data_files": files, "judge": "qa", "id_field": "id", "output_dir": str(tmp_path / "run"),
                             "method": "s3ft", "model": "org/unused"})
    s = Session(cfg)
    gen = ScriptedGenerator()
    monkeypatch.setattr(Session, "generator", lambda self, model=None, dtype=None: gen)
    monkeypatch.setattr(Session, "model_id", lambda self: "scripted")
    s.run.path.mkdir(parents=True)
    return s, gen


def test_stages_write_what_the_method_says(session):
    s, gen = session
    own = read_jsonl(pipeline.judged_answers(s))
    assert len(own) == N
    assert {r["id"] for r in own if r["correct"]} == {f"q{i}" for i in range(N) if i % 3 == 0}
    para = read_jsonl(pipeline.paraphrases(s))
    # only failed own answers get a paraphrase under s3ft
    assert {r["id"] for r in para} == {f"q{i}" for i in range(N) if i % 3 != 0}
    assert {r["id"] for r in para if r["filtered"]} == {f"q{i}" for i in range(N) if i % 3 == 2}
    assert all(r["correct"] is True for r in para if not r["filtered"])
    rows = read_jsonl(pipeline.training_set(s))
    by = {r["id"]: r for r in rows}
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(N)]
    for i in range(N):
        want = {0: ("self", f"answer {i}"), 1: ("paraphrase", f"It is answer {i}."), 2: ("gold", f"answer {i}")}[i % 3]
        assert (by[f"q{i}"]["source"], by[f"q{i}"]["completion"]) == (want[0], [{"role": "assistant", "content": want[1]}])
    mix = s.run.stage_record("build.s3ft")["mix"]
    assert mix["counts"] == {"self": 4, "paraphrase": 4, "gold": 4}
    # second call: everything up to date, no generation
    n_calls = len(gen.calls)
    pipeline.training_set(s)
    assert len(gen.calls) == n_calls


def test_sdft_paraphrases_everything_and_ignores_own(session):
    s, _ = session
    s.cfg.method = "sdft"
    rows = read_jsonl(pipeline.training_set(s))
    assert len(read_jsonl(s.run / "paraphrase.jsonl")) == N
    assert not (s.run / "own.jsonl").exists()  # sdft never needs own answers
    assert {r["source"] for r in rows} == {"paraphrase", "gold"}
    assert sum(r["source"] == "paraphrase" for r in rows) == 4


def test_generate_resumes_without_duplicates(session):
    s, gen = session
    out = pipeline.own_answers(s)
    full = read_jsonl(out)
    # simulate a crash: keep 5 rows plus half a line, stage still marked running
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:5]) + lines[5][:10])
    s.run.set_stage("generate", **{**s.run.stage_record("generate"), "status": "running"})
    pipeline.own_answers(s)
    assert gen.calls[-1] == ("own answers", N - 5)
    again = read_jsonl(out)
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in full)
    assert {r["id"]: r for r in again} == {r["id"]: r for r in full}


def test_changed_generation_setting_reruns_generate(session):
    s, gen = session
    pipeline.own_answers(s)
    s.cfg.max_new_tokens = 7
    pipeline.own_answers(s)
    assert gen.calls[-1] == ("own answers", N)
    assert len(read_jsonl(s.run / "own.jsonl")) == N


def test_cli_run_end_to_end_on_tiny_model(tmp_path, tiny_model_dir, capsys):
    """`s3ft run` with the squad task on the tiny random model produces every artifact."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {tiny_model_dir}\ntask: squad\nmethod: s3ft\noutput_dir: {tmp_path / 'run'}\n"
        "train_size: 6\neval_size: 4\nmax_new_tokens: 8\nbatch_size: 4\nnum_train_epochs: 1\n"
        "per_device_train_batch_size: 2\nmax_length: 512\nlearning_rate: 1.0e-3\n"
    )
    r = subprocess.run([sys.executable, "-m", "s3ft.cli", "run", str(recipe), "--seed", "3"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    for name in ("manifest.json", "own.jsonl", "own_judged.jsonl", "paraphrase.jsonl", "train.s3ft.jsonl",
                 "s3ft/model/adapter_config.json", "eval/base.jsonl", "eval/s3ft.jsonl", "metrics.json", "summary.md"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["mix"]["n"] == 6
    assert sum(metrics["mix"]["counts"].values()) == 6
    assert metrics["in_domain"]["base"]["n"] == 4 and metrics["in_domain"]["s3ft"]["n"] == 4
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 3 and "transformers" in manifest["versions"]
    assert all(v["status"] == "done" for v in manifest["stages"].values())
    assert "In-domain accuracy" in r.stdout and "Training-set mix" in r.stdout
    # rerun: every stage is up to date, nothing regenerated
    rc, stdout, stderr = cli_here(capsys, "run", recipe, "--seed", "3")  # in this process: no second interpreter to start
    assert rc == 0, stderr[-3000:]
    assert "generate: up to date" in stdout and "train.s3ft: up to date" in stdout and "train (" not in stdout
    # --force train: training runs again, the data stages stay up to date
    r3 = subprocess.run([sys.executable, "-m", "s3ft.cli", "run", str(recipe), "--seed", "3", "--force", "train"],
                        capture_output=True, text=True, timeout=600)
    assert r3.returncode == 0, r3.stderr[-3000:]
    assert "train (s3ft): 6 rows" in r3.stdout and "generate: up to date" in r3.stdout and "build.s3ft: up to date" in r3.stdout


def test_auto_on_a_bf16_cpu_generates_and_evaluates_in_float32(tmp_path, tiny_model_dir, monkeypatch):
    """dtype auto on a CPU with native bf16: the base model writes its own answers, and every
    model is evaluated, in float32 - bf16 greedy answers and log-likelihoods depend on how they
    were batched (models.resolve_dtype) - one load per model; only full fine-tuning trains in bf16."""
    import torch

    monkeypatch.setenv("S3FT_CPU_BF16", "1")
    cfg = load_config(None, {"model": str(tiny_model_dir), "task": "squad", "output_dir": str(tmp_path / "run"),
                             "device": "cpu", "use_peft": True})
    assert cfg.resolved_dtype() == cfg.train_knobs()["dtype"] == "float32"
    s = Session(cfg)
    gen = s.models.load(cfg.model)
    assert next(gen.model.parameters()).dtype == torch.float32
    assert s.models.load(cfg.model) is gen and s.models.loaded() == [cfg.model]
    s.models.release(cfg.model)
    assert not s.models.loaded()
    full = load_config(None, {"model": str(tiny_model_dir), "device": "cpu", "use_peft": False})
    assert (full.train_knobs()["dtype"], full.resolved_dtype()) == ("bfloat16", "float32")
    explicit = load_config(None, {"model": str(tiny_model_dir), "device": "cpu", "dtype": "bfloat16"})
    assert explicit.resolved_dtype() == "bfloat16"  # an explicit dtype is never second-guessed


def test_cli_bad_recipe_exits_cleanly(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: squad\nnum_train_epoch: 2\n")
    r = subprocess.run([sys.executable, "-m", "s3ft.cli", "run", str(recipe)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "line 2: unknown key 'num_train_epoch' (did you mean 'num_train_epochs'?)" in r.stderr
    assert "Traceback" not in r.stderr


def test_paraphrase_that_drops_the_working_falls_back_to_gold(tmp_path, monkeypatch):
    """Worked golds (20+ words): a paraphrase that keeps only the final line is filtered before
    judging, with its reason, and the training row takes the gold; the ratio is in the stage's
    fingerprint (turning the check off redoes the paraphrases)."""
    worked = "First add the two parts, three and four, which gives seven; then double it because there " \
             "are two boxes, which gives fourteen. The answer is {i}"
    rows = [{"id": f"q{i}", "prompt": f"What is item {i}?", "response": worked.format(i=i)} for i in range(4)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    class Short(ScriptedGenerator):
        def stream(self, prompts, max_new_tokens, desc=None, **kw):
            for j, p in enumerate(prompts):
                i = int(p[-1]["content"].split("item ")[1].split("?")[0])
                yield j, (f"The answer is {i}" if "Reference answer" in p[-1]["content"] else "no idea"), "end_of_turn"

    cfg = load_config(None, {"task": "jsonl", "data_files": {"train": str(tmp_path / "train.jsonl")}, "judge": "qa",
                             "id_field": "id", "output_dir": str(tmp_path / "run"), "method": "sdft", "model": "org/unused"})
    s = Session(cfg)
    gen = Short()
    monkeypatch.setattr(Session, "generator", lambda self, model=None, dtype=None: gen)
    monkeypatch.setattr(Session, "model_id", lambda self: "scripted")
    s.run.path.mkdir(parents=True)
    built = read_jsonl(pipeline.training_set(s))
    para = read_jsonl(s.run / "paraphrase.jsonl")
    assert all(r["filtered"] and "working is gone" in r["filter_reason"] and r["correct"] is None for r in para)
    assert {r["source"] for r in built} == {"gold"}
    s.cfg.paraphrase_min_length_ratio = 0.0
    pipeline.training_set(s)
    para = read_jsonl(s.run / "paraphrase.jsonl")
    assert not any(r["filtered"] for r in para) and all(r["correct"] is not None for r in para)  # judged, not filtered


def test_length_check_never_applies_to_code():
    """Code paraphrases are checked by the task's tests, so a shorter program is not rejected."""
    cfg = load_config(None, {})
    for kind, want in (("code", 0.0), ("math", 0.5), ("generic", 0.5)):
        assert pipeline.paraphrase_length_ratio(cfg, kind) == want


def test_models_leave_the_gpu_before_training_but_stay_on_a_cpu(session, monkeypatch):
    """free_engines (called before training, lm-eval and log-prob scoring): with the hf backend on
    a GPU, the loaded generators are let go; on a CPU they are kept."""
    import s3ft.models

    s, _ = session
    s.models.put("base", object())
    s.models.put("judge-model", object())
    s.models.free_for_training()  # CPU
    assert s.models.loaded() == ["base", "judge-model"]
    monkeypatch.setattr(s3ft.models, "on_gpu", lambda device="auto": True)
    s.models.free_for_training()
    assert s.models.loaded() == []
    rows = read_jsonl(pipeline.judged_answers(s))  # what was let go is built again on demand
    assert len(rows) == N


def test_a_changed_gold_or_meta_rejudges(tmp_path, monkeypatch):
    """Verdicts depend on each example's gold and extras (here the qa judge's `answers`): editing
    them in the data file makes the judge stage stale, though the own answers are unchanged."""
    rows = [{"id": f"q{i}", "prompt": f"What is item {i}?", "response": f"answer {i}", "answers": [f"answer {i}"]}
            for i in range(N)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(None, {"task": "jsonl", "data_files": {"train": str(data)}, "judge": "qa", "id_field": "id",
                             "output_dir": str(tmp_path / "run"), "model": "org/unused"})
    gen = ScriptedGenerator()
    monkeypatch.setattr(Session, "generator", lambda self, model=None, dtype=None: gen)
    monkeypatch.setattr(Session, "model_id", lambda self: "scripted")
    (tmp_path / "run").mkdir()
    before = read_jsonl(pipeline.judged_answers(Session(cfg)))
    assert sum(r["correct"] for r in before) == 4  # "answer i" for i % 3 == 0, "no idea" otherwise
    rows[1]["answers"].append("no idea")  # an alias that accepts q1's own answer
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    after = {r["id"]: r["correct"] for r in read_jsonl(pipeline.judged_answers(Session(cfg)))}
    assert after["q1"] is True and sum(after.values()) == 5
    assert len(gen.calls) == 1  # the own answers were not generated again


@pytest.mark.parametrize("group", ["generate", "judge", "paraphrase", "build"])
def test_force_reruns_that_stage_once_and_nothing_else(session, group):
    """--force STAGE means the same for every stage: it runs again once in this invocation (however
    many later stages ask for it), the others stay up to date; a dotted name forces one stage."""
    s, gen = session
    pipeline.training_set(s)
    before = {k: v["finished"] for k, v in s.run.manifest()["stages"].items()}
    time.sleep(1.05)  # (records carry the second they finished)
    forced = Session(s.cfg, force={group}, shared=s.shared)
    pipeline.training_set(forced)
    pipeline.training_set(forced)  # asked again in the same invocation: not forced twice
    pipeline.paraphrases(forced)
    after = {k: v["finished"] for k, v in s.run.manifest()["stages"].items()}
    rerun = {k for k in before if after[k] != before[k]}
    assert rerun == {"build.s3ft" if group == "build" else group}
    if group == "generate":
        assert gen.calls[-1] == ("own answers", N)


def test_force_a_single_stage_by_its_full_name(session):
    s, _ = session
    for m in ("sft", "s3ft"):
        pipeline.training_set(s, m)
    before = {k: v["finished"] for k, v in s.run.manifest()["stages"].items()}
    time.sleep(1.05)
    forced = Session(s.cfg, force={"build.sft"}, shared=s.shared)
    for m in ("sft", "s3ft"):
        pipeline.training_set(forced, m)
    after = {k: v["finished"] for k, v in s.run.manifest()["stages"].items()}
    assert {k for k in before if after[k] != before[k]} == {"build.sft"}


def test_force_names_are_checked_on_the_command_line():
    from s3ft.cli import _split_force
    from s3ft.config import ConfigError

    assert _split_force(["--force", "eval", "--seed", "3", "--force=train.sft"]) == (["--seed", "3"], {"eval", "train.sft"})
    with pytest.raises(ConfigError, match="--force takes a stage name .*got evaluate"):
        _split_force(["--force", "evaluate"])


@pytest.mark.parametrize("judge", ["qa", "math"])
def test_cut_off_answers_are_never_targets(tmp_path, monkeypatch, judge):
    """Answers that hit max_new_tokens (stop reason "length") fall back like wrong ones - own ->
    paraphrase -> gold - and the mix counts the candidates passed over for it; every generated
    row records its stop reason. With the math judge too, which reads a cut-off worked answer's
    last number and may well call it right."""
    files = make_data(tmp_path)
    cfg = load_config(None, {"task": "jsonl", "data_files": files, "judge": judge, "id_field": "id",
                             "output_dir": str(tmp_path / "run"), "method": "s3ft", "model": "org/unused"})
    gen = ScriptedGenerator(cut_off={0, 1, 3})
    monkeypatch.setattr(Session, "generator", lambda self, model=None: gen)
    monkeypatch.setattr(Session, "model_id", lambda self: "scripted")
    s = Session(cfg)
    rows = {r["id"]: r for r in read_jsonl(pipeline.training_set(s))}
    assert {r["stop"] for r in read_jsonl(s.run / "own.jsonl")} == {"end_of_turn", "length"}
    own = {r["id"]: r for r in read_jsonl(s.run / "own_judged.jsonl")}
    assert own["q0"]["correct"] is True and own["q0"]["stop"] == "length"  # right as far as it goes
    para = {r["id"]: r for r in read_jsonl(s.run / "paraphrase.jsonl")}
    assert para["q1"]["filtered"] and para["q1"]["filter_reason"] == "cut off at max_new_tokens"
    assert "q0" in para  # a cut-off own answer gets a paraphrase like a wrong one
    assert (rows["q0"]["source"], rows["q0"]["cut_off"]) == ("gold", ["self", "paraphrase"])
    assert (rows["q1"]["source"], rows["q1"]["cut_off"]) == ("gold", ["paraphrase"])
    assert "cut_off" not in rows["q6"] and rows["q6"]["source"] == "self"
    mix = s.run.stage_record("build.s3ft")["mix"]
    assert mix["counts"] == {"self": 2, "paraphrase": 3, "gold": 7}
    assert mix["cut_off"] == {"self": 2, "paraphrase": 3}
    assert s.run.stage_record("generate")["cut_off"] == 3
    cut = {r["id"] for r in read_jsonl(s.run / "own.jsonl") if r["stop"] == "length"}
    assert not any(r["id"] in cut for r in rows.values() if r["source"] == "self")
    assert not any(para[r["id"]]["stop"] == "length" for r in rows.values() if r["source"] == "paraphrase")


def test_late_failing_settings_fail_before_any_work(tmp_path, tiny_model_dir):
    """Settings a library would only check when training starts - after generation, judging and
    paraphrasing - fail in the first seconds, with nothing written: a LoRA target module that the
    model does not have, a misspelled scheduler or tracker, an unknown device. The list form of a
    list key works on the command line."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {tiny_model_dir}\ntask: squad\noutput_dir: {tmp_path / 'run'}\ntrain_size: 4\neval_size: 2\n")
    for args, needle in [
        (["--lora_target_modules", "qproj", "v_proj"], "lora_target_modules: 'qproj' name no module of"),
        (["--lr_scheduler_type", "cosin"], "did you mean 'cosine'"),
        (["--report_to", "wandbb"], "did you mean 'wandb'"),
        (["--device", "gpu"], "device must be auto, cpu, cuda or cuda:N"),
    ]:
        r = subprocess.run([sys.executable, "-m", "s3ft.cli", "train", str(recipe), *args], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, (args, r.stderr[-2000:])
        assert not (tmp_path / "run" / "own.jsonl").exists()


def test_lora_targets_are_checked_against_the_models_modules(tiny_model_dir):
    from s3ft.config import parse_overrides
    from s3ft.models import ModelError, check_lora_targets

    assert parse_overrides(["--lora_target_modules", "q_proj", "v_proj", "--seed", "3"]) == {
        "lora_target_modules": ["q_proj", "v_proj"], "seed": 3}
    check_lora_targets(str(tiny_model_dir), ["q_proj", "v_proj"])
    check_lora_targets(str(tiny_model_dir), ["self_attn.q_proj"])  # PEFT matches the name's last parts too
    check_lora_targets(str(tiny_model_dir), ["all-linear"])
    with pytest.raises(ModelError, match="did you mean 'q_proj'"):
        check_lora_targets(str(tiny_model_dir), ["q_proj", "qproj"])
