"""Prompt variants for evaluation: the base prompt, few-shot prompts and system-prompt variants.

Few-shot (Brown et al. 2020): ``few_shot`` solved problems from the *training* split (never held-out ones), the
same for every question and fixed by the seed, shown before the question: as earlier chat turns for the chat
template, as ``Question/Answer`` pairs in the text for the plain and R1-Zero templates.
"""

from __future__ import annotations

import dataclasses
import random

from r1lab.config import PromptConfig
from r1lab.evals.config import BUILTIN_VARIANTS, EvalJobConfig, EvalPromptConfig
from r1lab.models.templates import build_prompt
from r1lab.types import Example


def base_prompt(cfg: EvalJobConfig) -> EvalPromptConfig:
    """The configured prompt; for code tasks the default arithmetic instruction ("Answer with just the number.") is
    dropped, since their prompts carry their own instruction."""
    if (cfg.task.name == "humaneval" or cfg.task.name.startswith("code:")) and \
            cfg.prompt.instruction == PromptConfig().instruction:
        return dataclasses.replace(cfg.prompt, instruction="")
    return cfg.prompt


def prompt_variants(cfg: EvalJobConfig) -> dict[str, EvalPromptConfig]:
    """name -> prompt config: ``default`` (the base prompt) first, then the built-in and the configured variants."""
    base = base_prompt(cfg)
    out = {"default": base}
    extra = {**(BUILTIN_VARIANTS if cfg.sensitivity.builtin else {}), **cfg.sensitivity.variants}
    for name, overrides in extra.items():
        variant = dataclasses.replace(base, **overrides)
        variant.check()
        out[name] = variant
    return out


def pick_shots(train: list[Example], k: int, seed: int) -> list[Example]:
    """``k`` training problems chosen by ``seed`` (the same ones for every question)."""
    if k > len(train):
        raise ValueError(f"few_shot={k} but the training split holds only {len(train)} problems")
    return random.Random(seed).sample(train, k) if k else []


def few_shot_example(example: Example, shots: list[Example], prompt: EvalPromptConfig) -> Example:
    """``example`` with the shots in front of its question (chat turns or text, by template)."""
    if not shots:
        return example
    if prompt.template == "chat":
        turns: list[dict[str, str]] = []
        suffix = f" {prompt.instruction}" if prompt.instruction else ""
        for shot in shots:
            turns += [{"role": "user", "content": shot.question + suffix},
                      {"role": "assistant", "content": prompt.shot_answer.format(answer=shot.answer)}]
        own = ([dict(m) for m in example.messages] if example.messages
               else [{"role": "user", "content": example.question}])
        system = [m for m in own[:1] if m["role"] == "system"]  # a system turn stays first
        # build_prompt appends the instruction to the last user turn, i.e. the real question
        return dataclasses.replace(example, prompt=None, messages=system + turns + own[len(system):])
    text = "".join(f"Question: {s.question}\nAnswer: {prompt.shot_answer.format(answer=s.answer)}\n\n" for s in shots)
    return dataclasses.replace(example, prompt=f"{text}Question: {example.question}", messages=None)


def render_prompts(examples: list[Example], train: list[Example], tokenizer, prompt: EvalPromptConfig,
                   seed: int) -> list[str]:
    """The prompt text of each held-out example under one variant."""
    shots = pick_shots(train, prompt.few_shot, seed)
    return [build_prompt(few_shot_example(e, shots, prompt), tokenizer, prompt.template, prompt.system,
                         prompt.instruction) for e in examples]
