"""The assistant prefill (TinyZero's "<think>") and the R1-Zero defaults of the GRPO prompt."""

from r1lab.config import GRPOConfig, PromptConfig
from r1lab.models.templates import R1_ZERO_TEMPLATE, assistant_text, build_prompt
from r1lab.models.tiny import tiny_tokenizer
from r1lab.train.grpo_recipe import R1_ZERO_SYSTEM
from r1lab.types import Example

EX = Example(id="a", answer="4", prompt="2 + 2?")


def test_prefill_ends_the_prompt_of_every_template():
    tok = tiny_tokenizer()
    chat = build_prompt(EX, tok, "chat", system="S")
    assert build_prompt(EX, tok, "chat", system="S", prefill="<think>") == chat + "<think>"
    r1 = build_prompt(EX, None, "r1_zero")
    assert r1.endswith("User: 2 + 2?. Assistant:")
    assert build_prompt(EX, None, "r1_zero", prefill="<think>") == r1 + " <think>"
    assert build_prompt(EX, None, "plain", prefill="<think>") == "2 + 2?<think>"
    assert build_prompt(EX, tok, "chat", system="S", prefill="") == chat


def test_assistant_text_puts_the_prefill_back():
    assert assistant_text("<think>", "2 + 2 = 4</think> <answer>4</answer>") == \
        "<think>2 + 2 = 4</think> <answer>4</answer>"
    assert assistant_text("", "4") == "4"


def test_r1_zero_system_is_the_reports_instruction():
    assert R1_ZERO_TEMPLATE.startswith(R1_ZERO_SYSTEM)


def test_grpo_defaults_are_r1_zero_and_the_shared_prompt_is_unchanged():
    cfg = GRPOConfig()
    assert cfg.prompt.system == R1_ZERO_SYSTEM and cfg.prompt.prefill == "<think>"
    assert cfg.rewards.extraction == ["answer_tag"]
    assert set(cfg.rewards.weights) == {"accuracy", "format_partial"}
    assert PromptConfig().system == "You are a helpful assistant." and not hasattr(PromptConfig(), "prefill")
