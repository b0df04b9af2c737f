"""The ``tools`` section of GRPO: tool-integrated multi-turn rollouts (``r1lab.rollout.tools``), where the model runs
Python in the sandbox mid-answer. Beside its job, in the style of ``r1lab.config``; imports nothing heavy.

``r1lab.config`` imports this module as a module object (``import ... as tools_config``), so either may be
imported first."""

from __future__ import annotations

from dataclasses import dataclass

from r1lab.config import option, require

TOOLS = ("python",)


@dataclass
class ToolsConfig:
    enabled: bool = option(False, "multi-turn rollouts with a tool: generation pauses at the end of each ```python "
                                  "block, the block runs in the sandbox, its output is appended as an ```output "
                                  "block the model did not write (masked out of the loss and the KL), and "
                                  "generation continues")
    name: str = option("python", "the tool: python = one stateful sandboxed interpreter per sample (variables "
                                 "persist across its calls, gone at its end)", TOOLS)
    max_calls: int = option(4, "tool calls per sample; later ```python blocks are left unexecuted")
    max_total_tokens: int = option(0, "tokens of the whole transcript after the prompt (the model's and the tool "
                                      "outputs'); 0 = rollout.max_new_tokens")
    max_output_chars: int = option(400, "characters of one tool output kept (the head), the rest replaced by a "
                                        "[output truncated] line")
    call_time_limit: float = option(5.0, "seconds of wall time per tool call; an overrun is stopped and reported "
                                         "to the model as a TimeoutError (the interpreter restarts)")
    sample_time_limit: float = option(20.0, "seconds of tool time per sample (also its interpreter's CPU limit); "
                                            "calls past it are refused with a message")
    memory_mb: int = option(512, "address space of the tool's interpreter (RLIMIT_AS)")

    def check(self) -> None:
        require(self.max_calls >= 1, "max_calls", "must be >= 1")
        require(self.max_total_tokens >= 0, "max_total_tokens", "must be >= 0 (0 = rollout.max_new_tokens)")
        require(self.max_output_chars >= 16, "max_output_chars", "must be >= 16")
        require(self.call_time_limit > 0, "call_time_limit", "must be > 0")
        require(self.sample_time_limit >= self.call_time_limit, "sample_time_limit", "must be >= call_time_limit")
        require(self.memory_mb >= 64, "memory_mb", "must be >= 64")
