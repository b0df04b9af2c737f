"""Opening a Hugging Face ``datasets`` source by name, from local files only: the splits it holds, by split name.

A source is, tried in this order:
  * a folder written by ``save_to_disk`` (``dataset_dict.json`` or ``state.json`` inside): ``load_from_disk``;
  * any other folder: ``load_dataset(FOLDER)``, which reads a README's ``configs`` section if there is one and
    otherwise names splits after the files (``train-*.parquet``, ``test.jsonl``, ...);
  * a data file or a glob of shards (``.parquet``, ``.arrow``, ``.jsonl``/``.json``, ``.csv``): one split, ``train``;
  * a hub id (``openai/gsm8k``): its snapshot in the Hugging Face hub cache (where ``load_dataset`` and
    ``hf download --repo-type dataset`` put the files) loaded as a folder, else the Arrow copy ``datasets`` prepared
    in its own cache, read with offline mode forced.
Nothing is downloaded: a hub id found in neither cache is an error that says how to fetch it once.
"""

from __future__ import annotations

import contextlib
import glob
from pathlib import Path
from typing import Any, Iterator

# File extension -> the ``datasets`` builder that reads it
BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "json", ".json": "json", ".csv": "csv"}


class DatasetSourceError(ValueError):
    """A source that cannot be opened as asked; the message names the source, the key and what is there."""


def open_splits(source: str, subset: str = "") -> dict[str, Any]:
    """split name -> ``datasets.Dataset`` of ``source``; ``subset`` is the dataset's config name (GSM8K: main)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            if subset:
                raise DatasetSourceError(f"{source}: a save_to_disk folder has no subsets; leave task.subset empty")
            return _saved_splits(path)
        return _folder_splits(str(path), source, subset)
    if glob.has_magic(source) or path.is_file() or path.suffix in BUILDERS:
        if subset:
            raise DatasetSourceError(f"{source}: data files have no subsets; leave task.subset empty")
        return _file_splits(source)
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise DatasetSourceError(f"{source}: no such file or folder")
    return _hub_splits(source, subset)


def _saved_splits(path: Path) -> dict[str, Any]:
    import datasets  # lazy: heavy

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        return dict(loaded)
    # A single saved Dataset keeps the split it was loaded as (load_dataset(..., split="test")); else it is "train"
    return {str(loaded.split) if loaded.split else "train": loaded}


def _file_splits(source: str) -> dict[str, Any]:
    import datasets

    files = sorted(glob.glob(str(Path(source).expanduser())))
    if not files:
        raise DatasetSourceError(f"{source}: no such file" + (" (the glob matches nothing)" if glob.has_magic(source) else ""))
    kinds = {BUILDERS.get(Path(f).suffix) for f in files}
    if None in kinds or len(kinds) > 1:
        suffixes = ", ".join(sorted({Path(f).suffix or "(none)" for f in files}))
        raise DatasetSourceError(f"{source}: files of one format expected ({', '.join(BUILDERS)}), got {suffixes}")
    return dict(datasets.load_dataset(kinds.pop(), data_files=files))


def _folder_splits(folder: str, source: str, subset: str) -> dict[str, Any]:
    import datasets

    names = datasets.get_dataset_config_names(folder)
    if subset and subset not in names:
        raise DatasetSourceError(f"{source}: no subset {subset!r} (task.subset); its subsets: {', '.join(names)}")
    if not subset and len(names) > 1:
        raise DatasetSourceError(f"{source}: has several subsets, choose one with task.subset: {', '.join(names)}")
    try:
        return dict(datasets.load_dataset(folder, subset or None))
    except (datasets.exceptions.DataFilesNotFoundError, FileNotFoundError, ValueError) as err:
        where = f" subset {subset!r}" if subset else ""
        raise DatasetSourceError(f"{source}{where}: cannot load its data files ({err})") from err


def _hub_splits(repo_id: str, subset: str) -> dict[str, Any]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, repo_type="dataset", local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        folder = None
    if folder is not None:
        return _folder_splits(folder, repo_id, subset)
    import datasets

    try:
        with _offline():
            return dict(datasets.load_dataset(repo_id, subset or None))
    except ValueError as err:  # e.g. a cached dataset asked for a subset it does not have
        raise DatasetSourceError(f"{repo_id}: {err} (task.subset)") from err
    except (ConnectionError, FileNotFoundError) as err:
        raise DatasetSourceError(
            f"{repo_id}: not a local file or folder, and not in the Hugging Face hub cache or the datasets cache "
            f"(r1lab never downloads at run time). Fetch it once on a machine with network access, e.g. `hf download "
            f"--repo-type dataset {repo_id}`, or save it to a folder with datasets' save_to_disk and pass that folder"
        ) from err


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """``datasets`` in offline mode for one call, whatever HF_HUB_OFFLINE says: it then reads its own cache."""
    import datasets

    before = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = before
