"""r1lab.rewards.judge: the LLM-as-judge reward against a real HTTP server on 127.0.0.1 (OpenAI chat-completions
JSON) and against a tiny local model; reply parsers; prompt templates."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r1lab.rewards.combine import score_batch
from r1lab.rewards.functions import REWARDS, RewardContext, is_batched
from r1lab.rewards.judge import (
    FORMAT_JUDGE_TEMPLATE,
    JUDGE_DEFAULTS,
    JudgeReplyError,
    llm_judge,
    local_prompt,
    local_replies,
    parse_number,
    parse_yes_no,
    render_prompt,
)
from r1lab.types import Example

EX = Example(id="e0", answer="5", prompt="What is 2+3?")
GOOD = "<think>2+3=5</think><answer>5</answer>"
BAD = "5"


class FakeOpenAI:
    """An OpenAI-compatible chat-completions server in a thread. ``respond(body, n)`` (n = 1-based request count)
    returns (status, reply text, delay seconds). Records every request and the peak number in flight."""

    def __init__(self, respond):
        self.respond = respond
        self.requests: list[dict] = []  # {"path", "headers", "body"}
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    n = len(server.requests)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, text, delay = server.respond(body, n)
                    time.sleep(delay)
                    payload = {"id": f"cmpl-{n}", "object": "chat.completion", "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": text}}]}
                    data = json.dumps(payload if status == 200 else {"error": {"message": text}}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(respond):
        servers.append(FakeOpenAI(respond))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def format_judge(body, n):
    """YES when the judged response (inside the user message) has a think block, else NO."""
    return 200, ("YES" if "Response:\n<think>" in body["messages"][-1]["content"] else "NO"), 0.0


def ctx(**params) -> RewardContext:
    return RewardContext(task=None, params={"llm_judge": {"model": "judge-model", "backoff": 0.01, **params}})


# ---------------------------------------------------------------------------------------------------------------
# endpoint back end
# ---------------------------------------------------------------------------------------------------------------
def test_endpoint_scores_and_request_body(serve):
    server = serve(format_judge)
    scores = llm_judge([GOOD, BAD], [EX, EX], ctx(base_url=server.base_url))
    assert scores == [1.0, 0.0]
    assert len(server.requests) == 2
    by_content = {r["body"]["messages"][0]["content"]: r for r in server.requests}
    for completion in (GOOD, BAD):
        request = by_content[render_prompt(FORMAT_JUDGE_TEMPLATE, EX, completion)]  # the exact user message
        assert request["path"] == "/v1/chat/completions"
        assert request["body"]["model"] == "judge-model"
        assert request["body"]["messages"] == [{"role": "user", "content": render_prompt(FORMAT_JUDGE_TEMPLATE, EX, completion)}]
        assert request["body"]["temperature"] == 0.0 and request["body"]["max_tokens"] == 16
        assert "Authorization" not in request["headers"]  # no api_key_env: no key sent


def test_endpoint_system_prompt_custom_template_and_number_parser(serve):
    # A correctness rubric scored 0-10: "Score: 7" -> 0.7; the gold answer reaches the judge through {answer}.
    server = serve(lambda body, n: (200, "Reasoning is fine. Score: 7", 0.0))
    template = "Q: {question}\nGold: {answer}\nA: {completion}\nGive a score 0-10 as 'Score: n'."
    scores = llm_judge([GOOD], [EX], ctx(base_url=server.base_url + "/", system="Be strict.", template=template,
                                         parser="number", max_score=10))
    assert scores == [pytest.approx(0.7)]
    assert server.requests[0]["body"]["messages"] == [
        {"role": "system", "content": "Be strict."},
        {"role": "user", "content": f"Q: What is 2+3?\nGold: 5\nA: {GOOD}\nGive a score 0-10 as 'Score: n'."},
    ]


def test_endpoint_api_key_from_named_environment_variable(serve, monkeypatch):
    server = serve(format_judge)
    monkeypatch.setenv("R1LAB_TEST_JUDGE_KEY", "sk-test-123")
    assert llm_judge([GOOD], [EX], ctx(base_url=server.base_url, api_key_env="R1LAB_TEST_JUDGE_KEY")) == [1.0]
    request = server.requests[0]
    assert request["headers"]["Authorization"] == "Bearer sk-test-123"
    assert "sk-test-123" not in json.dumps(request["body"])


def test_endpoint_missing_key_variable_fails_the_batch(serve, monkeypatch):
    server = serve(format_judge)
    monkeypatch.delenv("R1LAB_TEST_JUDGE_KEY", raising=False)
    results = score_batch([GOOD, BAD], [EX, EX], {"llm_judge": 1.0},
                          ctx(base_url=server.base_url, api_key_env="R1LAB_TEST_JUDGE_KEY"))
    assert all(not r.valid and "R1LAB_TEST_JUDGE_KEY" in r.error for r in results)
    assert server.requests == []  # nothing was sent without the key


def test_api_key_in_config_is_refused():
    with pytest.raises(ValueError, match="never put an API key in the config"):
        llm_judge([GOOD], [EX], ctx(base_url="http://127.0.0.1:9/v1", api_key="sk-oops"))


RETRY_CASES = [
    # (status of the first reply, retries, expected score or error text, requests made, why)
    (500, 2, 1.0, 2, "a server error is retried and the second attempt succeeds"),
    (429, 1, 1.0, 2, "rate limiting is retried"),
    (500, 0, "HTTP 500 after 1 attempt", 1, "retries=0: the first failure is final and fails the sample"),
    (400, 3, "HTTP 400 after 1 attempt", 1, "a client error is not retried"),
]


@pytest.mark.parametrize("status, retries, expected, calls", [c[:4] for c in RETRY_CASES], ids=[c[4] for c in RETRY_CASES])
def test_endpoint_retries(serve, status, retries, expected, calls):
    server = serve(lambda body, n: (status, "overloaded", 0.0) if n == 1 else (200, "YES", 0.0))
    (score,) = llm_judge([GOOD], [EX], ctx(base_url=server.base_url, retries=retries))
    if isinstance(expected, float):
        assert score == expected
    else:
        assert isinstance(score, RuntimeError) and expected in str(score)
    assert len(server.requests) == calls


def test_endpoint_backoff_doubles(serve):
    # Two failures then success with backoff 0.1: sleeps 0.1 + 0.2 = 0.3 s before the third attempt.
    server = serve(lambda body, n: (503, "busy", 0.0) if n <= 2 else (200, "NO", 0.0))
    start = time.perf_counter()
    assert llm_judge([BAD], [EX], ctx(base_url=server.base_url, backoff=0.1)) == [0.0]
    assert len(server.requests) == 3 and time.perf_counter() - start >= 0.3


def test_endpoint_timeout_is_retried_then_fails_the_sample(serve):
    server = serve(lambda body, n: (200, "YES", 1.0))  # always slower than the timeout
    start = time.perf_counter()
    (score,) = llm_judge([GOOD], [EX], ctx(base_url=server.base_url, timeout=0.2, retries=1))
    assert isinstance(score, RuntimeError) and "after 2 attempt(s)" in str(score) and "timed out" in str(score)
    assert len(server.requests) == 2 and time.perf_counter() - start < 0.9


def test_endpoint_unparseable_reply_invalidates_only_that_sample(serve):
    server = serve(lambda body, n: (200, "YES" if "Response:\n<think>" in body["messages"][0]["content"] else
                                    "I cannot tell.", 0.0))
    results = score_batch([GOOD, BAD], [EX, EX], {"llm_judge": 2.0}, ctx(base_url=server.base_url))
    assert results[0].valid and results[0].total == 2.0
    assert not results[1].valid and "JudgeReplyError" in results[1].error and "no YES/NO verdict" in results[1].error


def test_endpoint_concurrency_is_bounded(serve):
    server = serve(lambda body, n: (200, "YES", 0.2))
    scores = llm_judge([GOOD] * 6, [EX] * 6, ctx(base_url=server.base_url, concurrency=2))
    assert scores == [1.0] * 6
    assert len(server.requests) == 6
    assert server.max_in_flight == 2  # two at a time: parallel, and never more than the bound


def test_endpoint_unreachable_fails_samples_not_the_process():
    # Port 9 (discard) on loopback: nothing listens; the sample carries the connection error.
    (score,) = llm_judge([GOOD], [EX], ctx(base_url="http://127.0.0.1:9/v1", retries=1))
    assert isinstance(score, RuntimeError) and "after 2 attempt(s)" in str(score)


# ---------------------------------------------------------------------------------------------------------------
# parsers and templates
# ---------------------------------------------------------------------------------------------------------------
YES_NO_CASES = [
    ("YES", 1.0, "bare verdict"),
    ("no", 0.0, "lower case"),
    ("Yes. There is no problem with it.", 1.0, "a leading verdict wins over later words"),
    ("The reasoning comes first, so: YES", 1.0, "otherwise the last verdict"),
    ("<think>maybe no... yes</think>NO", 0.0, "a reasoning judge's think block is ignored"),
    ("Nope, yesterday", None, "words that only contain yes/no are not verdicts"),
    ("", None, "empty reply"),
]


@pytest.mark.parametrize("reply, expected", [c[:2] for c in YES_NO_CASES], ids=[c[2] for c in YES_NO_CASES])
def test_parse_yes_no(reply, expected):
    if expected is None:
        with pytest.raises(JudgeReplyError, match="no YES/NO verdict"):
            parse_yes_no(reply)
    else:
        assert parse_yes_no(reply) == expected


NUMBER_CASES = [
    ("0.8", 1.0, 0.8, "bare number"),
    ("7 - the steps are mostly right, 2 small slips", 10.0, 0.7, "a leading number wins"),
    ("Two slips in 3 steps. Score: 4", 10.0, 0.4, "a labelled score wins over other numbers"),
    ("The final score is 0.25", 1.0, 0.25, "'score is x'"),
    ("<think>score 9</think> 1", 1.0, 1.0, "think block ignored"),
    ("I give it 1.5", 1.0, "outside [0, 1.0]", "out of range is unparseable, not clipped"),
    ("great answer", 1.0, "has no number", "no number at all"),
]


@pytest.mark.parametrize("reply, max_score, expected", [c[:3] for c in NUMBER_CASES], ids=[c[3] for c in NUMBER_CASES])
def test_parse_number(reply, max_score, expected):
    if isinstance(expected, str):
        with pytest.raises(JudgeReplyError, match=expected.replace("[", r"\[")):
            parse_number(reply, max_score)
    else:
        assert parse_number(reply, max_score) == pytest.approx(expected)


def test_render_prompt_placeholders_and_braces():
    # Braces inside the completion (LaTeX, code) are data, not placeholders.
    out = render_prompt("{question}|{answer}|{completion}|{{literal}}", EX, "\\boxed{5} {x}")
    assert out == "What is 2+3?|5|\\boxed{5} {x}|{literal}"
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \{gold\}"):
        render_prompt("{gold}", EX, "x")


def test_default_template_is_the_format_judge():
    text = render_prompt(FORMAT_JUDGE_TEMPLATE, EX, GOOD)
    assert "What is 2+3?" in text and GOOD in text and "YES or NO" in text and "<think>" in text
    assert JUDGE_DEFAULTS["parser"] == "yes_no"


@pytest.mark.parametrize("params, message", [
    ({"model": None}, "set rewards.params.llm_judge.model"),  # no judge model at all
    ({"parser": "score"}, "parser must be"),  # unknown parser
    ({"temprature": 0.5}, "unknown parameter(s) temprature"),  # typo in a key
])
def test_judge_bad_params(params, message):
    with pytest.raises(ValueError, match="llm_judge") as err:
        llm_judge([GOOD], [EX], ctx(base_url="http://127.0.0.1:9/v1", **params))
    assert message in str(err.value)


def test_registered_as_batched():
    assert REWARDS.get("llm_judge") is llm_judge and is_batched(llm_judge)


# ---------------------------------------------------------------------------------------------------------------
# local back end (tiny random model: replies are gibberish, but deterministic under greedy decoding)
# ---------------------------------------------------------------------------------------------------------------
def test_local_prompt_uses_chat_template():
    from r1lab.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    assert local_prompt(tok, "", "Judge this") == "<|im_start|>user\nJudge this<|im_end|>\n<|im_start|>assistant\n"
    assert local_prompt(tok, "Be strict.", "Judge this") == (
        "<|im_start|>system\nBe strict.<|im_end|>\n<|im_start|>user\nJudge this<|im_end|>\n<|im_start|>assistant\n")
    tok.chat_template = None  # a base model: plain text
    assert local_prompt(tok, "Be strict.", "Judge this") == "Be strict.\n\nJudge this"


def test_local_judge_applies_the_parser_to_its_replies_deterministically(tiny_model_dir):
    c = RewardContext(task=None, params={"llm_judge": {"model": str(tiny_model_dir), "parser": "number", "max_tokens": 6}})
    examples = [EX, Example(id="e1", answer="7", prompt="What is 3+4?")]
    first = llm_judge([GOOD, BAD], examples, c)
    second = llm_judge([GOOD, BAD], examples, c)
    params = {**JUDGE_DEFAULTS, **c.params_of("llm_judge")}
    replies = local_replies([render_prompt(FORMAT_JUDGE_TEMPLATE, ex, comp) for ex, comp in zip(examples, [GOOD, BAD])], params)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)

    def expected(reply):
        try:
            return parse_number(reply, 1.0)
        except JudgeReplyError as err:
            return f"JudgeReplyError: {err}"

    def shown(score):
        return score if isinstance(score, float) else f"{type(score).__name__}: {score}"

    assert [shown(s) for s in first] == [shown(s) for s in second] == [expected(r) for r in replies]
