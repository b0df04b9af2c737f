"""Checkpoints: written whole or not at all, the older ones pruned, and a failed write (a full disk) reported with
what to do while the last complete checkpoint stays loadable."""

import pytest
import torch

from r1lab.models.tiny import tiny_model
from r1lab.train import checkpoint as ckpt


def _parts():
    model = tiny_model(seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    return model, optimizer, scheduler


def test_keeps_the_newest_checkpoints_and_restores_the_weights(tmp_path):
    model, optimizer, scheduler = _parts()
    for step in (1, 2, 3):
        with torch.no_grad():
            model.lm_head.weight.fill_(float(step))  # tied to the embedding: saved once, restored to both
        ckpt.save_checkpoint(tmp_path, step, model, optimizer, scheduler, {"note": step}, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_2", "step_3"]
    fresh, fresh_opt, fresh_sched = _parts()
    saved = ckpt.load_checkpoint(tmp_path / "step_2", fresh, fresh_opt, fresh_sched)
    assert saved["step"] == 2 and saved["note"] == 2
    assert torch.all(fresh.model.embed_tokens.weight == 2.0)


def test_a_failed_write_names_the_disk_and_the_way_out_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    model, optimizer, scheduler = _parts()
    ckpt.save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {})

    def disk_full(*args, **kwargs):
        # what torch.save raised when the demo's disk filled up mid-write
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 240722880 vs 240722772")

    monkeypatch.setattr(ckpt.torch, "save", disk_full)
    with pytest.raises(OSError, match=r"could not write checkpoint step_2 .* MB free on that disk.*step_1\) is "
                                      r"intact.*--resume"):
        ckpt.save_checkpoint(tmp_path, 2, model, optimizer, scheduler, {})
    assert [p.name for p in tmp_path.iterdir()] == ["step_1"]  # no half-written staging folder left behind
    monkeypatch.undo()
    assert ckpt.load_checkpoint(tmp_path / "step_1", *_parts())["step"] == 1
