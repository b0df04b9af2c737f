"""Reward-model reward: an HF sequence-classification model scores (question, completion).

The R1 report's final RL stage uses reward models for general prompts (helpfulness, harmlessness) where no rule
can check the answer. The model is loaded once per process from a local folder or the local HF cache (offline,
``r1lab.models.loading.resolve_model_folder``). The pair is rendered with the tokenizer's chat template (a user
turn and an assistant turn) when it has one, as chat reward models are trained; otherwise it is encoded as a text
pair (question, completion), the convention of cross-encoder reward models.
"""

from __future__ import annotations

import inspect
import math
from functools import lru_cache

from r1lab.config import DTYPES
from r1lab.rewards.functions import REWARDS, RewardContext, batched
from r1lab.rewards.functions import declare_params, reward_params
from r1lab.types import Example

RM_DEFAULTS = {
    "model": None,  # HF folder or cached hub id of an AutoModelForSequenceClassification
    "normalize": "none",  # "none": the raw logit; "sigmoid": squashed into (0, 1)
    "label": 0,  # which logit when the head has several outputs
    "batch_size": 8,  # sequences per forward pass
    "device": "cpu",
    "dtype": "float32",  # bfloat16 is faster on CPUs with bf16 matmul units (AMX, AVX512-BF16), at bf16 precision
}
NORMALIZERS = ("none", "sigmoid")


@lru_cache(maxsize=2)
def load_reward_model(name: str, device: str = "cpu", dtype: str = "float32"):
    """(model, tokenizer) in eval mode, loaded once per process; the pad id is set so batches can be padded."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from r1lab.models.loading import resolve_model_folder

    folder = resolve_model_folder(name)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=getattr(torch, dtype)).to(device).eval()
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"reward model {name!r}: its tokenizer has neither a pad nor an EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        # HF's sequence-classification heads pool the last non-pad token and refuse batches without a pad id.
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def encode_pair(tokenizer, question: str, completion: str) -> dict:
    """Token ids (and masks) of one (question, completion) pair, unpadded."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": completion}]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        return dict(tokenizer(text, add_special_tokens=False))  # the template already holds any BOS
    return dict(tokenizer(question, completion))


def score_encodings(model, tokenizer, encodings: list[dict], batch_size: int, padding_side: str = "right"):
    """Logits (N, num_labels) of the model for each encoding, ``batch_size`` sequences per forward pass.

    Sequences are sorted by length so each batch pads little, then returned in the input order. With left padding
    the position ids are built from the attention mask, so the real tokens sit at the same positions as unpadded.
    """
    import torch

    from r1lab.algos.logprobs import position_ids_from_mask

    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i]["input_ids"]))
    takes_positions = "position_ids" in inspect.signature(model.forward).parameters
    device = next(model.parameters()).device
    previous_side, tokenizer.padding_side = tokenizer.padding_side, padding_side
    try:
        rows: dict[int, torch.Tensor] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = tokenizer.pad([encodings[i] for i in chunk], padding=True, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            if padding_side == "left" and takes_positions:
                batch["position_ids"] = position_ids_from_mask(batch["attention_mask"])  # (b, T)
            with torch.no_grad():
                logits = model(**batch).logits.float()  # (b, num_labels)
            rows.update(zip(chunk, logits.cpu()))
    finally:
        tokenizer.padding_side = previous_side
    return torch.stack([rows[i] for i in range(len(encodings))]) if rows else torch.empty(0, model.config.num_labels)


@REWARDS.register("reward_model")
@declare_params(**RM_DEFAULTS)
@batched
def reward_model(completions: list[str], examples: list[Example], ctx: RewardContext) -> list[float | BaseException]:
    """The reward model's logit for (question, completion), raw or through a sigmoid (``normalize``).

    A pair longer than the model's maximum positions fails that sample only (truncating would cut the end of the
    completion, where the answer is).
    """
    p = reward_params(ctx, "reward_model", RM_DEFAULTS)
    if not p["model"]:
        raise ValueError("reward 'reward_model': set rewards.params.reward_model.model (an HF folder or cached hub id)")
    if p["normalize"] not in NORMALIZERS:
        raise ValueError(
            f"reward 'reward_model': normalize must be one of {', '.join(NORMALIZERS)}, got {p['normalize']!r}"
        )
    if p["dtype"] not in DTYPES:
        raise ValueError(f"reward 'reward_model': dtype must be one of {', '.join(DTYPES)}, got {p['dtype']!r}")
    model, tokenizer = load_reward_model(str(p["model"]), str(p["device"]), str(p["dtype"]))
    label = int(p["label"])
    if not 0 <= label < model.config.num_labels:
        raise ValueError(
            f"reward 'reward_model': label {label} out of range for a head with {model.config.num_labels} outputs"
        )
    limit = getattr(model.config, "max_position_embeddings", None)

    scores: list[float | BaseException] = [ValueError("not scored")] * len(completions)
    encodings, kept = [], []
    for i, (completion, example) in enumerate(zip(completions, examples)):
        enc = encode_pair(tokenizer, example.question, completion)
        if limit is not None and len(enc["input_ids"]) > limit:
            scores[i] = ValueError(f"{len(enc['input_ids'])} tokens exceed the reward model's {limit} positions")
            continue
        encodings.append(enc)
        kept.append(i)
    logits = score_encodings(model, tokenizer, encodings, int(p["batch_size"]))
    for i, row in zip(kept, logits):
        value = float(row[label])
        scores[i] = sigmoid(value) if p["normalize"] == "sigmoid" else value
    return scores


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x) without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
