"""LLM-as-judge reward: a local model or an OpenAI-compatible endpoint scores each completion from a prompt template.

The default template is the format judge of the illustrated R1 explainer (an LLM checks that the model reasons in
``<think>`` before it answers in ``<answer>``); any template with the placeholders ``{question}``, ``{completion}``
and ``{answer}`` (the gold answer) turns it into a rubric or correctness judge. A reply that cannot be parsed
makes that sample invalid (no advantage), never a silent 0 (docs/architecture.md principle 6).

Two back ends, chosen by ``base_url``:
  * endpoint (``base_url`` set): POST ``{base_url}/chat/completions`` with ``model``; the API key is read from the
    environment variable named by ``api_key_env`` (never from the config). Requests run ``concurrency`` at a time,
    each with a socket ``timeout`` and up to ``retries`` retries with exponential back-off on transport errors,
    HTTP 408/409/429 and 5xx.
  * local (no ``base_url``): ``model`` is any model r1lab loads (HF folder, cached hub id, .gguf, the embedded
    alias), generating with the rollout engine, greedy by default, ``batch_size`` prompts at a time.
"""

from __future__ import annotations

import json
import os
import re
import string
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from r1lab.rewards.functions import REWARDS, RewardContext, batched
from r1lab.rewards.functions import declare_params, reward_params
from r1lab.types import Example

# The R1-Zero explainer's format judge, in our words: format only, the answer's correctness is not asked.
FORMAT_JUDGE_TEMPLATE = (
    "You grade only the format of a response, not whether its answer is correct.\n"
    "A well-formed response first reasons step by step inside <think> </think> tags and only then gives its final "
    "answer inside <answer> </answer> tags.\n\n"
    "Question:\n{question}\n\n"
    "Response:\n{completion}\n\n"
    "Does the response reason before it answers, with its reasoning inside <think> </think> followed by its answer "
    "inside <answer> </answer>? Reply with YES or NO only."
)
PLACEHOLDERS = ("question", "completion", "answer")

JUDGE_DEFAULTS = {
    "model": None,  # local: HF folder / hub id / .gguf / alias; endpoint: the served model's name
    "base_url": None,  # e.g. http://127.0.0.1:8000/v1 selects the endpoint back end
    "api_key_env": None,  # name of the environment variable that holds the endpoint's key
    "template": FORMAT_JUDGE_TEMPLATE,
    "system": "",  # optional system message
    "parser": "yes_no",  # "yes_no" (YES -> 1, NO -> 0) or "number" (a score in [0, max_score] -> [0, 1])
    "max_score": 1.0,
    "max_tokens": 16,  # the judge's reply length
    "temperature": 0.0,  # 0 = greedy
    "concurrency": 8,  # endpoint requests in flight
    "retries": 3,  # endpoint retries after the first attempt
    "timeout": 60.0,  # seconds per endpoint request (socket timeout)
    "backoff": 1.0,  # seconds before the first retry; doubles each retry
    "batch_size": 16,  # local generation batch
    "device": "cpu",  # local model device
}
RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)
_VERDICT = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_SCORE_LABELLED = re.compile(r"score\s*(?:is|[:=])?\s*(" + _NUMBER + ")", re.IGNORECASE)
_ANY_NUMBER = re.compile(_NUMBER)


class JudgeReplyError(ValueError):
    """The judge's reply holds no usable verdict: the sample is invalid, not scored 0."""


def _visible(reply: str) -> str:
    """The reply without a reasoning judge's ``<think>`` block."""
    return _THINK.sub(" ", reply).strip()


def parse_yes_no(reply: str) -> float:
    """1.0 for YES, 0.0 for NO: the reply's first word when it is a verdict, else its last YES/NO word."""
    text = _visible(reply)
    verdicts = _VERDICT.findall(text)
    if not verdicts:
        raise JudgeReplyError(f"judge reply has no YES/NO verdict: {reply[:200]!r}")
    first = _VERDICT.match(text)
    verdict = first.group(1) if first else verdicts[-1]
    return 1.0 if verdict.lower() == "yes" else 0.0


def parse_number(reply: str, max_score: float = 1.0) -> float:
    """A score in [0, max_score] scaled to [0, 1]: the last "score: x", else a leading number, else the last number."""
    text = _visible(reply)
    labelled = _SCORE_LABELLED.findall(text)
    leading = re.match(_NUMBER, text)
    numbers = _ANY_NUMBER.findall(text)
    raw = labelled[-1] if labelled else leading.group() if leading else numbers[-1] if numbers else None
    if raw is None:
        raise JudgeReplyError(f"judge reply has no number: {reply[:200]!r}")
    value = float(raw)
    if not 0.0 <= value <= max_score:
        raise JudgeReplyError(f"judge score {value} outside [0, {max_score}] in reply {reply[:200]!r}")
    return value / max_score


def parse_reply(reply: str, parser: str, max_score: float) -> float:
    if parser == "yes_no":
        return parse_yes_no(reply)
    if parser == "number":
        return parse_number(reply, max_score)
    raise ValueError(f"reward 'llm_judge': parser must be 'yes_no' or 'number', got {parser!r}")


def render_prompt(template: str, example: Example, completion: str) -> str:
    """The template with ``{question}``, ``{completion}`` and ``{answer}`` filled (literal braces are doubled)."""
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = sorted(fields - set(PLACEHOLDERS))
    if unknown:
        raise ValueError(
            f"reward 'llm_judge': unknown placeholder(s) {', '.join('{' + f + '}' for f in unknown)} in template; "
            f"allowed: {', '.join('{' + p + '}' for p in PLACEHOLDERS)} (write literal braces as {{{{ }}}})"
        )
    return template.format(question=example.question, completion=completion, answer=example.answer)


def chat_messages(system: str, prompt: str) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


# ---------------------------------------------------------------------------------------------------------------
# endpoint back end
# ---------------------------------------------------------------------------------------------------------------
def chat_completions_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base if base.endswith("/chat/completions") else f"{base}/chat/completions"


def _post_json(url: str, body: dict, headers: dict, timeout: float) -> dict:
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise JudgeReplyError(f"judge endpoint returned non-JSON: {raw[:200]!r}") from err


def _reply_text(payload: dict) -> str:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise JudgeReplyError(f"judge endpoint reply is not a chat completion: {str(payload)[:200]}") from err
    if not isinstance(content, str):
        raise JudgeReplyError(f"judge endpoint reply has no text content: {str(payload)[:200]}")
    return content


def request_with_retries(url: str, body: dict, headers: dict, timeout: float, retries: int, backoff: float) -> str:
    """One chat completion; transport errors, timeouts and retryable HTTP statuses are retried with back-off."""
    import http.client
    import urllib.error

    for attempt in range(retries + 1):
        try:
            return _reply_text(_post_json(url, body, headers, timeout))
        except urllib.error.HTTPError as err:
            if err.code not in RETRY_STATUS or attempt == retries:
                detail = err.read()[:200].decode(errors="replace")
                raise RuntimeError(
                    f"judge endpoint {url}: HTTP {err.code} after {attempt + 1} attempt(s): {detail}"
                ) from err
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
            if attempt == retries:
                raise RuntimeError(
                    f"judge endpoint {url}: {type(err).__name__}: {err} after {attempt + 1} attempt(s)"
                ) from err
        time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


def endpoint_replies(prompts: list[str], p: dict) -> list[str | BaseException]:
    """The endpoint's reply to each prompt (or the exception that ended its retries), ``concurrency`` at a time."""
    headers = {"Content-Type": "application/json"}
    if p["api_key_env"]:
        key = os.environ.get(p["api_key_env"])
        if not key:
            raise ValueError(f"reward 'llm_judge': environment variable {p['api_key_env']!r} (api_key_env) is not set")
        headers["Authorization"] = f"Bearer {key}"
    url = chat_completions_url(p["base_url"])

    def one(prompt: str) -> str | BaseException:
        body = {"model": p["model"], "messages": chat_messages(p["system"], prompt),
                "temperature": float(p["temperature"]), "max_tokens": int(p["max_tokens"])}
        try:
            return request_with_retries(url, body, headers, float(p["timeout"]), int(p["retries"]), float(p["backoff"]))
        except Exception as err:  # noqa: BLE001 - this sample fails, its neighbours are still scored
            return err

    if not prompts:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(int(p["concurrency"]), len(prompts)))) as pool:
        return list(pool.map(one, prompts))


# ---------------------------------------------------------------------------------------------------------------
# local back end
# ---------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def _load_local_judge(name: str, device: str):
    """Loaded once per process and reused every step (loading is the slow part)."""
    from r1lab.models.loading import load_model

    loaded = load_model(name, device=device)
    loaded.model.eval()
    return loaded


def local_prompt(tokenizer, system: str, prompt: str) -> str:
    """The judge prompt as the local model sees it: its chat template when it has one, else plain text."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(chat_messages(system, prompt), add_generation_prompt=True, tokenize=False)
    return f"{system}\n\n{prompt}" if system else prompt


def local_replies(prompts: list[str], p: dict) -> list[str]:
    """Replies of the local judge model to each prompt (greedy when temperature is 0)."""
    from r1lab.rollout.base import SamplingParams
    from r1lab.rollout.native_engine import NativeEngine

    loaded = _load_local_judge(str(p["model"]), str(p["device"]))
    engine = NativeEngine(loaded.model, loaded.tokenizer, batch_size=int(p["batch_size"]))
    texts = [local_prompt(loaded.tokenizer, p["system"], prompt) for prompt in prompts]
    sampling = SamplingParams(temperature=float(p["temperature"]), max_new_tokens=int(p["max_tokens"]))
    return engine.generate(texts, n=1, sampling=sampling).texts if texts else []


# ---------------------------------------------------------------------------------------------------------------
# the reward
# ---------------------------------------------------------------------------------------------------------------
def judge_params(ctx: RewardContext) -> dict:
    if "api_key" in ctx.params_of("llm_judge"):
        raise ValueError(
            "reward 'llm_judge': never put an API key in the config; put it in an environment variable and set "
            "rewards.params.llm_judge.api_key_env to that variable's name"
        )
    p = reward_params(ctx, "llm_judge", JUDGE_DEFAULTS)
    if not p["model"]:
        raise ValueError(
            "reward 'llm_judge': set rewards.params.llm_judge.model (a local model, or the endpoint's model name)"
        )
    if p["parser"] not in ("yes_no", "number"):
        raise ValueError(f"reward 'llm_judge': parser must be 'yes_no' or 'number', got {p['parser']!r}")
    if not float(p["max_score"]) > 0:
        raise ValueError(f"reward 'llm_judge': max_score must be > 0, got {p['max_score']!r}")
    return p


@REWARDS.register("llm_judge")
@declare_params(**JUDGE_DEFAULTS)
@batched
def llm_judge(completions: list[str], examples: list[Example], ctx: RewardContext) -> list[float | BaseException]:
    """The judge's score of each completion in [0, 1]; an unparseable reply or a failed request fails that sample."""
    p = judge_params(ctx)
    prompts = [render_prompt(p["template"], ex, c) for c, ex in zip(completions, examples)]
    replies = endpoint_replies(prompts, p) if p["base_url"] else local_replies(prompts, p)
    scores: list[float | BaseException] = []
    for reply in replies:
        if isinstance(reply, BaseException):
            scores.append(reply)
            continue
        try:
            scores.append(parse_reply(reply, p["parser"], float(p["max_score"])))
        except JudgeReplyError as err:
            scores.append(err)
    return scores


# config-time validation of rewards.params.llm_judge (the same checks as at scoring time)
llm_judge.check_params = lambda params: judge_params(RewardContext(task=None, params={"llm_judge": params}))
