"""The k-sample methods (rft, grape, s3ft_k) over files: k answers per input from the backend,
reproducible from their seed; judged; the likelihood stage scoring the candidates; the build
stage keeping what each method says; one shared pass for several methods; `s3ft run` and
`s3ft compare` end to end on the tiny model."""
import json
import subprocess
import sys

import pytest

from s3ft import pipeline
from s3ft.config import load_config
from s3ft.runs import read_jsonl
from s3ft.selection import completion_text
from s3ft.session import ModelPool, Session

N = 8
K = 4


def make_data(tmp_path, n=N):
    rows = [{"id": f"q{i}", "prompt": f"What is item {i}?", "response": f"answer {i}"} for i in range(n)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    return {"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl")}


def item(prompt):
    return int(prompt[-1]["content"].split("item ")[1].split("?")[0])


class ScriptedSampler:
    """k samples per input (the qa judge's verdicts in brackets):
    i % 4 == 0: "answer i" [right], "answer  i" [right, the same after normalising], "It is answer i." [right], "no idea"
    i % 4 == 1: "no idea", "answer i" [right], "nope", "nah"
    i % 4 == 2: four wrong answers
    i % 4 == 3: "answer i" cut off at the length limit [right as far as it goes], three wrong ones.
    Greedy requests: paraphrases "It is answer i." [right]; own answers the same for even i, else "no idea"."""

    def __init__(self):
        self.calls = []

    def stream(self, prompts, max_new_tokens, desc=None, n=1, temperature=0.0, top_p=1.0, seed=None, **kw):
        self.calls.append((desc, len(prompts), n, temperature, seed))
        for j, p in enumerate(prompts):
            i = item(p)
            if n == 1:  # a paraphrase; or a greedy own answer, right for even i
                right = "Reference answer" in p[-1]["content"] or i % 2 == 0
                yield j, f"It is answer {i}." if right else "no idea", "end_of_turn"
                continue
            texts = {0: [f"answer {i}", f"answer  {i}", f"It is answer {i}.", "no idea"],
                     1: ["no idea", f"answer {i}", "nope", "nah"],
                     2: ["no", "nope", "nah", "never"],
                     3: [f"answer {i}", "no", "nope", "nah"]}[i % 4][:n]
            stops = ["length" if i % 4 == 3 and t == texts[0] else "end_of_turn" for t in texts]
            yield j, texts, stops


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    from s3ft.backends.hf import HFGenerator

    return HFGenerator.from_name(str(tiny_model_dir), batch_size=4, dtype="float32", device="cpu")


@pytest.fixture
def session(tmp_path, monkeypatch, scorer):
    cfg = load_config(None, {"task": "jsonl", "data_files": make_data(tmp_path), "judge": "qa", "id_field": "id",
                             "output_dir": str(tmp_path / "run"), "method": "rft", "model": "org/unused",
                             "sample_k": K})
    s = Session(cfg)
    gen = ScriptedSampler()
    monkeypatch.setattr(Session, "generator", lambda self, model=None: gen)
    monkeypatch.setattr(Session, "model_id", lambda self: "scripted")
    monkeypatch.setattr(ModelPool, "scorer", lambda self, model: scorer)
    s.run.path.mkdir(parents=True)
    return s, gen


def test_rft_keeps_only_the_distinct_judged_correct_samples(session):
    s, gen = session
    rows = read_jsonl(pipeline.training_set(s, "rft"))
    assert gen.calls == [("samples", N, K, 0.7, 0)]  # one request of k per input, sample_temperature and sample_seed
    judged = {r["id"]: r for r in read_jsonl(s.run / "samples_judged.jsonl")}
    assert [x["correct"] for x in judged["q0"]["samples"]] == [True, True, True, False]
    by = {}
    for r in rows:
        by.setdefault(r["id"], []).append((r["source"], completion_text(r)))
    for i in range(N):
        want = {0: [("sampled", f"answer {i}"), ("sampled", f"It is answer {i}.")], 1: [("sampled", f"answer {i}")],
                2: [("gold", f"answer {i}")], 3: [("gold", f"answer {i}")]}[i % 4]
        assert by[f"q{i}"] == want, i
    assert all(judged[r["id"]]["samples"][r["sample"]]["correct"] is True for r in rows if r["source"] == "sampled")
    mix = s.run.stage_record("build.rft")["mix"]
    assert (mix["n"], mix["inputs"], mix["counts"]["sampled"], mix["counts"]["gold"]) == (10, 8, 6, 4)
    assert mix["cut_off"]["sampled"] == 2  # the i % 4 == 3 inputs' right but cut-off samples
    assert not (s.run / "own.jsonl").exists() and not (s.run / "paraphrase.jsonl").exists()  # rft needs neither
    # rft_gold never: inputs without a correct sample get no row; only the build stage runs again
    s.cfg.rft_gold = "never"
    rows = read_jsonl(pipeline.training_set(s, "rft"))
    assert {r["id"] for r in rows} == {f"q{i}" for i in range(N) if i % 4 in (0, 1)}
    assert len(gen.calls) == 1
    s.cfg.rft_gold = "always"
    rows = read_jsonl(pipeline.training_set(s, "rft"))
    # the gold beside the samples - except where a kept sample ("answer i") is the gold itself
    assert [(r["id"], r["source"]) for r in rows if r["id"] in ("q0", "q2")] == [("q0", "sampled"), ("q0", "sampled"),
                                                                                ("q2", "gold")]
    assert sum(r["source"] == "gold" for r in rows) == 4 and len(rows) == 10
    # a changed sampling setting samples again; --force sample re-runs it once
    s.cfg.sample_k = 2
    pipeline.training_set(s, "rft")
    assert gen.calls[-1] == ("samples", N, 2, 0.7, 0)
    forced = Session(s.cfg, force={"sample"}, shared=s.shared)
    pipeline.training_set(forced, "rft")
    pipeline.training_set(forced, "rft")
    assert len(gen.calls) == 3


def test_sample_stage_resumes_without_duplicates(session):
    s, gen = session
    out = pipeline.sampled_answers(s)
    full = read_jsonl(out)
    lines = out.read_text().splitlines(keepends=True)  # a crash: 5 rows and half a line kept, the stage still running
    out.write_text("".join(lines[:5]) + lines[5][:10])
    s.run.set_stage("sample", **{**s.run.stage_record("sample"), "status": "running"})
    pipeline.sampled_answers(s)
    assert gen.calls[-1] == ("samples", N - 5, K, 0.7, 0)
    assert sorted(r["id"] for r in read_jsonl(out)) == sorted(r["id"] for r in full)
    assert {r["id"]: r for r in read_jsonl(out)} == {r["id"]: r for r in full}


def test_one_pass_serves_rft_grape_and_s3ft_k(session):
    """The shared pass of a comparison: k samples drawn and judged once, paraphrases for every input
    (grape's scope), one likelihood pass for grape's and s3ft_k's candidates."""
    s, gen = session
    s.shared.methods = ("rft", "grape", "s3ft_k")
    s.cfg.paraphrase_scope = "all"  # (`s3ft compare` resolves auto for all its methods)
    rows = {m: read_jsonl(pipeline.training_set(s, m)) for m in ("rft", "grape", "s3ft_k")}
    assert [c[0] for c in gen.calls] == ["samples", "paraphrases"]
    lik = read_jsonl(s.run / "likelihood.jsonl")
    score = {(r["id"], r["text"]): r["per_token"] for r in lik}
    # every input has at least two candidates for grape: gold, paraphrase (right), its correct samples
    assert {r["id"] for r in lik} == {f"q{i}" for i in range(N)}
    for r in rows["grape"]:
        cands = [t for (i, t) in score if i == r["id"]]
        assert completion_text(r) == max(cands, key=lambda t: score[(r["id"], t)])
        assert r["likelihood"]["candidates"] == len(cands)
    for r in rows["s3ft_k"]:
        i = int(r["id"][1:])
        if i % 4 == 0:  # two distinct correct samples: the likelier one
            a, b = f"answer {i}", f"It is answer {i}."
            assert completion_text(r) == (a if score[(r["id"], a)] >= score[(r["id"], b)] else b)
            assert r["source"] == "sampled" and r["likelihood"]["candidates"] == 2
        elif i % 4 == 1:
            assert (r["source"], completion_text(r)) == ("sampled", f"answer {i}")
        else:
            assert (r["source"], completion_text(r)) == ("paraphrase", f"It is answer {i}.")
    # nothing runs twice
    for m in ("rft", "grape", "s3ft_k"):
        pipeline.training_set(s, m)
    assert len(gen.calls) == 2


def test_s3ft_k_paraphrases_only_inputs_without_a_correct_sample(session):
    s, gen = session
    s.cfg.method = "s3ft_k"
    rows = read_jsonl(pipeline.training_set(s))
    assert {r["id"] for r in read_jsonl(s.run / "paraphrase.jsonl")} == {f"q{i}" for i in range(N) if i % 4 in (2, 3)}
    assert not (s.run / "own.jsonl").exists()  # the greedy answers are not needed
    assert [r["source"] for r in rows] == ["sampled", "sampled", "paraphrase", "paraphrase"] * 2
    # scored: only the inputs with two correct samples to choose between
    assert {r["id"] for r in read_jsonl(s.run / "likelihood.jsonl")} == {"q0", "q4"}
    # beside s3ft (compare): inputs failed by either pass get a paraphrase
    s.shared.methods = ("s3ft", "s3ft_k")
    pipeline.paraphrases(s)
    assert {r["id"] for r in read_jsonl(s.run / "paraphrase.jsonl")} == {f"q{i}" for i in range(N) if i not in (0, 4)}


def test_hf_samples_k_answers_reproducibly_from_the_seed(scorer):
    prompts = [[{"role": "user", "content": f"What is item {i}?"}] for i in range(5)]

    def draw(seed):
        return sorted(scorer.stream(prompts, 6, temperature=1.0, top_p=1.0, seed=seed, n=3, progress=False))

    first = draw(0)
    assert [i for i, _, _ in first] == list(range(5))
    assert all(len(texts) == 3 and len(stops) == 3 for _, texts, stops in first)
    assert len({t for _, texts, _ in first for t in texts}) > 5  # samples, not one answer repeated
    assert draw(0) == first
    assert draw(1) != first
    with pytest.raises(ValueError, match="need sampling"):
        list(scorer.stream(prompts, 6, n=2, progress=False))


def test_sample_stage_is_reproducible_from_sample_seed(tmp_path, tiny_model_dir):
    """On the tiny model through the session: the same sample_seed gives the same samples in a
    fresh run directory; another seed gives others (and re-runs the stage)."""
    def samples(out, seed):
        cfg = load_config(None, {"task": "jsonl", "data_files": make_data(tmp_path, 4), "judge": "qa", "id_field": "id",
                                 "output_dir": str(out), "method": "rft", "model": str(tiny_model_dir), "sample_k": 3,
                                 "sample_seed": seed, "max_new_tokens": 5, "batch_size": 6, "device": "cpu"})
        s = Session(cfg)
        s.run.path.mkdir(parents=True, exist_ok=True)
        return {r["id"]: r["samples"] for r in read_jsonl(pipeline.sampled_answers(s))}

    a = samples(tmp_path / "a", 7)
    assert len(a) == 4 and all(len(v) == 3 for v in a.values())
    assert samples(tmp_path / "b", 7) == a
    assert samples(tmp_path / "a", 8) != a


@pytest.fixture(scope="module")
def stopping_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with every fourth token id an end of its answer (generation_config's
    eos_token_id, which the backends stop at): its sampled answers end after a few tokens rather
    than at the length limit, so that some are training targets."""
    import shutil

    from transformers import AutoConfig, GenerationConfig

    out = tmp_path_factory.mktemp("stopping-model")
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    gc = GenerationConfig.from_pretrained(out)
    gc.eos_token_id = [gc.eos_token_id, *range(0, AutoConfig.from_pretrained(out).vocab_size, 4)]
    gc.save_pretrained(out)
    return out


JUDGE = """
def judge(example, response):
    return len(response) % 2 == 0  # about half of the random model's answers are 'right'
"""


def recipe(tmp_path, tiny_model_dir, **extra):
    (tmp_path / "parity_judge.py").write_text(JUDGE)
    files = make_data(tmp_path, 6)
    text = (f"model: {tiny_model_dir}\ntask: jsonl\nid_field: id\ndata_files: {json.dumps(files)}\n"
            f"judge: {tmp_path / 'parity_judge.py'}:judge\noutput_dir: {tmp_path / 'run'}\n"
            "max_new_tokens: 8\nbatch_size: 4\nsample_k: 3\nsample_temperature: 1.0\nnum_train_epochs: 1\nper_device_train_batch_size: 4\n"
            "max_length: 256\nlearning_rate: 1.0e-3\ndevice: cpu\n")
    text += "".join(f"{k}: {json.dumps(v)}\n" for k, v in extra.items())
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("method", ["rft", "grape", "s3ft_k"])
def test_cli_run_each_k_sample_method_end_to_end(tmp_path, stopping_model_dir, method):
    path = recipe(tmp_path, stopping_model_dir, method=method, eval_base=False)
    r = subprocess.run([sys.executable, "-m", "s3ft.cli", "run", str(path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    for name in ("samples.jsonl", "samples_judged.jsonl", f"train.{method}.jsonl", f"{method}/model/adapter_config.json",
                 f"eval/{method}.jsonl", "metrics.json"):
        assert (run / name).exists(), name
    assert (run / "likelihood.jsonl").exists() == (method != "rft")
    judged = {r["id"]: r for r in read_jsonl(run / "samples_judged.jsonl")}
    assert all(len(r["samples"]) == 3 for r in judged.values())
    rows = read_jsonl(run / f"train.{method}.jsonl")
    for row in rows:  # every sampled target is a judged-right sample of its input
        if row["source"] == "sampled":
            smp = judged[row["id"]]["samples"][row["sample"]]
            assert smp["response"] == completion_text(row) and smp["correct"] is True
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["mix"]["counts"]["sampled"] == sum(r["source"] == "sampled" for r in rows) > 0
    assert metrics["samples"]["rows"] == 6
    assert "sampled" in r.stdout.split("Training-set mix")[1]


def test_compare_two_k_sample_methods_samples_once(tmp_path, stopping_model_dir):
    path = recipe(tmp_path, stopping_model_dir, methods=["rft", "s3ft_k"], logprob_analysis=False)
    r = subprocess.run([sys.executable, "-m", "s3ft.cli", "compare", str(path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "run"
    assert r.stdout.count("sample: 3 answers each for 6 training inputs") == 1
    assert r.stdout.count("judge (") == 1  # the samples judged once (no greedy own answers: neither method uses them)
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert stages["sample"]["samples"] == 18 and stages["judge.samples"]["rows"] == 6
    assert {"build.rft", "build.s3ft_k", "likelihood"} <= set(stages) and "generate" not in stages
    mix = json.loads((out / "compare.json").read_text())["per_seed"]["42"]["mix"]
    assert set(mix) == {"rft", "s3ft_k"} and all("sampled" in m["counts"] for m in mix.values())
    import gzip

    audit = [json.loads(line) for line in gzip.open(out / "audit" / "targets.jsonl.gz", "rt")]
    assert {t["stop"] for t in audit if t["source"] == "sampled"} == {"end_of_turn"}  # (never a cut-off sample)
    report = (out / "report" / "report.md").read_text()
    assert "sampled %" in report and "RFT" in report and "S3FT-k" in report


def test_vllm_backend_asks_for_n_samples_per_request(monkeypatch, tiny_model_dir):
    """s3ft's side of vLLM's `n`: one request per prompt with n, temperature, top_p and the seed in
    its SamplingParams, the n outputs yielded together (a stand-in engine, as in
    tests/backends/test_vllm.py: vLLM itself needs a GPU build)."""
    import importlib.machinery
    import random
    import types

    from s3ft.backends.vllm import VLLMGenerator, shutdown_engines

    seen = []

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            pass

        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            seen.append(params.kw)
            outs = []
            for p in prompts:
                rng = random.Random(repr((params.kw["seed"], p["prompt_token_ids"])))  # per request, like vLLM's seed
                outs.append(types.SimpleNamespace(outputs=[
                    types.SimpleNamespace(token_ids=[rng.randrange(100, 2000) for _ in range(3)], finish_reason="length",
                                          stop_reason=None) for _ in range(params.kw["n"])]))
            return outs

    vllm = types.ModuleType("vllm")
    vllm.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    req = types.ModuleType("vllm.lora.request")
    req.LoRARequest = object
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", req)
    from s3ft.models import load_tokenizer

    try:
        gen = VLLMGenerator(str(tiny_model_dir), load_tokenizer(str(tiny_model_dir)), chunk_size=2)
        prompts = [[{"role": "user", "content": f"What is item {i}?"}] for i in range(3)]
        out = list(gen.stream(prompts, 3, temperature=0.9, top_p=0.8, seed=5, n=4, progress=False))
        assert [i for i, _, _ in out] == [0, 1, 2]
        assert all(len(t) == 4 and s == ["length"] * 4 for _, t, s in out)
        assert {(k["n"], k["temperature"], k["top_p"], k["seed"]) for k in seen} == {(4, 0.9, 0.8, 5)}
        assert list(gen.stream(prompts, 3, temperature=0.9, top_p=0.8, seed=5, n=4, progress=False)) == out
        assert list(gen.stream(prompts, 3, temperature=0.9, top_p=0.8, seed=6, n=4, progress=False)) != out
        with pytest.raises(ValueError, match="needs sampling"):
            list(gen.stream(prompts, 3, n=2, progress=False))
        single = list(gen.stream(prompts[:1], 3, temperature=0.9, seed=5, progress=False))
        assert isinstance(single[0][1], str) and seen[-1]["n"] == 1
    finally:
        shutdown_engines()
