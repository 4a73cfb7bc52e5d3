"""The `openai` generation backend: any OpenAI-compatible chat-completions server (vLLM
`vllm serve`, SGLang, TGI, `transformers serve`, a hosted API), through the official `openai`
Python SDK.

`OpenAIGenerator` has the interface of `HFGenerator`: `generate(prompts, max_new_tokens, ...)`
returns the texts in prompt order; `stream(...)` yields `(index, text)` as requests complete,
so a stage writes each row the moment it exists. Every prompt is one
`client.chat.completions.create` request (`POST {base_url}/chat/completions`) carrying the chat
messages (the server applies the model's chat template), `max_tokens`, `temperature` (0 =
greedy), `top_p` and, when sampling with a seed, `seed + index` (prompts get different seeds; a
rerun is reproducible whatever the completion order, as far as the server honours seeds).
`n > 1` asks for that many samples per prompt in one request and yields them as a list. At most
`max_concurrency` requests are in flight (a thread pool sharing one SDK client per stream).

Failures: the SDK retries a refused / reset / timed-out connection and HTTP 408, 409, 429 and
5xx up to `max_retries` times, with exponential backoff (0.5 s doubling up to 8 s, with jitter)
or the server's `Retry-After` when it sends one (up to 2 minutes; a longer one is not waited
for); any other 4xx stops the run at once. Both raise `OpenAIBackendError` naming the URL, the
HTTP status and the server's message, with a hint for the usual mistakes."""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import openai  # the SDK (absolute import: this module is s3ft.backends.openai)

from s3ft.backends.base import END_OF_TURN, LENGTH, StreamingGenerator
from s3ft.types import Messages

# the api key the SDK is given when there is none (a local server needs none; the SDK insists on a
# non-empty string). Its Authorization header is not sent.
NO_KEY = "EMPTY"


class OpenAIBackendError(RuntimeError):
    """A request to the OpenAI-compatible server failed for good (message names the URL)."""


class _Cancelled(openai.OpenAIError):
    """Raised before a request goes out once its stream has stopped (an OpenAIError: the SDK
    passes it through without retrying)."""


def server_url(cfg) -> str | None:
    """The server a config's openai backend talks to: openai_base_url, else OPENAI_BASE_URL."""
    return cfg.openai_base_url or os.environ.get("OPENAI_BASE_URL")


class OpenAIGenerator(StreamingGenerator):
    """Chat completions against an OpenAI-compatible server.

    base_url: the API root including the version path, e.g. `http://127.0.0.1:8000/v1`
    model: the model name sent in every request (what the server serves it as)
    api_key: sent as a Bearer token; None: no Authorization header
    request_timeout: seconds one attempt may take; max_retries: retries after it (SDK backoff)
    extra_body: more JSON fields for every request (server-specific options)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        max_concurrency: int = 8,
        request_timeout: float = 120.0,
        max_retries: int = 5,
        extra_body: dict[str, Any] | None = None,
    ):
        if not base_url:
            raise ValueError("openai backend: no server URL (set openai_base_url or OPENAI_BASE_URL)")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.api_key = api_key or None
        self.max_concurrency = max(1, int(max_concurrency))
        self.request_timeout = float(request_timeout)
        self.max_retries = max(0, int(max_retries))
        self.extra_body = dict(extra_body or {})

    @classmethod
    def from_config(cls, cfg, model_name: str | None = None) -> OpenAIGenerator:
        """The generator a config asks for. The model sent is `cfg.openai_model` (default
        `cfg.model`) for the base model; any other `model_name` (a fine-tuned model's folder, when
        the pipeline evaluates it) is sent as given: serve the adapter under that name (vLLM:
        `--enable-lora --lora-modules NAME=PATH`). The API key is read from the environment
        variable `cfg.openai_api_key_env` names (unset: no key)."""
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

    def client(self, stop: threading.Event | None = None) -> openai.OpenAI:
        """An SDK client for this server (timeout, retries, key). `stop`: once set, no further
        request or retry of this client goes out (the stream it serves has ended). Without a key,
        each request must say `extra_headers={"Authorization": openai.omit}` (as `stream` does)."""
        hooks = {}
        if stop is not None:
            def check(request) -> None:
                if stop.is_set():
                    raise _Cancelled(f"{self.url}: cancelled")

            hooks = {"request": [check]}
        # an explicit key (never the SDK's own OPENAI_API_KEY lookup: the key comes from openai_api_key_env)
        return openai.OpenAI(
            base_url=self.base_url, api_key=self.api_key or NO_KEY, timeout=self.request_timeout,
            max_retries=self.max_retries, http_client=openai.DefaultHttpxClient(event_hooks=hooks),
        )

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
        n: int = 1,
    ) -> Iterator[tuple[int, Any, Any]]:
        """Yields (index, text, stop reason) as each request completes; with n > 1, (index,
        [n texts], [n stop reasons]). The server's finish_reason "length" is the length limit,
        "stop" the end of the turn (s3ft sends no stop strings)."""
        from tqdm.auto import tqdm

        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        sampled = bool(temperature and temperature > 0)
        requests = []
        for i, messages in enumerate(prompts):
            kw: dict[str, Any] = {
                "model": self.model,
                "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
                "max_tokens": int(max_new_tokens),
                "temperature": float(temperature) if sampled else 0.0,
                "top_p": float(top_p) if sampled else 1.0,
            }
            if n > 1:
                kw["n"] = int(n)
            if seed is not None and sampled:  # greedy decoding ignores the seed
                kw["seed"] = int(seed) + i
            if self.extra_body:
                kw["extra_body"] = self.extra_body
            if not self.api_key:  # no Authorization header (the SDK sends one only when told not to)
                kw["extra_headers"] = {"Authorization": openai.omit}
            requests.append(kw)
        if not requests:
            return
        bar = tqdm(total=len(requests), desc=desc or "generate", unit="ex", disable=not progress, dynamic_ncols=True)
        stop = threading.Event()  # set when the consumer stops early or a request failed for good
        client = self.client(stop)
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests)), thread_name_prefix="s3ft-openai")
        pending: dict[Future, int] = {}
        try:
            queue = iter(range(len(requests)))

            def submit_next() -> None:
                i = next(queue, None)
                if i is not None:
                    pending[pool.submit(self._complete, client, requests[i])] = i

            for _ in range(self.max_concurrency):  # keep at most max_concurrency requests queued
                submit_next()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    texts, reasons = fut.result()  # raises OpenAIBackendError: the finally cancels the rest
                    bar.update(1)
                    yield (i, texts, reasons) if n > 1 else (i, texts[0], reasons[0])
                    submit_next()
        finally:
            stop.set()  # requests in flight end on their own, without retrying
            pool.shutdown(wait=False, cancel_futures=True)
            if not pending:
                client.close()  # (otherwise closed when the last request in flight lets go of it)
            bar.close()

    # ------------------------------------------------------------------ one request
    def _complete(self, client: openai.OpenAI, kw: dict[str, Any]) -> tuple[list[str], list[str]]:
        """The texts of one request's choices, in choice order, and their stop reasons."""
        try:
            raw = client.chat.completions.with_raw_response.create(**kw)
        except _Cancelled:
            raise OpenAIBackendError(f"{self.url}: cancelled") from None
        except openai.APIStatusError as e:
            code = e.status_code
            detail = _error_detail(e.response)
            if code in RETRY_STATUS or code >= 500:  # retried by the SDK, to no avail
                raise OpenAIBackendError(self._no_answer(f"HTTP {code}: {detail}", e.response)) from None
            raise OpenAIBackendError(
                f"openai backend: {self.url} answered HTTP {code} for model {self.model!r}: {detail}{_hint(code)}"
            ) from None
        except openai.APIConnectionError as e:  # refused, reset, timed out, cut short (retried by the SDK)
            reason = e.__cause__ or e
            raise OpenAIBackendError(self._no_answer(f"{type(reason).__name__}: {reason}", None)) from None
        except openai.OpenAIError as e:
            raise OpenAIBackendError(f"openai backend: {self.url} (model {self.model!r}): {type(e).__name__}: {e}") from None
        try:
            choices = sorted(raw.parse().choices, key=lambda c: c.index or 0)
            texts = [(c.message.content or "").strip() for c in choices]
            reasons = [LENGTH if c.finish_reason == "length" else END_OF_TURN if c.finish_reason in (None, "stop")
                       else str(c.finish_reason) for c in choices]
            if not texts:
                raise ValueError("no choices")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, openai.OpenAIError):
            raise OpenAIBackendError(
                f"openai backend: {self.url} returned something that is not a chat completion: {raw.text[:300]!r}"
            ) from None
        return texts, reasons

    def _no_answer(self, last: str, response) -> str:
        attempts = self.max_retries + 1
        try:  # the SDK's retry count of the last attempt (fewer when it would not wait a long Retry-After)
            attempts = int(response.request.headers["x-stainless-retry-count"]) + 1
        except (AttributeError, KeyError, TypeError, ValueError, RuntimeError):
            pass
        return (f"openai backend: no answer from {self.url} after {attempts} attempt{'s' * (attempts != 1)} "
                f"(model {self.model!r}): {last}. Is the server running and reachable at that address?")


RETRY_STATUS = frozenset({408, 409, 429})  # and every 5xx: the statuses the SDK retries


def _error_detail(response) -> str:
    """The server's message in an error response: its JSON error message, or the body's text, or
    the HTTP reason."""
    try:
        text = response.text.strip()
    except Exception:  # noqa: BLE001 - the status alone still says enough
        text = ""
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            err = obj.get("error", obj.get("detail", obj.get("message", obj)))
            if isinstance(err, dict):
                err = err.get("message", err)
            text = str(err)
    except ValueError:
        pass
    return (text or getattr(response, "reason_phrase", "") or "no message")[:500]


def _hint(code: int) -> str:
    if code == 404:
        return " (the base URL usually ends in /v1, e.g. http://127.0.0.1:8000/v1)"
    if code in (401, 403):
        return " (check the API key: it is read from the environment variable named by openai_api_key_env)"
    if code == 400:
        return " (check that the model name matches what the server serves: openai_model)"
    return ""
