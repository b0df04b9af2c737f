"""`r1lab serve`: the OpenAI-compatible server, queried over real HTTP on loopback with a tiny random model."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
import torch

from r1lab.models.loading import prepare_tokenizer
from r1lab.models.tiny import tiny_model, tiny_tokenizer
from r1lab.rollout.server import CompletionService, make_server


def _tiny(always_eos: bool = False):
    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    model = tiny_model(tok, seed=0)
    model.generation_config.eos_token_id = tok.eos_token_id
    if always_eos:  # an untied head whose bias makes EOS the argmax after any prefix: the model stops at once
        model.config.tie_word_embeddings = False
        head = torch.nn.Linear(model.config.hidden_size, len(tok), bias=True)
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
            head.bias[tok.eos_token_id] = 100.0
        model.lm_head = head
    return model, tok


def start(service: CompletionService):
    server = make_server(service, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def post(url: str, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def served():
    model, tok = _tiny()
    server, base = start(CompletionService(model, tok, "tiny-test"))
    yield base
    server.shutdown()
    server.server_close()


CHAT = {"model": "tiny-test", "messages": [{"role": "user", "content": "hi"}]}


def test_chat_completion_counts_tokens_and_reports_length(served):
    status, body = post(f"{served}/v1/chat/completions", {**CHAT, "max_tokens": 5, "n": 2, "seed": 1})
    assert status == 200
    assert body["object"] == "chat.completion" and body["model"] == "tiny-test"
    assert [c["index"] for c in body["choices"]] == [0, 1]
    # "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" with the character tokenizer: 1+4+1+2+1+1+1+9+1
    assert body["usage"]["prompt_tokens"] == 21
    # a random model does not stop within 5 tokens: both samples are cut at max_tokens
    assert [c["finish_reason"] for c in body["choices"]] == ["length", "length"]
    assert body["usage"]["completion_tokens"] == 10
    assert body["usage"]["total_tokens"] == 31
    # 5 tokens each (a sampled tag such as <think> is one token of several characters)
    tok = tiny_tokenizer()
    assert all(c["message"]["role"] == "assistant" and len(tok.encode(c["message"]["content"])) == 5
               for c in body["choices"])


def test_completions_greedy_is_deterministic_and_stop_strings_cut(served):
    body = {"prompt": "abc", "max_tokens": 7, "temperature": 0}
    s1, first = post(f"{served}/v1/completions", body)
    s2, second = post(f"{served}/v1/completions", body)
    assert s1 == s2 == 200 and first["object"] == "text_completion"
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert first["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}
    text = first["choices"][0]["text"]
    stop = text[2:4]
    _, cut = post(f"{served}/v1/completions", {**body, "stop": [stop]})
    assert cut["choices"][0]["text"] == text[: text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_models_and_bad_requests(served):
    with urllib.request.urlopen(f"{served}/v1/models", timeout=10) as response:
        assert json.loads(response.read())["data"][0]["id"] == "tiny-test"
    status, body = post(f"{served}/v1/chat/completions", b"{not json")
    assert status == 400 and "error" in body
    status, body = post(f"{served}/v1/chat/completions", {"messages": "hi"})
    assert status == 400 and "messages" in body["error"]["message"]
    status, _ = post(f"{served}/v1/embeddings", {"input": "x"})
    assert status == 404


def test_a_model_that_stops_reports_stop_and_counts_its_eos():
    model, tok = _tiny(always_eos=True)
    server, base = start(CompletionService(model, tok, "eos"))
    try:
        status, body = post(f"{base}/v1/chat/completions", {**CHAT, "max_tokens": 8})
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["content"] == ""
    assert body["usage"]["completion_tokens"] == 1  # the EOS token itself


# ---------------------------------------------------------------------------------------------------------------
# The official `openai` client against the server: plain responses and server-sent-event streams
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(served):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{served}/v1", api_key="unused", max_retries=0, timeout=60)


MESSAGES = [{"role": "user", "content": "hi"}]


def test_openai_client_chat_completion_with_n_and_usage(client):
    reply = client.chat.completions.create(model="tiny-test", messages=MESSAGES, max_tokens=5, n=2, seed=1)
    assert reply.object == "chat.completion" and reply.model == "tiny-test"
    assert [c.index for c in reply.choices] == [0, 1]
    assert [c.finish_reason for c in reply.choices] == ["length", "length"]
    assert all(c.message.role == "assistant" and len(tiny_tokenizer().encode(c.message.content)) == 5
               for c in reply.choices)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (21, 10, 31)


def test_openai_client_chat_stream_equals_the_plain_response(client):
    plain = client.chat.completions.create(model="tiny-test", messages=MESSAGES, max_tokens=5, n=2, seed=3)
    chunks = list(client.chat.completions.create(model="tiny-test", messages=MESSAGES, max_tokens=5, n=2, seed=3,
                                                 stream=True, stream_options={"include_usage": True}))
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    *deltas, last = chunks
    assert last.choices == [] and last.usage.model_dump() == plain.usage.model_dump()  # the usage chunk comes last
    assert all(c.usage is None and len(c.choices) == 1 for c in deltas)
    for choice in plain.choices:
        mine = [c.choices[0] for c in deltas if c.choices[0].index == choice.index]
        assert mine[0].delta.role == "assistant"
        assert "".join(c.delta.content or "" for c in mine) == choice.message.content
        assert mine[-1].finish_reason == choice.finish_reason and all(c.finish_reason is None for c in mine[:-1])


def test_openai_client_completions_stream(client):
    plain = client.completions.create(model="tiny-test", prompt="abc", max_tokens=7, temperature=0)
    chunks = list(client.completions.create(model="tiny-test", prompt="abc", max_tokens=7, temperature=0,
                                            stream=True))
    assert plain.choices[0].text and plain.usage.completion_tokens == 7
    assert "".join(c.choices[0].text for c in chunks) == plain.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks][-1] == "length"
    assert all(c.usage is None for c in chunks)  # no usage chunk unless stream_options asks for it


def test_stream_wire_format(served):
    body = json.dumps({"prompt": "abc", "max_tokens": 3, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(f"{served}/v1/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Transfer-Encoding"] == "chunked"
        text = response.read().decode()
    events = text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""] and all(e.startswith("data: ") for e in events[:-1])
    chunks = [json.loads(e[len("data: "):]) for e in events[:-2]]
    assert [c["object"] for c in chunks] == ["text_completion"] * len(chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    status, error = post(f"{served}/v1/completions", {"prompt": "a", "stream_options": {"include_usage": True}})
    assert status == 400 and "stream_options" in error["error"]["message"]  # only with stream: true
    status, error = post(f"{served}/v1/completions", {"prompt": "a", "stream": "yes"})
    assert status == 400 and "'stream' must be true or false" in error["error"]["message"]
