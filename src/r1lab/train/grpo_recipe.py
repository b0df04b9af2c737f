"""The sections of ``r1lab grpo`` / ``r1lab zero`` whose defaults are the R1-Zero demo recipe rather than the shared
ones of ``r1lab.config`` (which SFT, eval, generate and the PRM job also use): the R1-Zero prompt with an optional
assistant prefill, and the R1-Zero rule rewards (accuracy on the answer inside ``<answer>`` tags, plus format).

``r1lab.config`` imports this module after it has defined the shared sections."""

from __future__ import annotations

from dataclasses import dataclass

from r1lab.config import PromptConfig, RewardConfig, option

# The R1-Zero template's instruction (DeepSeek-R1 report, Table 1), as the system prompt of a chat model
R1_ZERO_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>."
)


@dataclass
class GRPOPromptConfig(PromptConfig):
    template: str = option("chat", "chat (tokenizer template), r1_zero (DeepSeek-R1 Table 1) or plain",
                           ("chat", "r1_zero", "plain"))
    system: str = option(R1_ZERO_SYSTEM, "system prompt (chat template only); the default is the R1-Zero "
                                         "template's instruction (DeepSeek-R1 Table 1)")
    instruction: str = option("", "text appended to every question, e.g. an answer-format instruction")
    prefill: str = option("<think>", "text the assistant's turn starts with (TinyZero's <think>): the end of the "
                                     "prompt, so the model continues from it; the rewards, the evaluation and the "
                                     "samples read it as the start of the completion; empty = none")


@dataclass
class GRPORewardConfig(RewardConfig):
    weights: dict = option({"accuracy": 1.0, "format_partial": 0.5},
                           "reward function -> weight (the mapping is replaced whole when set); built in: accuracy, "
                           "format (strict R1-Zero <think>/<answer>), format_partial (partial credit toward it), "
                           "tag_count and those of r1lab.rewards; an unknown name lists them all")
    extraction: list = option(["answer_tag"], "answer extraction methods tried in order: answer_tag, boxed, "
                                              "last_number; R1-Zero's accuracy reward reads the answer in its "
                                              "fixed place, the <answer> block, only")
