"""The openai generation backend (s3ft.backends.openai, on the openai SDK).

- Against a real OpenAI-compatible server: `transformers serve` on loopback, serving a tiny
  random Llama (skipped when the serving extras - fastapi, uvicorn, openai - are not installed). Greedy
  texts must equal HFGenerator's on the same folder.
- Retries (the SDK's: exponential backoff from 0.5 s, Retry-After), the concurrency limit, n
  samples, cancellation and error messages against small local http.server stubs (no model
  needed)."""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from stub_server import Stub
from stub_server import completion as _completion

from s3ft.backends.openai import OpenAIBackendError, OpenAIGenerator
from s3ft.config import S3FTConfig

PROMPTS = [
    [{"role": "user", "content": c}]
    for c in ("hi", "What is 2+2?", "Name a colour.", "Tell me a story about a cat.", "Why is the sky blue?",
              "Translate 'hello' to French.")
]
SERVER_START_TIMEOUT = 90.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------ transformers serve


@pytest.fixture(scope="module")
def served(sharp_model_dir, tmp_path_factory):
    """`transformers serve` on 127.0.0.1:<free port>, pinned to sharp_model_dir; yields the base URL."""
    missing = [m for m in ("fastapi", "uvicorn", "openai", "pydantic") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"transformers serving extras not installed ({', '.join(missing)} missing): "
                    'pip install "transformers[serving]==5.23.0"')
    port = _free_port()
    cache = tmp_path_factory.mktemp("hf-hub-cache")  # /v1/models needs HF_HUB_CACHE to exist
    log_path = cache / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(sharp_model_dir), "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu", "--dtype", "float32"]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not up after {SERVER_START_TIMEOUT:.0f} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


def test_openai_backend_matches_hf_greedy(served, sharp_model_dir):
    """Same folder, greedy, 6 prompts: the server (3 requests in flight) returns exactly the texts
    HFGenerator writes. HFGenerator runs one prompt at a time, like the server, so no padding
    enters the comparison (left-padded batches can flip rare near-ties, see the field notes)."""
    from s3ft.backends.hf import HFGenerator

    local = HFGenerator.from_name(str(sharp_model_dir), batch_size=1, dtype="float32", device="cpu")
    want = local.generate(PROMPTS, 8, progress=False)
    assert len(set(want)) > 1 and all(want), want  # not a vacuous comparison

    gen = OpenAIGenerator(served, str(sharp_model_dir), max_concurrency=3, request_timeout=60, max_retries=1)
    seen = list(gen.stream(PROMPTS, 8, temperature=0.0, seed=7, progress=False))
    assert sorted(i for i, _, _ in seen) == list(range(len(PROMPTS)))  # every prompt exactly once
    got, stops = [None] * len(PROMPTS), [None] * len(PROMPTS)
    for i, text, stop in seen:
        got[i], stops[i] = text, stop
    assert got == want, (got, want)
    # the server's finish_reason gives the same stop reasons as the local loop (8 tokens: some are cut off)
    assert stops == [s for _, _, s in sorted(local.stream(PROMPTS, 8, progress=False))]


def test_make_generator_openai_from_config(served, sharp_model_dir, monkeypatch):
    """backend: openai through make_generator: the URL comes from the environment when the recipe
    has none, and the model sent defaults to cfg.model (transformers serve insists on the path)."""
    from s3ft.backends import make_generator

    monkeypatch.setenv("OPENAI_BASE_URL", served)
    cfg = S3FTConfig(model=str(sharp_model_dir), backend="openai", max_concurrency=2)
    gen = make_generator(cfg)
    assert isinstance(gen, OpenAIGenerator) and gen.model == str(sharp_model_dir) and gen.max_concurrency == 2
    assert len(gen.generate(PROMPTS[:2], 4, progress=False)) == 2

    cfg = S3FTConfig(model=str(sharp_model_dir), backend="openai", openai_base_url=served, openai_model="not-served",
                     max_retries=0)
    with pytest.raises(OpenAIBackendError, match=r"HTTP 400.*not-served"):
        make_generator(cfg).generate(PROMPTS[:1], 4, progress=False)


# ------------------------------------------------------------------------ stub servers
def test_retries_503_with_exponential_backoff():
    def respond(stub, body):
        if len(stub.bodies) <= 2:
            return 503, b'{"error": {"message": "overloaded"}}'
        return 200, _completion("  fine  ")

    with Stub(respond) as stub:
        gen = OpenAIGenerator(stub.url, "m", max_retries=5, max_concurrency=1)
        assert gen.generate(PROMPTS[:1], 5, progress=False) == ["fine"]
    assert len(stub.bodies) == 3  # 503, 503, 200
    gaps = [b - a for a, b in zip(stub.times, stub.times[1:])]
    # the SDK's backoff doubles: 0.5 s, then 1 s, each less up to 25% jitter
    assert gaps[0] >= 0.37 and gaps[1] >= 0.74 and gaps[1] > gaps[0]
    body = stub.bodies[-1]
    assert body["model"] == "m" and body["max_tokens"] == 5 and body["temperature"] == 0.0
    assert body["messages"] == PROMPTS[0] and "seed" not in body


def test_retries_exhausted_names_url():
    with Stub(lambda stub, body: (503, b"busy")) as stub:
        gen = OpenAIGenerator(stub.url, "m", max_retries=2)
        with pytest.raises(OpenAIBackendError, match=r"no answer from http://127\.0\.0\.1:\d+/v1/chat/completions after 3 attempts.*503"):
            gen.generate(PROMPTS[:1], 5, progress=False)
    assert len(stub.bodies) == 3


def test_4xx_fails_at_once_with_url_and_message():
    with Stub(lambda stub, body: (400, b'{"error": {"message": "model \'m\' does not exist"}}')) as stub:
        gen = OpenAIGenerator(stub.url, "m", max_retries=5)
        with pytest.raises(OpenAIBackendError) as e:
            gen.generate(PROMPTS[:3], 5, progress=False)
    msg = str(e.value)
    assert f"{stub.url}/chat/completions" in msg and "HTTP 400" in msg and "does not exist" in msg
    assert len(stub.bodies) <= 3  # no retries: at most one request per prompt before the run stopped


def test_unreachable_server_names_url():
    port = _free_port()  # nothing listens there
    gen = OpenAIGenerator(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, request_timeout=5)
    t0 = time.monotonic()
    with pytest.raises(OpenAIBackendError, match=rf"no answer from http://127\.0\.0\.1:{port}/v1/chat/completions after 3 attempts"):
        gen.generate(PROMPTS[:1], 5, progress=False)
    assert time.monotonic() - t0 < 5


def test_concurrency_limit_order_and_seeds():
    """8 prompts, max_concurrency 3, each answer takes 0.2 s: 3 requests overlap (never more),
    texts come back in prompt order from generate, and sampling seeds are seed + index."""
    with Stub(lambda stub, body: (200, _completion(body["messages"][0]["content"].upper())), delay=0.2) as stub:
        gen = OpenAIGenerator(stub.url, "m", max_concurrency=3)
        prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(8)]
        t0 = time.monotonic()
        out = gen.generate(prompts, 5, temperature=0.7, top_p=0.9, seed=100, progress=False)
        wall = time.monotonic() - t0
    assert out == [f"Q{i}" for i in range(8)]
    assert stub.max_in_flight == 3
    assert wall < 8 * 0.2  # overlapped, not one by one
    assert sorted(b["seed"] for b in stub.bodies) == list(range(100, 108))
    assert all(b["temperature"] == 0.7 and b["top_p"] == 0.9 for b in stub.bodies)


def test_openai_backend_needs_a_url(monkeypatch):
    from s3ft.backends import make_generator

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="openai_base_url.*OPENAI_BASE_URL"):
        make_generator(S3FTConfig(backend="openai"))


def test_api_key_from_named_env(monkeypatch):
    """The key is read from the variable openai_api_key_env names and sent as a Bearer token; the
    base model is sent as openai_model, a fine-tuned model's folder as named."""
    monkeypatch.setenv("MY_KEY", "sekrit")
    with Stub(lambda stub, body: (200, _completion("ok"))) as stub:
        cfg = S3FTConfig(backend="openai", openai_base_url=stub.url, openai_api_key_env="MY_KEY", openai_model="served")
        gen = OpenAIGenerator.from_config(cfg)
        assert gen.generate(PROMPTS[:1], 3, progress=False) == ["ok"]
    assert stub.headers[-1].get("authorization") == "Bearer sekrit" and stub.bodies[-1]["model"] == "served"
    assert OpenAIGenerator.from_config(cfg, "runs/x/s3ft/model").model == "runs/x/s3ft/model"


def test_no_key_sends_no_authorization(monkeypatch):
    """openai_api_key_env unset: a local server gets no Authorization header at all (the SDK's
    placeholder key is not sent), and OPENAI_API_KEY is not picked up behind the recipe's back."""
    monkeypatch.delenv("MY_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "not-for-this-server")
    with Stub(lambda stub, body: (200, _completion("ok"))) as stub:
        cfg = S3FTConfig(backend="openai", openai_base_url=stub.url, openai_api_key_env="MY_KEY")
        assert OpenAIGenerator.from_config(cfg).generate(PROMPTS[:1], 3, progress=False) == ["ok"]
    assert "authorization" not in stub.headers[-1]


def test_429_waits_for_retry_after():
    """HTTP 429 with Retry-After: the SDK waits what the server asks (1 s here, not its 0.5 s backoff)."""
    def respond(stub, body):
        if len(stub.bodies) == 1:
            return 429, b'{"error": {"message": "slow down"}}', {"Retry-After": "1"}
        return 200, _completion("done")

    with Stub(respond) as stub:
        gen = OpenAIGenerator(stub.url, "m", max_retries=1)
        assert gen.generate(PROMPTS[:1], 5, progress=False) == ["done"]
    assert len(stub.bodies) == 2 and stub.times[1] - stub.times[0] >= 1.0


def test_429_retries_exhausted_names_status_and_message():
    with Stub(lambda stub, body: (429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "0.1"})) as stub:
        gen = OpenAIGenerator(stub.url, "m", max_retries=1)
        with pytest.raises(OpenAIBackendError, match=r"after 2 attempts.*HTTP 429: rate limited"):
            gen.generate(PROMPTS[:1], 5, progress=False)
    assert len(stub.bodies) == 2


def test_n_samples_per_request():
    """n > 1: one request per prompt asks for n choices; each prompt yields its n texts in choice order."""
    def respond(stub, body):
        q = body["messages"][0]["content"]
        choices = [{"index": k, "finish_reason": "stop", "message": {"role": "assistant", "content": f" {q}-{k} "}}
                   for k in reversed(range(body.get("n", 1)))]
        return 200, json.dumps({"id": "x", "object": "chat.completion", "choices": choices}).encode()

    with Stub(respond) as stub:
        gen = OpenAIGenerator(stub.url, "m", max_concurrency=2)
        prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
        out = gen.generate(prompts, 5, temperature=1.0, seed=10, n=3, progress=False)
        assert out == [[f"q{i}-{k}" for k in range(3)] for i in range(3)]
        assert len(stub.bodies) == 3 and all(b["n"] == 3 for b in stub.bodies)
        assert sorted(b["seed"] for b in stub.bodies) == [10, 11, 12]
        assert gen.generate(prompts[:1], 5, progress=False) == ["q0-0"]  # n=1: plain texts, no "n" sent
        assert "n" not in stub.bodies[-1]


def test_a_failed_request_stops_the_retries_of_the_others():
    """One prompt fails for good (HTTP 400) while the others are being retried (503): the run
    stops at once and the requests in flight are not retried again."""
    def respond(stub, body):
        if body["messages"][0]["content"] == "bad":
            return 400, b'{"error": {"message": "bad request"}}'
        return 503, b"busy"

    with Stub(respond, delay=0.1) as stub:
        gen = OpenAIGenerator(stub.url, "m", max_retries=5, max_concurrency=3)
        prompts = [[{"role": "user", "content": c}] for c in ("q1", "q2", "bad")]
        with pytest.raises(OpenAIBackendError, match="HTTP 400.*bad request"):
            gen.generate(prompts, 5, progress=False)
        time.sleep(2.0)  # past the SDK's first two backoffs (0.5 s, 1 s)
    sent = [b["messages"][0]["content"] for b in stub.bodies]
    assert sorted(set(sent)) == sorted(sent) and "bad" in sent  # each prompt at most once: no retry after the failure


def test_stop_reasons_come_from_finish_reason():
    """finish_reason "length" is a cut-off answer, "stop" the end of the turn; n > 1 gives one per choice."""
    def respond(stub, body):
        q = body["messages"][0]["content"]
        choices = [{"index": k, "finish_reason": "length" if (q == "long") != (k == 1) else "stop",
                    "message": {"role": "assistant", "content": f"{q}-{k}"}} for k in range(body.get("n", 1))]
        return 200, json.dumps({"id": "x", "object": "chat.completion", "choices": choices}).encode()

    with Stub(respond) as stub:
        gen = OpenAIGenerator(stub.url, "m", max_concurrency=2)
        prompts = [[{"role": "user", "content": q}] for q in ("long", "short")]
        assert sorted(gen.stream(prompts, 5, progress=False)) == [(0, "long-0", "length"), (1, "short-0", "end_of_turn")]
        got = sorted(gen.stream(prompts, 5, temperature=1.0, n=2, progress=False))
        assert got == [(0, ["long-0", "long-1"], ["length", "end_of_turn"]), (1, ["short-0", "short-1"], ["end_of_turn", "length"])]
