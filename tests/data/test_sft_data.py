"""SFT data: row checks with file:line:field errors, the held-out split, rendering/masking, packing, collation."""

from __future__ import annotations

import json

import pytest

from r1lab.algos.distill import IGNORE
from r1lab.data.sft_data import (SFTDataError, SFTRow, collate, drop_overlap, micro_batches, pack_groups,
                                 read_sft_rows, render_row, split_held_out)
from r1lab.models.templates import build_prompt
from r1lab.models.tiny import tiny_tokenizer
from r1lab.types import Example


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"id": "p1", "prompt": "1+1", "completion": "2"}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"id": "p2", "prompt": "2+2"}, ":3: missing field 'completion'"),  # trace row without its completion
        ({"completion": "4"}, ":3: missing field 'prompt'"),
        ({"prompt": 5, "completion": "4"}, ":3: field 'prompt' must be a string"),
        ({"messages": [{"role": "user", "content": "hi"}]}, ":3: field 'messages' has no assistant turn"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, ":3: field 'messages' needs a user turn"),
        ({"messages": [{"role": "robot", "content": "x"}]}, ":3: field 'messages[0]' needs 'role'"),
        ("{not json", ":3: not valid JSON"),
        ([1, 2], ":3: expected a JSON object"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "traces.jsonl", [GOOD, "", bad])  # line 2 is blank: line numbers still count it
    with pytest.raises(SFTDataError) as err:
        read_sft_rows(path)
    assert str(path) + message in str(err.value)


def test_trace_row_plain_template_masks_prompt_and_appends_eos(tok):
    row = SFTRow("f:1", "p1", prompt="1+1", completion="2")
    ex = render_row(row, tok, "plain", "", "")
    ids = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731  (character-level: one id per char)
    eos = tok.eos_token_id
    assert ex.input_ids == ids("1+12") + [eos]
    # Shifted targets: the last prompt token predicts '2', '2' predicts EOS; prompt positions and the last learn nothing.
    assert ex.targets == [IGNORE, IGNORE] + ids("2") + [eos, IGNORE]
    assert ex.num_targets == 2 and ex.prompt_text == "1+1" and ex.reference == "2"


def test_trace_row_chat_prompt_is_the_grpo_prompt(tok):
    system, instruction = "Be brief.", "Answer with just the number."
    row = SFTRow("f:1", "p1", prompt="What is 3+4?", completion="<answer>7</answer>")
    ex = render_row(row, tok, "chat", system, instruction)
    grpo_prompt = build_prompt(Example(id="p1", answer="7", prompt="What is 3+4?"), tok, "chat", system, instruction)
    assert ex.prompt_text == grpo_prompt
    prompt_ids = tok(grpo_prompt, add_special_tokens=False).input_ids
    assert ex.input_ids[: len(prompt_ids)] == prompt_ids
    # Exactly the completion and EOS are learned; the system prompt and question are not.
    learned = [t for t in ex.targets if t != IGNORE]
    assert tok.decode(learned) == "<answer>7</answer><|im_end|>"


def test_chat_rows_learn_assistant_turns_only(tok):
    messages = [{"role": "user", "content": "1+1"}, {"role": "assistant", "content": "2"},
                {"role": "user", "content": "times 3"}, {"role": "assistant", "content": "6"}]
    ex = render_row(SFTRow("f:1", None, messages=messages), tok, "chat", "Sys", "")
    learned = [t for t in ex.targets if t != IGNORE]
    eos = tok.eos_token
    assert tok.decode(learned) == f"2{eos}6{eos}"
    full = tok.apply_chat_template([{"role": "system", "content": "Sys"}] + messages, tokenize=False)
    assert tok.decode(ex.input_ids) == full.rstrip("\n")  # the whole conversation, as the template renders it
    # A single-turn chat row renders like the equivalent trace row.
    single = render_row(SFTRow("f:2", None, messages=messages[:2]), tok, "chat", "Sys", "")
    trace = render_row(SFTRow("f:3", None, prompt="1+1", completion="2"), tok, "chat", "Sys", "")
    assert (single.input_ids, single.targets) == (trace.input_ids, trace.targets)
    with pytest.raises(SFTDataError, match="several assistant turns"):
        render_row(SFTRow("f:4", None, messages=messages), tok, "plain", "", "")


def test_held_out_split_keeps_every_sample_of_a_prompt_on_one_side():
    rows = [SFTRow(f"f:{i}", f"id{i % 5}", prompt=f"q {i % 5}", completion=f"c{i}") for i in range(20)]
    train, held = split_held_out(rows, eval_size=2, seed=7)
    assert len({r.key for r in held}) == 2 and len(held) == 8  # 2 prompts x 4 samples each
    assert not {r.key for r in held} & {r.key for r in train} and len(train) == 12
    assert split_held_out(rows, 2, 7)[1] == held  # seeded
    assert split_held_out(rows, 0, 7) == (rows, [])
    with pytest.raises(SFTDataError, match="cannot hold out 5"):
        split_held_out(rows, eval_size=5, seed=0)


def test_drop_overlap_by_prompt_text_or_id():
    held = [SFTRow("e:1", "x", prompt="What is  2+2?", completion="4")]
    rows = [SFTRow("t:1", "a", prompt="What is 2+2?", completion="4"),  # same text up to whitespace
            SFTRow("t:2", "x", prompt="other text", completion="5"),  # same prompt id
            SFTRow("t:3", "b", prompt="What is 3+3?", completion="6")]
    assert [r.where for r in drop_overlap(rows, held)] == ["t:3"]


@pytest.mark.parametrize(
    "lengths, max_length, expected",
    [
        ([5, 3, 4, 2], 8, [[0, 1], [2, 3]]),  # fills in order
        ([6, 6, 2], 8, [[0, 2], [1]]),  # first fit: the short one goes back into the first row
        ([8, 1], 8, [[0], [1]]),  # an exactly full row takes nothing more
        ([], 8, []),
    ],
)
def test_pack_groups_first_fit(lengths, max_length, expected):
    assert pack_groups(lengths, max_length) == expected


def test_pack_groups_rejects_an_example_longer_than_a_row():
    with pytest.raises(ValueError, match="more than max_length=4"):
        pack_groups([3, 5], 4)


def test_collate_restarts_positions_and_ignores_padding(tok):
    rows = [SFTRow("f:1", "a", prompt="12", completion="3"), SFTRow("f:2", "b", prompt="4", completion="56"),
            SFTRow("f:3", "c", prompt="7", completion="8")]
    exs = [render_row(r, tok, "plain", "", "") for r in rows]  # lengths 4, 4, 3
    batch = collate(exs, [[0, 1], [2]], pad_id=0)
    assert batch.input_ids.shape == (2, 8)
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 0, 1, 2, 3, 4]]  # pad tail restarts
    assert batch.targets[0].tolist() == exs[0].targets + exs[1].targets
    assert batch.targets[1, 3:].tolist() == [IGNORE] * 5
    assert batch.num_targets == sum(e.num_targets for e in exs) == 7  # (1 + EOS) + (2 + EOS) + (1 + EOS)
    unpacked = micro_batches(exs, pack=False, max_length=8, rows_per_batch=2, pad_id=0)
    packed = micro_batches(exs, pack=True, max_length=8, rows_per_batch=2, pad_id=0)
    assert [b.input_ids.shape[0] for b in unpacked] == [2, 1] and [b.input_ids.shape[0] for b in packed] == [2]
    assert sum(b.num_targets for b in unpacked) == sum(b.num_targets for b in packed) == 7
