"""Teachers: the programmatic solvers (known traces, verified by the tasks' own scorers, realistic mistakes) and the
OpenAI-compatible endpoint client (retries, back-off, errors naming the URL) against `r1lab serve` on loopback."""

from __future__ import annotations

import random
import re
import socket
import threading

import pytest

from r1lab.data.program_teachers import arithmetic_trace, countdown_trace, solve_countdown
from r1lab.data.teachers import (EndpointSettings, EndpointTeacher, ProgramTeacher, TeacherError, TeacherPrompt,
                                 TeacherRequest, TeacherSampling)
from r1lab.rewards.extract import extract_answer
from r1lab.types import Example


def ex(question: str, **meta) -> Example:
    return Example(id="q", answer="", prompt=question, meta=meta)


# ---------------------------------------------------------------------------------------------------------------
# program:arithmetic
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("question, fmt, expected", [
    # two-term addition with a carry, plain: the last number is the answer
    ("Calculate 47 + 38.", "plain",
     "Ones: 7 + 8 = 15, write 5 carry 1.\nTens: 4 + 3 + 1 = 8, write 8.\nSo 47 + 38 = 85."),
    # one digit, no carry
    ("Calculate 4 + 1.", "plain", "Ones: 4 + 1 = 5, write 5.\nSo 4 + 1 = 5."),
    # a carry out of the top column
    ("Calculate 99 + 1.", "plain",
     "Ones: 9 + 1 = 10, write 0 carry 1.\nTens: 9 + 0 + 1 = 10, write 0 carry 1.\nHundreds: carry 1, write 1.\n"
     "So 99 + 1 = 100."),
    # subtraction with a borrow chained through a zero
    ("Calculate 903 - 48.", "plain",
     "Ones: 3 - 8 needs a borrow: 13 - 8 = 5.\nTens: 0 - 1 - 4 needs a borrow: 9 - 4 = 5.\nHundreds: 9 - 1 - 0 = 8.\n"
     "So 903 - 48 = 855."),
    # think layout: steps inside <think>, the answer tagged
    ("Calculate 47 + 38.", "think",
     "<think>\nOnes: 7 + 8 = 15, write 5 carry 1.\nTens: 4 + 3 + 1 = 8, write 8.\nSo 47 + 38 = 85.\n</think>\n"
     "<answer>85</answer>"),
])
def test_arithmetic_known_traces(question, fmt, expected):
    trace = arithmetic_trace(ex(question), random.Random(0), fmt, 0.0)
    assert trace.text == expected
    assert trace.mistake is None


def test_multi_term_goes_negative_and_back():
    trace = arithmetic_trace(ex("Calculate 5 - 9 + 3 - 12."), random.Random(0), "plain", 0.0)
    assert trace.answer == "-13"
    assert trace.text.splitlines() == [
        "First 5 - 9.", "9 is larger than 5, so compute 9 - 5 and make it negative.", "Ones: 9 - 5 = 4.",
        "So 5 - 9 = -4.",
        "Next -4 + 3.", "4 is larger than 3, so compute 4 - 3 and make it negative.", "Ones: 4 - 3 = 1.",
        "So -4 + 3 = -1.",
        "Next -1 - 12.", "Both negative: add 1 + 12, then make it negative.", "Ones: 1 + 2 = 3, write 3.",
        "Tens: 0 + 1 = 1, write 1.", "So -1 - 12 = -13.",
    ]
    assert extract_answer(trace.text) == "-13"


def test_dropped_carry_is_a_realistic_mistake():
    # 47 + 38 has one carry (into the tens); error_rate 1 with a seed that picks the dropped carry
    kinds = {}
    for seed in range(20):
        t = arithmetic_trace(ex("Calculate 47 + 38."), random.Random(seed), "plain", 1.0)
        kinds[t.mistake] = t
    dropped = kinds["dropped_carry"]
    assert dropped.text == "Ones: 7 + 8 = 15, write 5 carry 1.\nTens: 4 + 3 = 7, write 7.\nSo 47 + 38 = 75."
    assert dropped.answer == "75"
    assert set(kinds) == {"dropped_carry", "slip"}  # both kinds occur; every one of them is wrong
    assert all(t.answer != "85" for t in kinds.values())


def test_unsupported_expressions_are_named():
    with pytest.raises(ValueError, match="only \\+ and -"):
        arithmetic_trace(ex("Calculate 4 * 5."), random.Random(0))
    with pytest.raises(ValueError, match="no expression"):
        arithmetic_trace(ex("What is the capital of France?"), random.Random(0))


@pytest.fixture(scope="module")
def arithmetic_task():
    from r1lab.tasks import load_task

    params = {"min_terms": 2, "max_terms": 4, "min_digits": 1, "max_digits": 3, "operators": ["+", "-"],
              "allow_parentheses": False, "allow_negation": False}
    return load_task("rg:basic_arithmetic", params, seed=7, train_size=60, eval_size=5)


@pytest.mark.parametrize("fmt", ["plain", "think"])
def test_arithmetic_traces_pass_the_task_verifier(arithmetic_task, fmt):
    """Every exact trace is accepted by reasoning-gym's own scorer after r1lab's default extraction; every trace
    with a mistake falls short of full marks."""
    teacher = ProgramTeacher("arithmetic", fmt, error_rate=0.5, seed=3)
    requests = [TeacherRequest(e, 0) for e in arithmetic_task.train]
    outcomes = []
    for req, reply in teacher.generate(requests):
        score = arithmetic_task.score(extract_answer(reply.completion), req.example)
        outcomes.append((reply.meta["mistake"] is None, score))
    # reasoning-gym gives partial credit to some near misses, so a mistake scores below 1, not always 0
    assert all((score == 1.0) == exact for exact, score in outcomes)
    assert 0 < sum(exact for exact, _ in outcomes) < len(outcomes)  # both kinds present at error_rate 0.5


def test_program_teacher_is_deterministic_per_id_and_sample():
    teacher = ProgramTeacher("arithmetic", "plain", error_rate=0.5, seed=0)
    e = ex("Calculate 47 + 38.")
    first = [r.completion for _, r in teacher.generate([TeacherRequest(e, s) for s in range(6)])]
    again = [r.completion for _, r in teacher.generate([TeacherRequest(e, s) for s in (5, 3)])]
    assert again == [first[5], first[3]]
    with pytest.raises(ValueError, match="program:countdown"):
        ProgramTeacher("nonsense")


# ---------------------------------------------------------------------------------------------------------------
# program:countdown
# ---------------------------------------------------------------------------------------------------------------
def test_countdown_solutions_are_accepted_by_reasoning_gym():
    from r1lab.tasks import load_task

    task = load_task("rg:countdown", {}, seed=1, train_size=8, eval_size=2)
    teacher = ProgramTeacher("countdown", "plain", error_rate=0.0)
    for req, reply in teacher.generate([TeacherRequest(e, 0) for e in task.train]):
        answer = extract_answer(reply.completion)
        assert reply.completion.endswith(f"\\boxed{{{answer}}}.")
        assert task.score(answer, req.example) == 1.0


def test_countdown_trace_and_wrong_operator():
    e = ex("", entry={"metadata": {"numbers": [6, 61, 94, 4], "target": 309}})
    good = countdown_trace(e, random.Random(0), "think", 0.0)
    assert good.text.startswith("<think>\nNumbers: 6, 61, 94, 4. Target: 309.\n")
    assert good.text.endswith(f"Reached 309.\n</think>\n<answer>{good.answer}</answer>")
    assert eval(good.answer) == 309  # the expression makes the target ...
    assert sorted(int(n) for n in re.findall(r"\d+", good.answer)) == [4, 6, 61, 94]  # ... with every number once
    bad = countdown_trace(e, random.Random(0), "think", 1.0)
    assert bad.mistake == "wrong_operation" and eval(bad.answer) != 309
    assert solve_countdown([2, 3], 7, random.Random(0)) is None  # 2+3, 3-2, 2*3: none makes 7


# ---------------------------------------------------------------------------------------------------------------
# The endpoint client, against `r1lab serve`
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_parts():
    from r1lab.models.loading import prepare_tokenizer
    from r1lab.models.tiny import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    model = tiny_model(tok)
    model.generation_config.eos_token_id = tok.eos_token_id
    return model, tok


def serve(tiny_parts, fail=None, count: int = 0, status: int = 500):
    """`r1lab serve` on loopback; with ``fail`` (the fail_first_requests fixture) its first ``count`` POSTs fail."""
    from r1lab.rollout.server import CompletionService, make_server

    server = make_server(CompletionService(*tiny_parts, "tiny"), "127.0.0.1", 0)
    if fail is not None:
        fail(server, count, status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(url: str, sleeps: list, **settings) -> EndpointTeacher:
    return EndpointTeacher(EndpointSettings(url, "tiny", **settings), TeacherPrompt(system="Be brief."),
                           TeacherSampling(temperature=1.0, top_p=1.0, max_new_tokens=3), sleep=sleeps.append)


@pytest.mark.parametrize("status", [500, 429])
def test_retries_with_exponential_backoff_then_succeeds(tiny_parts, fail_first_requests, status):
    server, url = serve(tiny_parts, fail_first_requests, count=3, status=status)
    sleeps: list[float] = []
    try:
        teacher = client(url, sleeps, max_retries=4, backoff_s=0.5, concurrency=1)
        [(req, reply)] = list(teacher.generate([TeacherRequest(ex("Calculate 1 + 2."), 0, seed=1)]))
    finally:
        server.shutdown()
        server.server_close()
    assert sleeps == [0.5, 1.0, 2.0]  # three failures, back-off doubling
    assert reply.meta == {"retries": 3}
    assert reply.completion_tokens == 3 and reply.finish_reason == "length"
    # "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCalculate 1 + 2.<|im_end|>\n<|im_start|>assistant\n":
    # 5 special tokens + 16 + 1 + 21 + 1 + 10 characters
    assert reply.prompt_tokens == 54


def test_unreachable_endpoint_names_url_and_error_after_retries():
    port = free_port()
    sleeps: list[float] = []
    teacher = client(f"http://127.0.0.1:{port}/v1", sleeps, max_retries=2, backoff_s=0.25)
    with pytest.raises(TeacherError) as info:
        list(teacher.generate([TeacherRequest(ex("Calculate 1 + 2."), 0)]))
    message = str(info.value)
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in message
    assert "Connection refused" in message and "after 3 attempts" in message
    assert sleeps == [0.25, 0.5]


def test_client_errors_are_not_retried(tiny_parts, fail_first_requests):
    server, url = serve(tiny_parts, fail_first_requests, count=1, status=400)
    sleeps: list[float] = []
    try:
        with pytest.raises(TeacherError, match="HTTP 400"):
            list(client(url, sleeps).generate([TeacherRequest(ex("Calculate 1 + 2."), 0)]))
    finally:
        server.shutdown()
        server.server_close()
    assert sleeps == []


def test_api_key_comes_from_the_named_variable(monkeypatch):
    monkeypatch.delenv("R1LAB_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="R1LAB_TEST_KEY"):
        client("http://127.0.0.1:1/v1", [], api_key_env="R1LAB_TEST_KEY")
    monkeypatch.setenv("R1LAB_TEST_KEY", "sk-secret-123")
    teacher = client("http://127.0.0.1:1/v1", [], api_key_env="R1LAB_TEST_KEY")
    assert "sk-secret-123" not in str(teacher.payload(TeacherRequest(ex("Calculate 1 + 2."), 0)))


def test_completions_api_sends_the_rendered_prompt(tiny_parts):
    server, url = serve(tiny_parts)
    try:
        teacher = EndpointTeacher(EndpointSettings(url, "tiny", api="completions"),
                                  TeacherPrompt(template="plain", instruction="Sum?"),
                                  TeacherSampling(temperature=0.0, top_p=1.0, max_new_tokens=2))
        [(_, reply)] = list(teacher.generate([TeacherRequest(ex("1 + 2"), 0)]))
    finally:
        server.shutdown()
        server.server_close()
    assert reply.prompt_tokens == len("1 + 2 Sum?")  # plain template: question + instruction, one token a character
    assert reply.completion_tokens == 2
    with pytest.raises(ValueError, match="applies no chat template"):
        EndpointTeacher(EndpointSettings(url, "tiny", api="completions"), TeacherPrompt(template="chat"),
                        TeacherSampling())


def test_reasoning_content_is_kept_as_a_think_block():
    # DeepSeek's API returns R1's chain of thought apart from the answer
    teacher = client("http://127.0.0.1:1/v1", [])
    data = {"choices": [{"message": {"role": "assistant", "content": "<answer>3</answer>",
                                     "reasoning_content": "1 + 2 = 3"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 11}}
    reply = teacher._reply(data, 0.1, 0)
    assert reply.completion == "<think>\n1 + 2 = 3\n</think>\n<answer>3</answer>"
    assert (reply.prompt_tokens, reply.completion_tokens, reply.finish_reason, reply.meta) == (7, 11, "stop", {})
    no_usage = teacher._reply({"choices": [{"message": {"content": "3"}, "finish_reason": "length"}]}, 0.1, 0)
    assert no_usage.meta == {"usage_missing": True} and no_usage.finish_reason == "length"


def test_chat_payload_turns_system_and_instruction():
    teacher = EndpointTeacher(EndpointSettings("http://127.0.0.1:1/v1", "m"),
                              TeacherPrompt(system="S.", instruction="Box it."), TeacherSampling(0.6, 0.95, 64))
    body = teacher.payload(TeacherRequest(ex("Calculate 1 + 2."), 0, seed=9))
    assert body == {"model": "m", "max_tokens": 64, "temperature": 0.6, "top_p": 0.95, "n": 1, "seed": 9,
                    "messages": [{"role": "system", "content": "S."},
                                 {"role": "user", "content": "Calculate 1 + 2. Box it."}]}
    chat = Example(id="c", answer="3", messages=[{"role": "system", "content": "Own."},
                                                 {"role": "user", "content": "1 + 2?"}])
    assert teacher.payload(TeacherRequest(chat, 0))["messages"] == [  # the example's own system turn stays
        {"role": "system", "content": "Own."}, {"role": "user", "content": "1 + 2? Box it."}]
