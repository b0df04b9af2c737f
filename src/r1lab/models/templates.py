"""Turning an Example into the prompt text a model sees.

* ``chat``: the tokenizer's chat template (instruct models), with an optional system prompt.
* ``r1_zero``: the plain template of the DeepSeek-R1 report (Table 1), for base models.
* ``plain``: the question alone (plus the instruction).

A ``prefill`` (TinyZero's "<think>") is text the assistant turn starts with: it ends the prompt, so the model
continues from it, and ``assistant_text`` puts it back in front of the completion for the rewards and the
evaluator, which then score the whole assistant turn.
"""

from __future__ import annotations

from r1lab.types import Example

# DeepSeek-R1 report, Table 1, verbatim apart from the placeholder.
R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
    "User: {prompt}. Assistant:"
)

TEMPLATES = ("chat", "r1_zero", "plain")


def build_prompt(example: Example, tokenizer, template: str, system: str = "", instruction: str = "",
                 prefill: str = "") -> str:
    """Prompt text for ``example``. ``instruction`` is appended to the user's question (e.g. an answer format);
    ``prefill`` is the start of the assistant's turn (r1_zero: after "Assistant:", separated by a space)."""
    return _prompt_body(example, tokenizer, template, system, instruction) + prefill_text(template, prefill)


def prefill_text(template: str, prefill: str) -> str:
    """What ``build_prompt`` appends for ``prefill``: r1_zero's "Assistant:" is followed by a space."""
    if not prefill:
        return ""
    return f" {prefill}" if template == "r1_zero" else prefill


def assistant_text(prefill: str, completion: str) -> str:
    """The whole assistant turn: the prefilled start (if any) and the generated completion."""
    return prefill + completion


def _prompt_body(example: Example, tokenizer, template: str, system: str, instruction: str) -> str:
    question = example.question + (f" {instruction}" if instruction else "")
    if template == "r1_zero":
        return R1_ZERO_TEMPLATE.format(prompt=question)
    if template == "plain":
        return question
    if template != "chat":
        raise ValueError(f"unknown prompt template {template!r}; allowed: {', '.join(TEMPLATES)}")
    if tokenizer.chat_template is None:
        raise ValueError("prompt.template=chat but this tokenizer has no chat template; use r1_zero or plain")
    if example.messages is not None:
        messages = [dict(m) for m in example.messages]
        if instruction:
            last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
            messages[last_user]["content"] += f" {instruction}"
    else:
        messages = [{"role": "user", "content": question}]
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}] + messages
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
