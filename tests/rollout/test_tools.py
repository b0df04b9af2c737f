"""Multi-turn tool rollouts (r1lab.rollout.tools). Oracles: the engine's per-turn log-probs of the sampled tokens
equal one forward over the whole transcript and a token-by-token loop; the masked loss counts exactly the sampled
tokens; tool outputs are in the attention (completion_mask) and out of the loss (loss_mask)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from r1lab.algos.logprobs import completion_logprobs
from r1lab.models.loading import prepare_tokenizer
from r1lab.models.tiny import tiny_model, tiny_tokenizer
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.native_engine import NativeEngine
from r1lab.rollout.tools import ToolFormat, tool_metrics, tool_rollout, with_tool_calls
from r1lab.types import Example


@dataclass
class Result:
    text: str
    status: str = "ok"

    @property
    def failed(self) -> bool:
        return self.status != "ok"


class CountingSession:
    """A stand-in tool: answers each call with its number and the code's length; every second call fails."""

    closed = 0

    def __init__(self):
        self.calls = 0

    def run(self, code: str) -> Result:
        self.calls += 1
        return Result(f"#{self.calls}:{len(code)}", "ok" if self.calls % 2 else "error")

    def close(self) -> None:
        CountingSession.closed += 1


class EveryFewTokens(ToolFormat):
    """A random tiny model never writes ```python: a call is any 4 characters of a turn."""

    def may_end_call(self, token_text: str) -> bool:
        return True

    def find_call(self, turn_text: str):
        return turn_text if len(turn_text) >= 4 else None

    def result_text(self, result, after: str) -> str:
        return f"[{result.text}]"


def _engine(fast_decode=True):
    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    model = tiny_model(tok, seed=3).double()
    model.generation_config.eos_token_id = tok.eos_token_id
    return NativeEngine(model, tok, batch_size=4, fast_decode=fast_decode), tok, model


def _rollout(engine, tok, prompts, n=2, max_calls=2, total=30, seeds=(11, 12)):
    CountingSession.closed = 0
    return tool_rollout(engine, tok, prompts, n, SamplingParams(temperature=1.0, max_new_tokens=total),
                        CountingSession, max_calls=max_calls, max_total_tokens=total, seeds=list(seeds),
                        fmt=EveryFewTokens())


@pytest.mark.parametrize("fast_decode", [True, False])
def test_per_turn_logprobs_equal_one_forward_over_the_transcript(fast_decode):
    engine, tok, model = _engine(fast_decode)
    batch = _rollout(engine, tok, ["12+3=", "a longer prompt: 40+2="])
    B, C = batch.completion_ids.shape
    assert B == 4 and batch.loss_mask is not None
    tool_tokens = batch.completion_mask - batch.loss_mask
    assert bool((tool_tokens >= 0).all()) and float(tool_tokens.sum()) > 0  # some tool output in the transcripts
    with torch.no_grad():
        one, _ = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                     batch.completion_mask)  # (B, C) float64, one forward per row
    sampled = batch.loss_mask.bool()
    assert torch.allclose(one[sampled].float(), batch.rollout_logprobs[sampled], atol=1e-5, rtol=0)
    assert float(batch.rollout_logprobs[~sampled].abs().sum()) == 0.0  # tool and pad tokens: no engine log-prob

    # The loop oracle: each sampled token's log-prob from a plain forward over exactly the tokens before it.
    for b in range(B):
        prompt = batch.prompt_ids[b][batch.prompt_mask[b].bool()].tolist()
        length = int(batch.completion_mask[b].sum())
        transcript = batch.completion_ids[b, :length].tolist()
        for t in range(length):
            if not batch.loss_mask[b, t]:
                continue
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([prompt + transcript[:t]])).logits[0, -1]
            expected = torch.log_softmax(logits.double(), -1)[transcript[t]]
            assert abs(float(expected) - float(one[b, t])) < 1e-9


def test_masked_loss_counts_only_sampled_tokens():
    engine, tok, model = _engine()
    batch = _rollout(engine, tok, ["7*8="], n=3, seeds=(5,))
    adv = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    logp, _ = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                  batch.completion_mask)  # (B, C), with gradient
    mask = batch.loss_mask.double()
    loss = -(adv[:, None] * logp * mask).sum() / mask.sum()  # the token-mean policy-gradient loss of GRPO
    # Oracle: the same loss from the per-turn engine log-probs of the sampled tokens only, listed one by one.
    terms = [(float(adv[b]), float(batch.rollout_logprobs[b, t])) for b in range(3)
             for t in range(batch.completion_ids.shape[1]) if batch.loss_mask[b, t]]
    oracle = -sum(a * lp for a, lp in terms) / len(terms)
    assert abs(float(loss.detach()) - oracle) < 1e-5
    loss.backward()  # tool tokens contribute no gradient: their log-probs are multiplied by 0
    tool = (batch.completion_mask - batch.loss_mask).bool()
    assert tool.any()


def test_transcript_layout_calls_budget_and_metrics():
    engine, tok, _ = _engine()
    batch = _rollout(engine, tok, ["12+3="], n=2, max_calls=2, total=30, seeds=(9,))
    for b in range(2):
        calls = batch.tool_calls[b]
        assert 1 <= len(calls) <= 2
        length = int(batch.completion_mask[b].sum())
        assert length <= 30
        text = tok.decode(batch.completion_ids[b, :length].tolist(), skip_special_tokens=True)
        assert text == batch.texts[b]
        for i, call in enumerate(calls, start=1):
            assert f"[#{i}:" in text and call["output"].startswith(f"#{i}:")  # the result is in the transcript
        # The tool's text is exactly where loss_mask is 0 within the transcript.
        masked = [t for t in range(length) if not batch.loss_mask[b, t]]
        masked_text = tok.decode(batch.completion_ids[b, masked].tolist())
        assert masked_text == "".join(f"[{c['output']}]" for c in calls)[: len(masked)]
    assert CountingSession.closed == 2  # each sample's session ended with its rollout
    metrics = tool_metrics(batch)
    calls = [c for row in batch.tool_calls for c in row]
    assert metrics["tools/calls_per_sample"] == len(calls) / 2
    assert metrics["tools/call_rate"] == 1.0
    assert metrics["tools/error_rate"] == sum(c["failed"] for c in calls) / len(calls)
    rows = with_tool_calls([Example(id="a", answer="15", prompt="q")] * 2, batch)
    assert rows[1].meta["tool_calls"] == batch.tool_calls[1]


def test_rollouts_are_reproducible_from_their_seeds():
    engine, tok, _ = _engine()
    one = _rollout(engine, tok, ["12+3=", "9-4="], seeds=(1, 2))
    two = _rollout(engine, tok, ["9-4=", "12+3="], seeds=(2, 1))  # other batch order, same seeds per prompt
    assert one.texts[:2] == two.texts[2:] and one.texts[2:] == two.texts[:2]


def test_python_blocks_are_found_and_written_back():
    fmt = ToolFormat()
    assert fmt.find_call("Let me compute.\n```python\nprint(12 * 34)\n```") == "print(12 * 34)\n"
    assert fmt.find_call("```python\nprint(1)\n") is None  # not closed yet
    assert fmt.find_call("```text\nhi\n```") is None
    assert fmt.result_text(Result("408"), "```") == "\n```output\n408\n```\n"


class FixedCode(EveryFewTokens):
    """Calls the real python tool with fixed code after a few sampled characters."""

    def find_call(self, turn_text: str):
        return "x = 6 * 7\nx" if len(turn_text) >= 3 else None


def test_the_python_tool_runs_in_the_sandbox_and_its_output_is_in_the_transcript():
    from r1lab.rollout.tools import PythonTool

    engine, tok, _ = _engine()
    tool = PythonTool(call_time_limit=2.0, sample_time_limit=10.0, max_output_chars=100, memory_mb=256)
    try:
        batch = tool_rollout(engine, tok, ["1+1="], 2, SamplingParams(temperature=1.0, max_new_tokens=40),
                             tool.open, max_calls=1, max_total_tokens=40, seeds=[4], fmt=FixedCode(),
                             executor=tool.executor)
    finally:
        tool.close()
    for b in range(2):
        assert [c["output"] for c in batch.tool_calls[b]] == ["42"]
        assert "[42]" in batch.texts[b]
