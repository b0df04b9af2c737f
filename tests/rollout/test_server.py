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


def test_injected_failures_come_first_then_answers():
    model, tok = _tiny()
    server, base = start(CompletionService(model, tok, "flaky", fail_first=2, fail_status=503))
    try:
        statuses = [post(f"{base}/v1/completions", {"prompt": "a", "max_tokens": 1})[0] for _ in range(3)]
    finally:
        server.shutdown()
        server.server_close()
    assert statuses == [503, 503, 200]
