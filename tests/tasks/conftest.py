"""Benchmark-shaped datasets for the hf: task tests: rows from tests/fixtures, and builders of the layouts users
bring them in (Parquet shards, save_to_disk folders, the Hugging Face hub cache, the datasets cache)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture_rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


@pytest.fixture
def rows():
    """``rows(NAME)``: the rows of tests/fixtures/NAME."""
    return fixture_rows


@pytest.fixture
def hf_caches(tmp_path, monkeypatch):
    """Empty hub and datasets caches for one test, in this process and in the CLI processes it starts, with
    ``snapshot(repo_id, files)`` and ``prepared(repo_id, config, splits)`` to put a dataset in either."""
    import datasets
    import huggingface_hub.constants

    hub, prepared = tmp_path / "hub-cache", tmp_path / "datasets-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(prepared))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", prepared)
    return SimpleNamespace(
        hub=hub, datasets=prepared, snapshot=lambda repo_id, files: hub_snapshot(hub, repo_id, files),
        prepared=lambda repo_id, config, splits: prepared_cache_entry(prepared, repo_id, config, splits,
                                                                      tmp_path / "prepare"))


def hub_snapshot(hub: Path, repo_id: str, files: dict[str, list[dict] | str]) -> Path:
    """A dataset repo as ``load_dataset`` / ``hf download --repo-type dataset`` leave it in the hub cache: rows
    become Parquet files, strings are written as they are (a README with a ``configs`` section)."""
    import datasets

    repo = hub / f"datasets--{repo_id.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / revision
    for name, content in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            (snapshot / name).write_text(content)
        else:
            datasets.Dataset.from_list(content).to_parquet(str(snapshot / name))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def prepared_cache_entry(cache: Path, repo_id: str, config: str, splits: dict[str, list[dict]], work: Path) -> None:
    """A hub dataset as ``load_dataset`` prepares it in the datasets cache (Arrow files named
    ``NAME-SPLIT.arrow`` under ``ORG___NAME/CONFIG/VERSION/HASH``), with no copy in the hub cache."""
    import datasets

    files = {}
    work.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        files[split] = str(work / f"{split}.jsonl")
        Path(files[split]).write_text("".join(json.dumps(r) + "\n" for r in rows))
    built = datasets.load_dataset("json", data_files=files, cache_dir=str(work / "build"))
    source = Path(built[next(iter(splits))].cache_files[0]["filename"]).parent
    name = repo_id.split("/")[-1]
    target = cache / repo_id.replace("/", "___") / config / "0.0.0" / "0123abcd"
    target.mkdir(parents=True)
    for arrow in source.glob("json-*.arrow"):
        shutil.copy(arrow, target / arrow.name.replace("json-", f"{name}-", 1))
    info = json.loads((source / "dataset_info.json").read_text())
    info.update(config_name=config, dataset_name=name)
    (target / "dataset_info.json").write_text(json.dumps(info))

