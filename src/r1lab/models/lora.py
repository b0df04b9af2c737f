"""LoRA adapters through PEFT (Hu et al. 2021, arXiv 2106.09685): the loaded model wrapped so that only low-rank
adapters (and ``modules_to_save``) train, and the pieces the loops need around it.

* ``wrap_lora``: ``peft.get_peft_model`` (a fresh adapter) or ``PeftModel.from_pretrained`` (``lora.init_from``).
* ``adapter_disabled``: the reference policy of a LoRA run is the same model with its adapter switched off, so no
  second copy of the weights is kept.
* ``MergedCopy``: the rollout engine's plain copy of the model takes ``W + scale * B A`` for every adapted layer
  after each step, computed from the trained model without touching it (PEFT's merge/unmerge in place would round
  the frozen base weights and change them over steps).
* ``trainable_state_dict``: what a checkpoint holds (the adapter and ``modules_to_save``).
* ``save_final``: ``final/`` as a merged HF model (no PEFT needed to load it) plus ``final/adapter``.

PEFT is imported only here, and only when ``lora.rank`` > 0.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

ADAPTER = "default"  # PEFT's name for the one adapter r1lab trains


def is_lora(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a PEFT model (``wrap_lora``'s result)."""
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def default_targets(model: torch.nn.Module) -> list[str]:
    """Every linear layer inside the decoder's blocks (attention and MLP), by its last name component: the LM head,
    a score head and the embeddings are left out."""
    names = {name.rsplit(".", 1)[-1] for name, m in model.get_decoder().named_modules()
             if isinstance(m, torch.nn.Linear)}
    if not names:
        raise ValueError(f"{type(model).__name__}: no linear layers in the decoder; set lora.target_modules")
    return sorted(names)


def wrap_lora(model: torch.nn.Module, lora, always_save: list[str] | None = None) -> torch.nn.Module:
    """``model`` with LoRA adapters per the ``lora`` config section (``r1lab.train.lora_config.LoRAConfig``); the
    base weights are frozen, the adapters (B = 0 at the start, so the wrapped model computes what ``model`` did)
    and ``lora.modules_to_save`` (plus ``always_save``: a reward model's fresh score head) train."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if lora.init_from:
        folder = Path(lora.init_from)
        if not (folder / "adapter_config.json").is_file():
            raise FileNotFoundError(f"lora.init_from={lora.init_from!r} has no adapter_config.json; point it at a "
                                    f"PEFT adapter folder (e.g. a LoRA run's final/adapter)")
        return PeftModel.from_pretrained(model, str(folder), is_trainable=True)
    config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules) or default_targets(model),
                        modules_to_save=list(dict.fromkeys([*lora.modules_to_save, *(always_save or [])])) or None,
                        bias="none")
    return get_peft_model(model, config)


def adapter_disabled(model: torch.nn.Module):
    """A context in which a PEFT model computes its base model (the LoRA run's reference policy); for any other
    model, nothing changes."""
    return model.disable_adapter() if is_lora(model) else contextlib.nullcontext()


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a LoRA checkpoint holds: those that train (the frozen base is the model's own source)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, tied weights counted once."""
    params = list({p.data_ptr(): p for p in model.parameters()}.values())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


class MergedCopy:
    """Writes the merged weights of a PEFT model into a plain model of the same architecture (the engine's copy).

    Each adapted layer gets ``W + scale * B A`` (PEFT's ``get_delta_weight``, in the trained dtype, then cast to
    the copy's); ``modules_to_save`` come from their trained copy; every other tensor from the frozen base.
    """

    def __init__(self, replica: torch.nn.Module, model: torch.nn.Module):
        from peft.tuners.lora import LoraLayer
        from peft.utils import ModulesToSaveWrapper

        inner = model.get_base_model()
        self.plan = []  # (destination, source module, attribute, adapted layer or None)
        for name, dst in replica.named_parameters():
            path, attr = name.rsplit(".", 1) if "." in name else ("", name)
            src = inner.get_submodule(path)
            layer = None
            if isinstance(src, LoraLayer):
                layer, src = src, src.get_base_layer()
            elif isinstance(src, ModulesToSaveWrapper):
                src = src.modules_to_save[ADAPTER]
            self.plan.append((dst, src, attr, layer if attr == "weight" else None))

    @torch.no_grad()
    def sync(self) -> None:
        for dst, src, attr, layer in self.plan:
            value = getattr(src, attr)
            if layer is not None and ADAPTER in layer.lora_A and not layer.merged:
                value = value + layer.get_delta_weight(ADAPTER)
            dst.copy_(value)
        if self.plan and self.plan[0][0].is_cuda:
            torch.cuda.synchronize()  # the copies are queued, not done, when the loop returns


def plain_copy(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A frozen copy of the (not yet wrapped) model in ``dtype``: the engine's generation copy of a LoRA run."""
    import copy

    return copy.deepcopy(model).to(dtype).eval().requires_grad_(False)


def save_final(model: torch.nn.Module, tokenizer, final_dir: Path) -> None:
    """``final_dir``: the merged model as a plain HF folder (config.json + safetensors, loadable without PEFT) and
    ``final_dir/adapter`` (adapter_config.json + the adapter's weights, loadable by PEFT). Merges ``model`` in
    place: call it last."""
    final_dir = Path(final_dir)
    model.save_pretrained(final_dir / "adapter", safe_serialization=True)
    merged = model.merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(final_dir, safe_serialization=True)
    tokenizer.save_pretrained(final_dir)
