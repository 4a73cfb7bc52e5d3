"""The `openai` generation backend: any OpenAI-compatible chat-completions server (vLLM
`vllm serve`, SGLang, TGI, `transformers serve`, a hosted API).

`OpenAIGenerator` has the interface of `HFGenerator`: `generate(prompts, max_new_tokens, ...)`
returns the texts in prompt order; `stream(...)` yields `(index, text)` as requests complete,
so a stage writes each row the moment it exists. Every prompt is one
`POST {base_url}/chat/completions` request carrying the chat messages (the server applies the
model's chat template), `max_tokens`, `temperature` (0 = greedy), `top_p` and, when sampling with
a seed, `seed + index` (prompts get different seeds; a rerun is reproducible whatever the
completion order, as far as the server honours seeds). At most `max_concurrency` requests are in flight (a thread pool; standard library only).

Failures: a refused / reset / timed-out connection, HTTP 429 and HTTP 5xx are retried up to
`max_retries` times with exponential backoff (`backoff * 2**attempt`, capped at `max_backoff`,
or the server's `Retry-After` when it sends one); any other 4xx stops the run at once. Both
raise `OpenAIBackendError` naming the URL, the status and the server's message."""
from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Iterator, Sequence

from s3ft.generation import StreamingGenerator
from s3ft.types import Messages

RETRY_STATUS = frozenset({408, 429})  # and every 5xx


class OpenAIBackendError(RuntimeError):
    """A request to the OpenAI-compatible server failed for good (message names the URL)."""


class _Retryable(Exception):
    def __init__(self, msg: str, retry_after: float | None = None):
        super().__init__(msg)
        self.retry_after = retry_after


def server_url(cfg) -> str | None:
    """The server a config's openai backend talks to: openai_base_url, else OPENAI_BASE_URL."""
    return cfg.openai_base_url or os.environ.get("OPENAI_BASE_URL")


class OpenAIGenerator(StreamingGenerator):
    """Chat completions against an OpenAI-compatible server.

    base_url: the API root including the version path, e.g. `http://127.0.0.1:8000/v1`
    model: the model name sent in every request (what the server serves it as)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        max_concurrency: int = 8,
        request_timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        extra_body: dict[str, Any] | None = None,
    ):
        if not base_url:
            raise ValueError("openai backend: no server URL (set openai_base_url or OPENAI_BASE_URL)")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.max_concurrency = max(1, int(max_concurrency))
        self.request_timeout = float(request_timeout)
        self.max_retries = max(0, int(max_retries))
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.extra_body = dict(extra_body or {})

    @classmethod
    def from_config(cls, cfg, model_name: str | None = None) -> "OpenAIGenerator":
        """The generator a config asks for. The model sent is `cfg.openai_model` (default
        `cfg.model`) for the base model; any other `model_name` (a fine-tuned model's folder, when
        the pipeline evaluates it) is sent as given: serve the adapter under that name (vLLM:
        `--enable-lora --lora-modules NAME=PATH`)."""
        base_url = server_url(cfg)
        if not base_url:
            raise ValueError("backend openai needs a server URL: set openai_base_url in the recipe "
                             "(e.g. http://127.0.0.1:8000/v1) or the OPENAI_BASE_URL environment variable")
        if model_name is None or model_name == cfg.model:
            model = cfg.openai_model or cfg.model
        else:
            model = model_name
        key = os.environ.get(cfg.openai_api_key_env) if cfg.openai_api_key_env else None
        return cls(base_url, model, api_key=key, max_concurrency=cfg.max_concurrency,
                   request_timeout=cfg.request_timeout, max_retries=cfg.max_retries)

    # ------------------------------------------------------------------ public interface

    def stream(
        self,
        prompts: Sequence[Messages],
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        desc: str | None = None,
        progress: bool = True,
    ) -> Iterator[tuple[int, str]]:
        from tqdm.auto import tqdm

        sampled = bool(temperature and temperature > 0)
        bodies = []
        for i, messages in enumerate(prompts):
            body: dict[str, Any] = {
                "model": self.model,
                "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
                "max_tokens": int(max_new_tokens),
                "temperature": float(temperature) if sampled else 0.0,
                "top_p": float(top_p) if sampled else 1.0,
                "stream": False,
            }
            if seed is not None and sampled:  # greedy decoding ignores the seed
                body["seed"] = int(seed) + i
            body.update(self.extra_body)
            bodies.append(body)
        if not bodies:
            return
        bar = tqdm(total=len(bodies), desc=desc or "generate", unit="ex", disable=not progress, dynamic_ncols=True)
        stop = threading.Event()  # set when the consumer stops early or a request failed for good
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(bodies)), thread_name_prefix="s3ft-openai")
        try:
            pending: dict[Future, int] = {}
            queue = iter(range(len(bodies)))

            def submit_next() -> None:
                i = next(queue, None)
                if i is not None:
                    pending[pool.submit(self._complete, bodies[i], stop)] = i

            for _ in range(self.max_concurrency):  # keep at most max_concurrency requests queued
                submit_next()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    text = fut.result()  # raises OpenAIBackendError: the finally cancels the rest
                    bar.update(1)
                    yield i, text
                    submit_next()
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)  # in-flight requests end on their own
            bar.close()

    # ------------------------------------------------------------------ one request
    def _complete(self, body: dict[str, Any], stop: threading.Event) -> str:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if stop.is_set():
                raise OpenAIBackendError(f"{self.url}: cancelled")
            try:
                return self._post(data, headers)
            except _Retryable as e:
                last = e
                if attempt == self.max_retries:
                    break
                delay = min(self.max_backoff, self.backoff * (2 ** attempt))
                if e.retry_after is not None:
                    delay = min(self.max_backoff, max(0.0, e.retry_after))
                if stop.wait(delay):
                    raise OpenAIBackendError(f"{self.url}: cancelled") from None
        raise OpenAIBackendError(
            f"openai backend: no answer from {self.url} after {self.max_retries + 1} attempts "
            f"(model {self.model!r}): {last}. Is the server running and reachable at that address?"
        )

    def _post(self, data: bytes, headers: dict[str, str]) -> str:
        req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.request_timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = _error_detail(e)
            if e.code in RETRY_STATUS or e.code >= 500:
                raise _Retryable(f"HTTP {e.code}: {detail}", _retry_after(e.headers.get("Retry-After"))) from None
            raise OpenAIBackendError(
                f"openai backend: {self.url} answered HTTP {e.code} for model {self.model!r}: {detail}{_hint(e.code)}"
            ) from None
        except (OSError, http.client.HTTPException) as e:  # refused, reset, timed out, cut short
            reason = getattr(e, "reason", e)
            raise _Retryable(f"{type(reason).__name__}: {reason}") from None
        try:
            payload = json.loads(raw)
            content = payload["choices"][0]["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise OpenAIBackendError(
                f"openai backend: {self.url} returned something that is not a chat completion: {raw[:300]!r}"
            ) from None
        return (content or "").strip()


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        raw = e.read()
    except Exception:  # noqa: BLE001 - the status alone still says enough
        raw = b""
    text = raw.decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            err = obj.get("error", obj.get("detail", obj.get("message", obj)))
            if isinstance(err, dict):
                err = err.get("message", err)
            text = str(err)
    except ValueError:
        pass
    return (text or e.reason or "no message")[:500]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _hint(code: int) -> str:
    if code == 404:
        return " (the base URL usually ends in /v1, e.g. http://127.0.0.1:8000/v1)"
    if code in (401, 403):
        return " (check the API key: it is read from the environment variable named by openai_api_key_env)"
    if code == 400:
        return " (check that the model name matches what the server serves: openai_model)"
    return ""
