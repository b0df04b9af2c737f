"""Reward functions (score one completion) and their weighted combination."""

from r1lab.rewards.combine import score_batch, score_completion
from r1lab.rewards.extract import EXTRACTORS, extract_answer
from r1lab.rewards.functions import REWARDS, RewardContext

__all__ = ["EXTRACTORS", "REWARDS", "RewardContext", "extract_answer", "score_batch", "score_completion"]
