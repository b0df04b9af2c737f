"""Reward functions (score one completion) and their weighted combination."""

from r1lab.rewards.combine import score_batch, score_completion
from r1lab.rewards.extract import EXTRACTORS, extract_answer
from r1lab.rewards.functions import REWARDS, RewardContext
from r1lab.rewards import mathcheck  # noqa: F401 - registers the "math" reward (math-verify imported lazily)
from r1lab.rewards import code  # noqa: F401, E402 - registers "code" (the sandbox is imported lazily)
# Register language_consistency, cosine_length, soft_overlong, repetition, llm_judge and reward_model; their heavy
# dependencies (lingua, transformers, urllib) are imported inside the functions.
from r1lab.rewards import judge, reward_model, shaping  # noqa: F401, E402

__all__ = ["EXTRACTORS", "REWARDS", "RewardContext", "extract_answer", "score_batch", "score_completion"]
