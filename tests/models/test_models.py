"""Model loading sources and prompt templates."""

import pytest

from r1lab.models.loading import load_model, resolve_model_folder
from r1lab.models.templates import R1_ZERO_TEMPLATE, build_prompt
from r1lab.models.tiny import tiny_tokenizer
from r1lab.types import Example


def test_hf_folder_loads_with_left_padding(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir))
    assert loaded.tokenizer.padding_side == "left"
    assert loaded.model.config.vocab_size == len(loaded.tokenizer)


def test_unknown_model_names_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        resolve_model_folder("someone/not-cached-model")
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        resolve_model_folder(str(tmp_path / "x.gguf"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model_folder(str(tmp_path))


def test_a_wrong_model_name_fails_before_the_run_folder_is_touched(tmp_path):
    import time

    from r1lab.config import GRPOConfig
    from r1lab.train.run_setup import start_run

    cfg = GRPOConfig()
    cfg.model.name, cfg.log.output_dir = str(tmp_path / "no-such-model"), str(tmp_path / "run")
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="never downloads"):
        start_run(cfg, resume=False)
    assert time.monotonic() - start < 5 and not (tmp_path / "run").exists()


def test_r1_zero_template_is_the_reports():
    ex = Example(id="1", prompt="What is 2 + 2?", answer="4")
    text = build_prompt(ex, None, "r1_zero")
    assert text.startswith("A conversation between User and Assistant.")
    assert text.endswith("User: What is 2 + 2?. Assistant:")
    assert "<think> reasoning process here </think> <answer> answer here </answer>" in R1_ZERO_TEMPLATE


def test_chat_template_with_system_and_instruction():
    tok = tiny_tokenizer()
    ex = Example(id="1", prompt="2 + 2?", answer="4")
    text = build_prompt(ex, tok, "chat", system="Be brief.", instruction="Answer with a number.")
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2 + 2? Answer with a number.<|im_end|>\n"
                    "<|im_start|>assistant\n")
    # Chat-format examples keep their turns; the instruction goes on the last user turn.
    chat = Example(id="2", messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                                     {"role": "user", "content": "3 + 3?"}], answer="6")
    text = build_prompt(chat, tok, "chat", instruction="Number only.")
    assert "3 + 3? Number only.<|im_end|>" in text and "hi<|im_end|>" in text
    assert build_prompt(ex, tok, "plain", instruction="Go.") == "2 + 2? Go."
