"""``r1lab serve``: an OpenAI-compatible HTTP server on r1lab's rollout engine (``NativeEngine``: the decode
loop training generates with, each prompt prefilled once for its n samples, Llama-family models stepping on a
static cache and r1lab's C kernels).

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (messages through the tokenizer's chat template) and
``POST /v1/completions`` (a raw prompt). Request fields honoured: model (echoed), messages / prompt, max_tokens,
temperature (0 = greedy), top_p, top_k, n, seed, stop, stream, stream_options.include_usage. Responses carry
``usage`` (prompt_tokens, completion_tokens counted with the model's tokenizer, completion tokens including the
end-of-sequence token) and ``finish_reason`` ("length" when max_tokens cut the completion, else "stop").

``stream: true`` answers with server-sent events as OpenAI's API defines them: ``chat.completion.chunk`` objects
(``text_completion`` ones for /v1/completions) carrying each choice's ``delta``, a last chunk per choice with its
``finish_reason``, with ``stream_options.include_usage`` a chunk with no choices and the ``usage``, then
``data: [DONE]``. The engine decodes a whole batch and has no per-token callback, so the chunks are sent once a
request's generation is done: the wire format is the streaming one, the latency is not.

Standard library only (``http.server.ThreadingHTTPServer``): connections are handled in threads, generation is
serialised by a lock (one model, one forward at a time). Meant for local use (distillation with a local teacher,
tests of endpoint clients); for throughput use vLLM or SGLang, which speak the same API.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from r1lab.rollout.base import SamplingParams


class RequestError(ValueError):
    """A malformed request: answered with 400 and the message."""


class CompletionService:
    """The model side of the server: turns an OpenAI request body into a response body."""

    def __init__(self, model, tokenizer, model_name: str, batch_size: int = 16):
        from r1lab.rollout.native_engine import NativeEngine

        self.engine = NativeEngine(model.eval(), tokenizer, batch_size=batch_size)
        self.tokenizer, self.model_name = tokenizer, model_name
        self._lock = threading.Lock()  # one generate() at a time: the model is shared by every handler thread

    def prompt_text(self, body: dict, chat: bool) -> str:
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages
            ):
                raise RequestError("'messages' must be a non-empty list of {role, content} strings")
            if self.tokenizer.chat_template is None:
                raise RequestError("this model's tokenizer has no chat template; use /v1/completions")
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError("'prompt' must be a string (one prompt per request)")
        return prompt

    def complete(self, body: dict, chat: bool) -> dict:
        import torch

        prompt = self.prompt_text(body, chat)
        sampling = self._sampling(body)
        n = body.get("n", 1)
        if not isinstance(n, int) or n < 1:
            raise RequestError(f"'n' must be a positive integer, got {n!r}")
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        with self._lock:
            if body.get("seed") is not None:
                torch.manual_seed(int(body["seed"]))
            batch = self.engine.generate([prompt], n, sampling)
        prompt_tokens = int(batch.prompt_mask[0].sum())
        lengths = batch.lengths.long().tolist()
        choices = []
        for i, text in enumerate(batch.texts):
            finish = "length" if bool(batch.truncated[i]) else "stop"
            cut = [text.index(s) for s in stop if s and s in text]
            if cut:
                text, finish = text[: min(cut)], "stop"
            choice = {"index": i, "finish_reason": finish}
            choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
            choices.append(choice)
        completion_tokens = int(sum(lengths))
        return {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model_name,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    @staticmethod
    def _sampling(body: dict) -> SamplingParams:
        try:
            max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 256)
            temperature = float(body.get("temperature", 1.0))
            top_p = float(body.get("top_p", 1.0))
            top_k = int(body.get("top_k", 0) or 0)
        except (TypeError, ValueError) as err:
            raise RequestError(f"bad sampling parameter: {err}") from None
        if max_tokens < 1 or temperature < 0 or not 0 < top_p <= 1:
            raise RequestError("need max_tokens >= 1, temperature >= 0 and 0 < top_p <= 1")
        return SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_tokens)

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "r1lab"}]}


def stream_usage(body: dict) -> bool | None:
    """None for a plain response; for ``stream: true``, whether a usage chunk is asked for."""
    stream, options = body.get("stream", False), body.get("stream_options")
    if not isinstance(stream, bool):
        raise RequestError(f"'stream' must be true or false, got {stream!r}")
    if options is not None and not stream:
        raise RequestError("'stream_options' is only allowed with 'stream': true")
    if options is not None and not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object, e.g. {\"include_usage\": true}")
    return bool((options or {}).get("include_usage")) if stream else None


def stream_chunks(response: dict, chat: bool, include_usage: bool) -> list[dict]:
    """A finished response as the chunks OpenAI's streaming API sends: per choice, (chat) a first delta with the
    role, one with the text, and a last one with the finish_reason; then, with ``include_usage``, a chunk without
    choices carrying the usage, every earlier chunk having ``usage: null``."""
    head = {"id": response["id"], "object": "chat.completion.chunk" if chat else "text_completion",
            "created": response["created"], "model": response["model"]}
    extra = {"usage": None} if include_usage else {}

    def chunk(index: int, piece: dict, finish: str | None) -> dict:
        return {**head, "choices": [{"index": index, **piece, "logprobs": None, "finish_reason": finish}], **extra}

    chunks = []
    for choice in response["choices"]:
        i = choice["index"]
        if chat:
            text = choice["message"]["content"]
            chunks.append(chunk(i, {"delta": {"role": "assistant", "content": ""}}, None))
            if text:
                chunks.append(chunk(i, {"delta": {"content": text}}, None))
            chunks.append(chunk(i, {"delta": {}}, choice["finish_reason"]))
        else:
            if choice["text"]:
                chunks.append(chunk(i, {"text": choice["text"]}, None))
            chunks.append(chunk(i, {"text": ""}, choice["finish_reason"]))
    if include_usage:
        chunks.append({**head, "choices": [], "usage": response["usage"]})
    return chunks


def _handler(service: CompletionService, verbose: bool):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - the base class's signature
            if verbose:
                super().log_message(format, *args)

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": HTTPStatus(status).phrase, "code": status}})

        def _send_events(self, events: list[dict]) -> None:
            """Server-sent events, one ``data:`` line each and ``[DONE]`` last, in HTTP/1.1 chunked encoding (the
            length of a stream is not known up front, and the connection stays open for the next request)."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for data in [*(json.dumps(e) for e in events), "[DONE]"]:
                payload = f"data: {data}\n\n".encode()
                self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, service.models())
            elif self.path.rstrip("/") in ("/health", "/v1/health"):
                self._send(200, {"status": "ok"})
            else:
                self._error(404, f"no such endpoint: GET {self.path}")

        def do_POST(self):  # noqa: N802
            path = self.path.rstrip("/")
            chat = path in ("/v1/chat/completions", "/chat/completions")
            if not chat and path not in ("/v1/completions", "/completions"):
                self._error(404, f"no such endpoint: POST {self.path}")
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise RequestError("the request body must be a JSON object")
                include_usage = stream_usage(body)
                response = service.complete(body, chat)
            except (json.JSONDecodeError, RequestError) as err:
                self._error(400, str(err))
            except Exception as err:  # noqa: BLE001 - a server answers 500 rather than dropping the connection
                self._error(500, f"{type(err).__name__}: {err}")
            else:  # errors are answered before the first byte of a stream, as plain JSON
                if include_usage is None:
                    self._send(200, response)
                else:
                    self._send_events(stream_chunks(response, chat, include_usage))

    return Handler


def make_server(service: CompletionService, host: str = "127.0.0.1", port: int = 8000,
                verbose: bool = False) -> ThreadingHTTPServer:
    """A bound (not yet serving) server; port 0 picks a free port (``server.server_address[1]``)."""
    server = ThreadingHTTPServer((host, port), _handler(service, verbose))
    server.daemon_threads = True
    return server


def run_server(model_name: str, host: str = "127.0.0.1", port: int = 8000, dtype: str = "float32",
               device: str = "auto", batch_size: int = 16, served_name: str | None = None,
               verbose: bool = True) -> None:
    """Load ``model_name`` (any source ``load_model`` accepts) and serve until interrupted."""
    import torch

    from r1lab.models.loading import load_model
    from r1lab.models.precision import generation_dtype

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = generation_dtype(device, dtype)
    loaded = load_model(model_name, dtype=getattr(torch, dtype), device=device)
    service = CompletionService(loaded.model, loaded.tokenizer, served_name or model_name, batch_size)
    server = make_server(service, host, port, verbose)
    print(f"serving {served_name or model_name} ({dtype}) at http://{host}:{server.server_address[1]}/v1 "
          "(chat/completions, completions, models); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
