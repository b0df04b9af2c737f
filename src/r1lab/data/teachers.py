"""Teachers behind one interface: requests (an Example and a sample index) in, replies out as they complete.

* ``ProgramTeacher`` (``program:<name>``): exact step-by-step solvers for procedural tasks (program_teachers.py).
* ``LocalTeacher``: a local HF folder or GGUF file through ``load_model`` and ``NativeEngine`` (batched).
* ``EndpointTeacher``: any OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, DeepSeek's API,
  ``r1lab serve``) over /chat/completions or /completions, with bounded concurrency, retries with exponential
  back-off and a timeout.

``generate`` yields ``(request, reply)`` pairs in completion order, so the caller can write and flush each row as
soon as it exists: a kill then loses at most the requests in flight.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Iterator, Protocol

from r1lab.types import Example


@dataclass
class TeacherRequest:
    example: Example
    sample: int  # index k of this sample for its prompt
    seed: int = 0  # per-sample seed (program teachers, endpoints that accept one)


@dataclass
class TeacherReply:
    completion: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"
    latency_s: float = 0.0
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TeacherSampling:
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 1024


@dataclass(frozen=True)
class TeacherPrompt:
    """How the teacher is asked: the template (chat/r1_zero/plain), a system prompt and an instruction."""

    template: str = "chat"
    system: str = ""
    instruction: str = ""


class TeacherError(RuntimeError):
    """A teacher could not answer (an endpoint after all retries); the message names the URL and the error."""


class Teacher(Protocol):
    name: str

    def generate(self, requests: list[TeacherRequest]) -> Iterator[tuple[TeacherRequest, TeacherReply]]: ...

    # the requests split into work units for data-parallel generation (r1lab.data.generate deals them to ranks)
    def blocks(self, requests: list[TeacherRequest]) -> list[list[TeacherRequest]]: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------------------------
# Programmatic teachers
# ---------------------------------------------------------------------------------------------------------------
_WORDISH = re.compile(r"\w+|[^\w\s]")
PROGRAM_BLOCK = 256  # requests per data-parallel work unit: solvers take microseconds, a round costs a collective


def consecutive(requests: list[TeacherRequest], size: int) -> list[list[TeacherRequest]]:
    """``requests`` in consecutive blocks of at most ``size``."""
    return [requests[i : i + size] for i in range(0, len(requests), size)]


def count_tokens_roughly(text: str) -> int:
    """Token count for teachers without a tokenizer: words, numbers and punctuation marks each count one."""
    return len(_WORDISH.findall(text))


class ProgramTeacher:
    """``program:<name>``: a solver from ``PROGRAMS``. Sample k of an example is seeded by (seed, id, k), so a
    resumed run writes exactly the rows an uninterrupted one would have written."""

    def __init__(self, program: str, fmt: str = "plain", error_rate: float = 0.0, seed: int = 0):
        from r1lab.data.program_teachers import FORMATS, PROGRAMS

        if program not in PROGRAMS:
            raise ValueError(f"unknown program teacher 'program:{program}'; available: "
                             f"{', '.join('program:' + p for p in PROGRAMS)}")
        if fmt not in FORMATS:
            raise ValueError(f"program teacher format {fmt!r}; allowed: {', '.join(FORMATS)}")
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"program teacher error_rate must be in [0, 1], got {error_rate}")
        self.name = f"program:{program}"
        self._solve, self.fmt, self.error_rate, self.seed = PROGRAMS[program], fmt, error_rate, seed

    def blocks(self, requests: list[TeacherRequest]) -> list[list[TeacherRequest]]:
        """Work units for data-parallel generation (``consecutive``); any split gives the same rows."""
        return consecutive(requests, PROGRAM_BLOCK)

    def generate(self, requests: list[TeacherRequest]) -> Iterator[tuple[TeacherRequest, TeacherReply]]:
        for req in requests:
            start = time.perf_counter()
            rng = random.Random(f"{self.seed}:{req.example.id}:{req.sample}")  # str seeds hash stably (sha512)
            trace = self._solve(req.example, rng, self.fmt, self.error_rate)
            meta = {"program_answer": trace.answer, "mistake": trace.mistake}
            yield req, TeacherReply(trace.text, count_tokens_roughly(req.example.question),
                                    count_tokens_roughly(trace.text), "stop", time.perf_counter() - start, meta)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------------------------
# A local model
# ---------------------------------------------------------------------------------------------------------------
class LocalTeacher:
    """A local HF folder / GGUF file / cached hub id, generating in batches with ``NativeEngine``."""

    def __init__(self, model_name: str, prompt: TeacherPrompt, sampling: TeacherSampling, dtype: str = "float32",
                 device: str = "cpu", batch_size: int = 32, loaded=None):
        import torch

        from r1lab.models.loading import load_model
        from r1lab.models.precision import generation_dtype
        from r1lab.rollout.native_engine import NativeEngine

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if loaded is None:
            self.dtype = generation_dtype(device, dtype)
            loaded = load_model(model_name, dtype=getattr(torch, self.dtype), device=device)
        else:
            self.dtype = str(next(loaded.model.parameters()).dtype).removeprefix("torch.")
        self.name = model_name
        self.tokenizer = loaded.tokenizer
        self.engine = NativeEngine(loaded.model.eval(), loaded.tokenizer, batch_size=batch_size)
        self.prompt, self.sampling, self.batch_size = prompt, sampling, batch_size

    def render(self, example: Example) -> str:
        from r1lab.models.templates import build_prompt

        return build_prompt(example, self.tokenizer, self.prompt.template, self.prompt.system, self.prompt.instruction)

    def _chunks(self, requests: list[TeacherRequest]) -> list[list[list[TeacherRequest]]]:
        """The engine calls ``generate`` makes, each a list of groups (one prompt's requests each). The engine
        samples n completions per prompt, so prompts missing the same number of samples go together, at most
        ``batch_size`` sequences per call."""
        by_example: dict[str, list[TeacherRequest]] = {}
        for req in requests:
            by_example.setdefault(req.example.id, []).append(req)
        by_n: dict[int, list[list[TeacherRequest]]] = {}
        for group in by_example.values():
            by_n.setdefault(len(group), []).append(group)
        chunks = []
        for n, groups in by_n.items():
            per_call = max(1, self.batch_size // n)
            chunks += [groups[start : start + per_call] for start in range(0, len(groups), per_call)]
        return chunks

    def blocks(self, requests: list[TeacherRequest]) -> list[list[TeacherRequest]]:
        """One block per engine call of ``generate(requests)``. A block given back to ``generate`` is that one call
        again (same prompts, same seed from its first request), so ranks that each generate some of the blocks
        write exactly the rows of one process."""
        return [[req for group in chunk for req in group] for chunk in self._chunks(requests)]

    def generate(self, requests: list[TeacherRequest]) -> Iterator[tuple[TeacherRequest, TeacherReply]]:
        import torch

        from r1lab.rollout.base import SamplingParams

        params = SamplingParams(temperature=self.sampling.temperature, top_p=self.sampling.top_p,
                                max_new_tokens=self.sampling.max_new_tokens)
        for chunk in self._chunks(requests):
            n = len(chunk[0])
            torch.manual_seed(chunk[0][0].seed)
            began = time.perf_counter()
            batch = self.engine.generate([self.render(g[0].example) for g in chunk], n, params)
            latency = (time.perf_counter() - began) / len(batch.texts)
            prompt_tokens = batch.prompt_mask.sum(dim=1).tolist()
            lengths = batch.lengths.long().tolist()
            truncated = batch.truncated.tolist()
            for row, req in enumerate(r for g in chunk for r in g):
                yield req, TeacherReply(batch.texts[row], int(prompt_tokens[row]), int(lengths[row]),
                                        "length" if truncated[row] else "stop", latency)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------------------------
# An OpenAI-compatible endpoint
# ---------------------------------------------------------------------------------------------------------------
RETRY_STATUS = (408, 409, 429)  # plus every 5xx: the server may succeed on a later try
MAX_BACKOFF_S = 60.0
ENDPOINT_BLOCK_PER_THREAD = 4


@dataclass(frozen=True)
class EndpointSettings:
    url: str  # base URL, e.g. http://127.0.0.1:8000/v1
    model: str
    api: str = "chat"  # chat | completions
    api_key_env: str = ""  # name of the environment variable with the key; empty = no key
    concurrency: int = 8
    max_retries: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 600.0


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class EndpointTeacher:
    """Requests one completion per (prompt, sample) from an OpenAI-compatible server, ``concurrency`` at a time.

    Connection errors, timeouts, 408/409/429 and 5xx are retried ``max_retries`` times, waiting ``backoff_s``,
    then twice that, ... (at most 60 s; a ``Retry-After`` header wins). The API key is read from the environment
    variable named by ``api_key_env`` at construction and kept in memory only.
    """

    def __init__(self, settings: EndpointSettings, prompt: TeacherPrompt, sampling: TeacherSampling,
                 sleep=time.sleep):
        if settings.api not in ("chat", "completions"):
            raise ValueError(f"endpoint api must be 'chat' or 'completions', got {settings.api!r}")
        if settings.api == "completions" and prompt.template == "chat":
            raise ValueError("the /completions API applies no chat template; use prompt.template r1_zero or plain, "
                             "or teacher.api chat")
        self._key = None
        if settings.api_key_env:
            self._key = os.environ.get(settings.api_key_env)
            if not self._key:
                raise ValueError(f"teacher.api_key_env names the environment variable {settings.api_key_env!r}, "
                                 "which is not set")
        self.settings, self.prompt, self.sampling = settings, prompt, sampling
        self.name = settings.model
        self.endpoint = settings.url.rstrip("/") + ("/chat/completions" if settings.api == "chat" else "/completions")
        self._sleep = sleep
        self._stop = threading.Event()

    def payload(self, req: TeacherRequest) -> dict:
        s, p = self.sampling, self.prompt
        body: dict = {"model": self.settings.model, "max_tokens": s.max_new_tokens, "temperature": s.temperature,
                      "top_p": s.top_p, "n": 1, "seed": req.seed}
        if self.settings.api == "chat":  # the same turns build_prompt gives a local chat template
            messages = [dict(m) for m in req.example.messages or [{"role": "user", "content": req.example.question}]]
            if p.instruction:
                last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
                messages[last_user]["content"] += f" {p.instruction}"
            if p.system and messages[0]["role"] != "system":
                messages = [{"role": "system", "content": p.system}] + messages
            body["messages"] = messages
        else:
            from r1lab.models.templates import build_prompt

            body["prompt"] = build_prompt(req.example, None, p.template, p.system, p.instruction)
        return body

    def _post(self, body: dict) -> dict:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                return json.loads(response.read().decode())
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:300]
            message = f"HTTP {err.code} {err.reason}: {detail}"
            if err.code in RETRY_STATUS or err.code >= 500:
                after = err.headers.get("Retry-After") if err.headers else None
                raise _Retryable(message, float(after) if after and after.replace(".", "", 1).isdigit() else None)
            raise TeacherError(f"{self.endpoint}: {message}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            raise _Retryable(f"{type(err).__name__}: {getattr(err, 'reason', err)}") from None
        except json.JSONDecodeError as err:
            raise _Retryable(f"response is not JSON ({err})") from None

    def request(self, req: TeacherRequest) -> TeacherReply:
        """One completion, retried with exponential back-off; TeacherError names the URL and the last error."""
        body = self.payload(req)
        last = ""
        for attempt in range(self.settings.max_retries + 1):
            if self._stop.is_set():
                raise TeacherError(f"{self.endpoint}: cancelled after another request failed")
            began = time.perf_counter()
            try:
                data = self._post(body)
                return self._reply(data, time.perf_counter() - began, attempt)
            except _Retryable as err:
                last = str(err)
                if attempt == self.settings.max_retries:
                    break
                delay = err.retry_after if err.retry_after is not None else self.settings.backoff_s * 2**attempt
                self._sleep(min(delay, MAX_BACKOFF_S))
        raise TeacherError(f"{self.endpoint}: {last} (gave up after {self.settings.max_retries + 1} attempts)")

    def _reply(self, data: dict, latency: float, retries: int) -> TeacherReply:
        try:
            choice = data["choices"][0]
            if self.settings.api == "chat":
                message = choice["message"]
                text = message.get("content") or ""
                # DeepSeek's API (reasoning_content) and vLLM's reasoning parsers (reasoning) return the chain of
                # thought apart from the answer; keep it, in the R1 layout.
                reasoning = message.get("reasoning_content") or message.get("reasoning")
                if reasoning:
                    text = f"<think>\n{reasoning}\n</think>\n{text}"
            else:
                text = choice["text"]
        except (KeyError, IndexError, TypeError) as err:
            raise TeacherError(f"{self.endpoint}: unexpected response {str(data)[:300]!r} ({err!r})") from None
        usage = data.get("usage") or {}
        meta = {"retries": retries} if retries else {}
        if "prompt_tokens" not in usage or "completion_tokens" not in usage:
            meta["usage_missing"] = True
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        return TeacherReply(text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), finish,
                            latency, meta)

    def blocks(self, requests: list[TeacherRequest]) -> list[list[TeacherRequest]]:
        """Work units for data-parallel generation: a few requests per thread, so a rank keeps its ``concurrency``
        busy through most of a round (a round waits for its slowest request)."""
        return consecutive(requests, ENDPOINT_BLOCK_PER_THREAD * self.settings.concurrency)

    def generate(self, requests: list[TeacherRequest]) -> Iterator[tuple[TeacherRequest, TeacherReply]]:
        """Replies in completion order, at most ``concurrency`` requests in flight. After a failure no new request
        starts; the ones in flight finish (and are yielded) before the error is raised."""
        self._stop.clear()
        pending = iter(requests)
        error: BaseException | None = None
        pool = ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="teacher")
        running: dict[Future, TeacherRequest] = {}

        def refill() -> None:
            while error is None and len(running) < self.settings.concurrency:
                req = next(pending, None)
                if req is None:
                    return
                running[pool.submit(self.request, req)] = req

        try:
            refill()
            while running:
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    req = running.pop(fut)
                    try:
                        reply = fut.result()
                    except BaseException as err:  # noqa: BLE001 - re-raised below once in-flight work is saved
                        if error is None:
                            error = err
                            self._stop.set()
                        continue
                    yield req, reply
                refill()
        finally:
            if running:  # interrupted (Ctrl-C, the consumer stopped): start nothing new, retry nothing
                self._stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
        if error is not None:
            raise error

    def close(self) -> None:
        self._stop.set()


def make_teacher(name: str, *, url: str = "", prompt: TeacherPrompt = TeacherPrompt(),
                 sampling: TeacherSampling = TeacherSampling(), **options) -> Teacher:
    """``program:<name>`` -> ProgramTeacher; a ``url`` -> EndpointTeacher for model ``name``; else LocalTeacher.

    ``options``: fmt, error_rate, seed (program); api, api_key_env, concurrency, max_retries, backoff_s,
    timeout_s (endpoint); dtype, device, batch_size (local).
    """
    if name.startswith("program:"):
        return ProgramTeacher(name[len("program:"):], options.get("fmt", "plain"), options.get("error_rate", 0.0),
                              options.get("seed", 0))
    if url:
        keys = ("api", "api_key_env", "concurrency", "max_retries", "backoff_s", "timeout_s")
        return EndpointTeacher(EndpointSettings(url, name, **{k: options[k] for k in keys if k in options}),
                               prompt, sampling)
    keys = ("dtype", "device", "batch_size")
    return LocalTeacher(name, prompt, sampling, **{k: options[k] for k in keys if k in options})
