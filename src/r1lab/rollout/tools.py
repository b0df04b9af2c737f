"""Tool-integrated multi-turn rollouts: the model writes a ```python block, generation pauses there, the block runs
in the sandbox (``r1lab.sandbox.session``: one stateful interpreter per sample), its output is appended as an
```output block, and generation continues, up to ``tools.max_calls`` calls and ``tools.max_total_tokens`` tokens
of transcript (ToRL, arXiv 2503.23383; ReTool, arXiv 2504.11536).

The loop is turn-synchronous over the batch: each turn is one ``engine.generate_ids`` call over the rows still
going. Inside the call a row that closes a code block leaves the decode batch at once (the engine's ``stop`` hook)
and its code starts running in the background while the other rows decode; the rows rejoin in the next turn's
call, whose prefill reads their whole transcript so far. Any engine with ``generate_ids(sequences, sampling,
seeds, stop)`` serves (the native engine has it).

The transcript is kept as tokens, never re-tokenised: the completion is everything after the prompt, exactly the
tokens the model sampled and the tokens of the tool outputs. ``RolloutBatch.completion_mask`` covers all of them
(the model attends to the tool outputs), ``loss_mask`` only the sampled ones, so tool outputs are out of the loss
and the KL; ``rollout_logprobs`` are the engine's log-probs of the sampled tokens (0 on tool tokens), each computed
with the whole transcript before it in context, so they equal one forward over the whole transcript
(tests/rollout/test_tools.py).
"""

from __future__ import annotations

import dataclasses
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from r1lab.rollout.base import SamplingParams
from r1lab.rollout.sampling import sample_seed
from r1lab.types import Example, RolloutBatch

_CALL = re.compile(r"```(?:python|py)[ \t]*\n(.*?)```", re.DOTALL)


class ToolSession(Protocol):
    """One sample's tool: ``run(code)`` returns an object with ``text``, ``status`` and ``failed``."""

    def run(self, code: str): ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ToolFormat:
    """How a call is recognised in the model's text and how its result is written back."""

    def may_end_call(self, token_text: str) -> bool:
        """Whether a token with this text can complete a call (only then is the turn's text searched)."""
        return "`" in token_text

    def find_call(self, turn_text: str) -> str | None:
        """The code of the first complete ```python block of this turn's text, or None."""
        match = _CALL.search(turn_text)
        return match.group(1) if match else None

    def result_text(self, result, after: str) -> str:
        """The tool turn appended after the model's text ``after`` (which ends with the closing fence)."""
        lead = "" if after.endswith("\n") else "\n"
        return f"{lead}```output\n{result.text}\n```\n"


@dataclass
class _Row:
    prompt: list[int]
    seed: int | None
    pieces: list[tuple[list[int], list[float], bool]] = field(default_factory=list)  # tokens, logps, generated
    calls: list[dict] = field(default_factory=list)
    used: int = 0  # transcript tokens so far
    eos: bool = False
    session: ToolSession | None = None

    def tokens(self) -> list[int]:
        return [t for piece in self.pieces for t in piece[0]]


def tool_rollout(engine, tokenizer, prompts: list[str], n: int, sampling: SamplingParams, open_session: Callable,
                 max_calls: int, max_total_tokens: int, seeds: list[int] | None = None,
                 fmt: ToolFormat | None = None, executor: ThreadPoolExecutor | None = None,
                 prefill: str = "") -> RolloutBatch:
    """``n`` multi-turn completions of each prompt (rows grouped by prompt, as ``engine.generate``).

    ``open_session()``: a fresh ``ToolSession`` for one sample (opened at its first call, closed at its end).
    ``max_total_tokens``: transcript tokens after the prompt, tool outputs included; a row that reaches it is
    truncated. ``seeds``: one per prompt; each row's turn t draws from a generator seeded by (seed, sample, t).
    ``executor``: the threads tool calls run on (a long-lived one: sandboxes die with the thread that started
    them); None = a temporary one. ``prefill``: the text the prompts end with inside the assistant's turn (e.g.
    "```python\n", which opens the first call): the first turn's call is looked for in it plus the sampled text.
    """
    if not hasattr(engine, "generate_ids"):
        raise ValueError(f"tools.enabled=true needs an engine with generate_ids (rollout.engine=native); "
                         f"{type(engine).__name__} has none")
    fmt = fmt or ToolFormat()
    eos_ids = set(engine.eos_ids)
    prompt_ids = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    rows = [_Row(prompt_ids[i], None if seeds is None else sample_seed(seeds[i], j))
            for i in range(len(prompts)) for j in range(n)]
    can_end = {}  # token id -> fmt.may_end_call of its text (a code block closes only on a backtick)

    def may_end_call(token: int) -> bool:
        if token not in can_end:
            can_end[token] = fmt.may_end_call(tokenizer.decode([token]))
        return can_end[token]

    active, turn = list(rows), 0
    own = executor is None
    pool = executor or ThreadPoolExecutor(max_workers=8, thread_name_prefix="r1lab-tool")
    try:
        while active:
            budgets = [max_total_tokens - row.used for row in active]
            turn_tokens: list[list[int]] = [[] for _ in active]
            pending: dict[int, tuple[str, Future]] = {}

            def stop(k: int, token: int) -> bool:
                row, sampled = active[k], turn_tokens[k]
                sampled.append(token)
                if len(sampled) >= budgets[k]:
                    return True  # this row's own budget (the call's limit is the largest of the batch)
                if len(row.calls) >= max_calls or token in eos_ids or not may_end_call(token):
                    return False
                code = fmt.find_call((prefill if turn == 0 else "") + tokenizer.decode(sampled))
                if code is None:
                    return False
                if row.session is None:
                    row.session = open_session()
                pending[k] = (code, pool.submit(row.session.run, code))  # runs while the others decode
                return True

            turn_seeds = None if seeds is None else [sample_seed(row.seed, turn) for row in active]
            turn_sampling = dataclasses.replace(sampling, max_new_tokens=max(budgets))
            tokens, logps = engine.generate_ids([row.prompt + row.tokens() for row in active], turn_sampling,
                                                seeds=turn_seeds, stop=stop)
            still = []
            for k, row in enumerate(active):
                sampled, sampled_logp = tokens[k][: budgets[k]], logps[k][: budgets[k]]
                row.pieces.append((sampled, sampled_logp, True))
                row.used += len(sampled)
                if sampled and sampled[-1] in eos_ids:
                    row.eos = True
                    continue
                if k not in pending:
                    continue  # out of tokens: truncated
                code, future = pending[k]
                try:
                    result = future.result()
                except Exception as err:  # noqa: BLE001 - a tool failure is the model's text, never the trainer's
                    from r1lab.sandbox.session import ToolResult

                    result = ToolResult("infra", "", f"{type(err).__name__}: {err}")
                row.calls.append({"code": code, "status": result.status, "output": result.text,
                                  "failed": result.failed})
                text = fmt.result_text(result, (prefill if turn == 0 else "") + tokenizer.decode(sampled))
                tool_ids = tokenizer(text, add_special_tokens=False).input_ids[: max_total_tokens - row.used]
                row.pieces.append((tool_ids, [0.0] * len(tool_ids), False))
                row.used += len(tool_ids)
                if row.used < max_total_tokens:
                    still.append(row)
            active, turn = still, turn + 1
    finally:
        for row in rows:
            if row.session is not None:
                row.session.close()
        if own:
            pool.shutdown(wait=True)
    return _batch(rows, tokenizer, n)


def _batch(rows: list[_Row], tokenizer, n: int) -> RolloutBatch:
    pad = tokenizer.pad_token_id
    B = len(rows)
    P = max(len(r.prompt) for r in rows)
    C = max(1, max(r.used for r in rows))
    prompt_ids = torch.full((B, P), pad, dtype=torch.long)
    prompt_mask = torch.zeros(B, P, dtype=torch.long)
    completion_ids = torch.full((B, C), pad, dtype=torch.long)
    completion_mask = torch.zeros(B, C)
    loss_mask = torch.zeros(B, C)
    logprobs = torch.zeros(B, C)
    for b, row in enumerate(rows):
        prompt_ids[b, P - len(row.prompt):] = torch.tensor(row.prompt, dtype=torch.long)
        prompt_mask[b, P - len(row.prompt):] = 1
        at = 0
        for tokens, logps, generated in row.pieces:
            if tokens:
                completion_ids[b, at : at + len(tokens)] = torch.tensor(tokens, dtype=torch.long)
                logprobs[b, at : at + len(tokens)] = torch.tensor(logps, dtype=torch.float32) if generated else 0.0
                loss_mask[b, at : at + len(tokens)] = 1.0 if generated else 0.0
            at += len(tokens)
        completion_mask[b, :at] = 1.0
    texts = tokenizer.batch_decode([r.tokens() for r in rows], skip_special_tokens=True)
    return RolloutBatch(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                        completion_mask=completion_mask, truncated=torch.tensor([not r.eos for r in rows]),
                        texts=texts, group_size=n, rollout_logprobs=logprobs, loss_mask=loss_mask,
                        tool_calls=[r.calls for r in rows])


def with_tool_calls(examples: list[Example], batch: RolloutBatch) -> list[Example]:
    """Row-aligned examples whose ``meta['tool_calls']`` holds that row's calls, so rewards can score the use of
    the tool (``r1lab.rewards.tools``); unchanged when the rollout had no tools."""
    if batch.tool_calls is None:
        return examples
    return [dataclasses.replace(e, meta={**e.meta, "tool_calls": calls}) for e, calls in zip(examples, batch.tool_calls)]


def tool_metrics(batch: RolloutBatch) -> dict[str, float]:
    """Per step: calls per sample, the share of samples that called the tool, and the share of calls that failed
    (raised, timed out, crashed, or were refused)."""
    if batch.tool_calls is None:
        return {}
    calls = [c for row in batch.tool_calls for c in row]
    rows = max(len(batch.tool_calls), 1)
    return {"tools/calls_per_sample": len(calls) / rows,
            "tools/call_rate": sum(1 for row in batch.tool_calls if row) / rows,
            "tools/error_rate": (sum(1 for c in calls if c["failed"]) / len(calls)) if calls else 0.0,
            "tools/tokens_masked": float((batch.completion_mask - batch.loss_mask).sum() / rows)}


class PythonTool:
    """The ``python`` tool of a run: a pool of warm sandboxes for per-sample sessions (``r1lab.sandbox.session``)."""

    def __init__(self, call_time_limit: float, sample_time_limit: float, max_output_chars: int, memory_mb: int):
        from r1lab.sandbox import SandboxLimits
        from r1lab.sandbox.session import SessionPool

        limits = SandboxLimits(time_limit=call_time_limit, memory_mb=memory_mb)
        self.pool = SessionPool(limits, call_time_limit, sample_time_limit, max_output_chars)
        # long-lived threads for the calls: a sandbox started on one lives as long as it (--die-with-parent)
        self.executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="r1lab-tool")

    def open(self):
        return self.pool.open()

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.pool.close()


class ToolRollout:
    """``generate(prompts, n, sampling, seeds)`` like an engine's, with the tool in the loop (``tools`` config):
    what the GRPO loop and its evaluation call when ``tools.enabled``. ``close()`` ends the tool's sandboxes."""

    def __init__(self, engine, tokenizer, tools, prefill: str = ""):
        if tools.name != "python":
            raise ValueError(f"tools.name={tools.name!r}: unknown tool; known: python")
        if not hasattr(engine, "generate_ids"):
            raise ValueError(f"tools.enabled=true needs rollout.engine=native (an engine with generate_ids); "
                             f"{type(engine).__name__} has none yet")
        self.engine, self.tokenizer, self.tools, self.prefill = engine, tokenizer, tools, prefill
        self.tool = PythonTool(tools.call_time_limit, tools.sample_time_limit, tools.max_output_chars, tools.memory_mb)

    def generate(self, prompts: list[str], n: int, sampling: SamplingParams,
                 seeds: list[int] | None = None) -> RolloutBatch:
        total = self.tools.max_total_tokens or sampling.max_new_tokens
        return tool_rollout(self.engine, self.tokenizer, prompts, n, sampling, self.tool.open, self.tools.max_calls,
                            total, seeds=seeds, executor=self.tool.executor, prefill=self.prefill)

    def sync_weights(self, policy) -> float:
        return self.engine.sync_weights(policy)

    def close(self) -> None:
        self.tool.close()
