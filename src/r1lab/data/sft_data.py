"""SFT data: reading trace/chat rows, the held-out split, rendering with the GRPO prompt, masking and packing.

Rows follow the trace format (docs/distillation.md): ``prompt`` + ``completion`` (a teacher trace), or chat
``messages`` (loss on assistant turns only). A trace's prompt goes through ``r1lab.models.templates.build_prompt``
with the same PromptConfig as GRPO and the evaluator, so the student learns on exactly the prompt it is measured
on. Each trained turn ends with the EOS token so the model learns to stop.

Targets are already shifted: ``targets[t]`` is the token position t must predict, or IGNORE. They are built from
segment lengths (never from the pad id, which often equals EOS), and the last position of every example predicts
nothing, so packed examples never learn across a boundary.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from r1lab.data.jsonl import jsonl_rows
from r1lab.algos.distill import IGNORE

ROLES = ("system", "user", "assistant")


class SFTDataError(ValueError):
    """A malformed SFT row; the message names file, line and field."""


@dataclass
class SFTRow:
    where: str  # "file:line", for error messages
    id: str | None
    prompt: str | None = None
    completion: str | None = None
    messages: list[dict[str, str]] | None = None

    @property
    def question(self) -> str:
        """The problem text: the trace prompt, or the last user turn before the first assistant turn."""
        if self.prompt is not None:
            return self.prompt
        first = next(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
        return [m["content"] for m in self.messages[:first] if m["role"] == "user"][-1]

    @property
    def key(self) -> str:
        """Two rows are the same problem when their question text is the same (whitespace-normalised)."""
        return " ".join(self.question.split())


@dataclass
class TokenizedExample:
    input_ids: list[int]
    targets: list[int]  # shifted: targets[t] = the token predicted at t, or IGNORE
    prompt_text: str  # the rendered context of the last trained turn (for sample generations)
    reference: str  # the last trained turn's text
    key: str

    @property
    def num_targets(self) -> int:
        return sum(t != IGNORE for t in self.targets)


def _check_row(row: Any, where: str) -> SFTRow:
    if not isinstance(row, dict):
        raise SFTDataError(f"{where}: expected a JSON object with 'prompt' and 'completion', or 'messages'")
    row_id = row.get("id")
    if row_id is not None and not isinstance(row_id, (str, int)):
        raise SFTDataError(f"{where}: field 'id' must be a string, got {type(row_id).__name__}")
    row_id = None if row_id is None else str(row_id)
    if row.get("messages") is not None:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise SFTDataError(f"{where}: field 'messages' must be a non-empty list of {{role, content}}")
        for j, turn in enumerate(messages):
            if not isinstance(turn, dict) or turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
                raise SFTDataError(f"{where}: field 'messages[{j}]' needs 'role' ({'/'.join(ROLES)}) and a string "
                                   f"'content'")
        roles = [m["role"] for m in messages]
        if "assistant" not in roles:
            raise SFTDataError(f"{where}: field 'messages' has no assistant turn to train on")
        if "user" not in roles[: roles.index("assistant")]:
            raise SFTDataError(f"{where}: field 'messages' needs a user turn before the first assistant turn")
        return SFTRow(where, row_id, messages=[{"role": m["role"], "content": m["content"]} for m in messages])
    for name in ("prompt", "completion"):
        if name not in row or row[name] is None:
            raise SFTDataError(f"{where}: missing field '{name}' (a trace row needs 'prompt' and 'completion'; "
                               f"a chat row needs 'messages')")
        if not isinstance(row[name], str):
            raise SFTDataError(f"{where}: field '{name}' must be a string, got {type(row[name]).__name__}")
    return SFTRow(where, row_id, prompt=row["prompt"], completion=row["completion"])


def read_sft_rows(path: str | Path) -> list[SFTRow]:
    """All rows of a JSONL file, each checked; the first bad one raises SFTDataError naming file:line and field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SFT data file not found: {path}")
    rows = []
    for lineno, row in jsonl_rows(path, SFTDataError):
        rows.append(_check_row(row, f"{path}:{lineno}"))
    if not rows:
        raise SFTDataError(f"{path}: no rows")
    return rows


def drop_overlap(rows: list[SFTRow], held_out: list[SFTRow]) -> list[SFTRow]:
    """Rows sharing neither a question text nor a prompt id with ``held_out``."""
    keys = {r.key for r in held_out}
    ids = {r.id for r in held_out if r.id is not None}
    return [r for r in rows if r.key not in keys and (r.id is None or r.id not in ids)]


def split_held_out(rows: list[SFTRow], eval_size: int, seed: int) -> tuple[list[SFTRow], list[SFTRow]]:
    """Seeded split by distinct question: ``eval_size`` questions (all their samples) are held out."""
    if eval_size <= 0:
        return rows, []
    keys = sorted({r.key for r in rows})
    if eval_size >= len(keys):
        raise SFTDataError(f"{len(keys)} distinct prompts in the training data, cannot hold out {eval_size}; lower "
                           f"data.eval_size or give data.eval_path")
    random.Random(seed).shuffle(keys)
    held = set(keys[:eval_size])
    held_out = [r for r in rows if r.key in held]
    return drop_overlap(rows, held_out), held_out


def _encode(tokenizer, text: str) -> list[int]:
    # add_special_tokens=False: the prompt text already carries the template's specials, as in rollouts
    return tokenizer(text, add_special_tokens=False).input_ids if text else []


def render_row(row: SFTRow, tokenizer, template: str, system: str, instruction: str) -> TokenizedExample:
    """Token ids and shifted targets for one row: context tokens masked, each trained turn + EOS learned."""
    from r1lab.models.templates import build_prompt
    from r1lab.types import Example

    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError("the tokenizer has no EOS token; SFT appends it to every completion so the model learns "
                         "to stop")
    segments: list[tuple[list[int], bool]] = []
    if row.messages is None or [m["role"] for m in row.messages].count("assistant") == 1:
        if row.messages is None:
            example, completion = Example(id=row.id or row.where, answer="", prompt=row.prompt), row.completion
        else:
            last = next(i for i, m in enumerate(row.messages) if m["role"] == "assistant")
            example = Example(id=row.id or row.where, answer="", messages=row.messages[:last])
            completion = row.messages[last]["content"]
        prompt_text = build_prompt(example, tokenizer, template, system, instruction)
        segments = [(_encode(tokenizer, prompt_text), False), (_encode(tokenizer, completion) + [eos_id], True)]
    else:
        prompt_text, completion = _render_multi_turn(row, tokenizer, template, system, instruction, segments)
    input_ids, labels = [], []
    for ids, trained in segments:
        input_ids += ids
        labels += ids if trained else [IGNORE] * len(ids)
    targets = labels[1:] + [IGNORE]  # position t predicts token t + 1; the last predicts nothing
    return TokenizedExample(input_ids, targets, prompt_text, completion, row.key)


def _render_multi_turn(row: SFTRow, tokenizer, template: str, system: str, instruction: str,
                       segments: list[tuple[list[int], bool]]) -> tuple[str, str]:
    """Several assistant turns: render the conversation turn by turn with the chat template, so each trained turn
    sits after exactly the context the model would see when generating it (the template must be prefix-stable)."""
    if template != "chat":
        raise SFTDataError(f"{row.where}: field 'messages' has several assistant turns; only prompt.template=chat "
                           f"can render a multi-turn conversation")
    messages = [dict(m) for m in row.messages]
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}] + messages
    assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    for i in assistant:  # the instruction goes on the question each answer replies to, as build_prompt does
        if instruction and messages[i - 1]["role"] == "user":
            messages[i - 1]["content"] += f" {instruction}"
    rendered, context = "", ""
    eos_id, eos_text = tokenizer.eos_token_id, tokenizer.eos_token
    for i in assistant:
        context = tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True, tokenize=False)
        if not context.startswith(rendered):
            raise SFTDataError(f"{row.where}: the chat template does not render turn {i} as a continuation of the "
                               f"earlier turns; split the conversation into single-turn rows")
        segments.append((_encode(tokenizer, context[len(rendered):]), False))
        segments.append((_encode(tokenizer, messages[i]["content"]) + [eos_id], True))
        rendered = context + messages[i]["content"] + eos_text
    return context, messages[assistant[-1]]["content"]


# --- batching --------------------------------------------------------------------------------------------------

@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # (R, L) long
    position_ids: torch.Tensor  # (R, L) long, restarting at 0 for every packed example and for the padding tail
    targets: torch.Tensor  # (R, L) long, IGNORE where nothing is learned

    @property
    def num_targets(self) -> int:
        return int((self.targets != IGNORE).sum())


def pack_groups(lengths: list[int], max_length: int) -> list[list[int]]:
    """First-fit packing: example indices grouped into rows of at most ``max_length`` tokens (order kept)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i, n in enumerate(lengths):
        if n > max_length:
            raise ValueError(f"example {i} has {n} tokens, more than max_length={max_length}")
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(max_length - n)
    return rows


def collate(examples: list[TokenizedExample], groups: list[list[int]], pad_id: int) -> TokenBatch:
    """One row per group, examples concatenated with restarting positions, right-padded to the longest row.

    The padding tail is its own segment (positions from 0 again), so packed-attention masking keeps it apart too.
    """
    lengths = [sum(len(examples[i].input_ids) for i in g) for g in groups]
    L = max(lengths)
    ids, pos, tgt = [], [], []
    for g, n in zip(groups, lengths):
        row_ids, row_pos, row_tgt = [], [], []
        for i in g:
            ex = examples[i]
            row_ids += ex.input_ids
            row_pos += list(range(len(ex.input_ids)))
            row_tgt += ex.targets
        ids.append(row_ids + [pad_id] * (L - n))
        pos.append(row_pos + list(range(L - n)))
        tgt.append(row_tgt + [IGNORE] * (L - n))
    return TokenBatch(torch.tensor(ids), torch.tensor(pos), torch.tensor(tgt))


def micro_batches(examples: list[TokenizedExample], pack: bool, max_length: int, rows_per_batch: int,
                  pad_id: int) -> list[TokenBatch]:
    """Split one step's examples into forward passes: packed rows of <= max_length tokens, or one example per row;
    ``rows_per_batch`` rows per pass."""
    if pack:
        groups = pack_groups([len(e.input_ids) for e in examples], max_length)
    else:
        groups = [[i] for i in range(len(examples))]
    return [collate(examples, groups[i : i + rows_per_batch], pad_id) for i in range(0, len(groups), rows_per_batch)]
