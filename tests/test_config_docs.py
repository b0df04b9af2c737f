"""docs/configuration.md is generated from the config classes (r1lab.config_docs) and must never drift from them."""

from pathlib import Path

from r1lab import config_docs


def test_committed_configuration_page_equals_the_generated_one():
    committed = config_docs.DOC_PATH.read_text(encoding="utf-8")
    assert committed == config_docs.render(), (
        f"{config_docs.DOC_PATH} differs from the config classes: run `python -m r1lab.config_docs` and commit it")


def test_every_key_of_every_job_is_on_the_page():
    import dataclasses
    import typing

    def leaves(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                yield from leaves(hints[f.name], f"{prefix}{f.name}.")
            else:
                yield prefix + f.name

    page = config_docs.render()
    for _, spec in config_docs.JOBS:
        cls = config_docs._load(spec)
        for key in leaves(cls):
            assert f"| `{key}` |" in page, f"{spec}: {key} missing from the page"


def test_check_mode_reports_a_stale_page(tmp_path: Path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text("# old\n")
    assert config_docs.main(["--check", "--output", str(stale)]) == 1
    assert "python -m r1lab.config_docs" in capsys.readouterr().err
    assert config_docs.main(["--output", str(stale)]) == 0
    assert config_docs.main(["--check", "--output", str(stale)]) == 0
