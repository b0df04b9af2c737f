"""Every example command the user is shown must be valid: those in each sub-command's ``--help`` and the ``r1lab``
command lines of README.md and docs/*.md. Each is parsed by the real argument parser and its config built and
validated by ``r1lab.cli.load_job_config``, the function ``r1lab`` itself runs jobs with (nothing is run).

What counts as an example, in help text: ``r1lab COMMAND ARGS`` in backticks, or with an option among ARGS outside
them (a mention such as "r1lab serve, vLLM" or "`r1lab grpo`" is not one); ``--set KEY=VALUE`` with no command
before it, checked against the sub-command whose help shows it; and every ``configs/*.yaml`` named, loaded as that
sub-command's recipe. In Markdown: each ``r1lab`` line of a fenced code block and each inline code span
``r1lab COMMAND ARGS``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.machinery
import importlib.util
import io
import re
import shlex
from pathlib import Path

import pytest

from r1lab.cli import build_parser, config_class, load_job_config
from r1lab.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
PARSER = build_parser()
SUBCOMMANDS = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction))
COMMANDS = SUBCOMMANDS.choices
COMMAND_AT = re.compile(r"(`?)r1lab (" + "|".join(map(re.escape, COMMANDS)) + r")(?=[\s`),;.]|$)")
BARE_SET = re.compile(r"--set\s+('[^']*'|\"[^\"]*\"|[^\s`]+)")
CONFIG_FILE = re.compile(r"\bconfigs/[\w.-]+\.yaml\b")
CLOSING = {")": "(", "]": "[", "}": "{"}


def command_span(text: str, start: int, backticked: bool) -> str:
    """The command that starts at ``text[start]``: up to the closing backtick, or (outside backticks) up to a
    ``,``/``;``/``. ``/unmatched closing bracket outside quotes and brackets, where the sentence goes on."""
    depth, quote = [], None
    for i in range(start, len(text)):
        c = text[i]
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "`":
            return text[start:i]
        elif backticked:
            continue
        elif c in "([{":
            depth.append(c)
        elif c in CLOSING:
            if not depth or depth[-1] != CLOSING[c]:
                return text[start:i]
            depth.pop()
        elif not depth and (c in ",;" or (c == "." and text[i + 1 : i + 2] in ("", " "))):
            return text[start:i]
    return text[start:]


def help_texts() -> list[tuple[str, str, str]]:
    """(sub-command, where, text) of every help text: each sub-command's description, epilog and argument helps,
    and its line in ``r1lab --help``; lines joined."""
    found = [(c.dest, f"r1lab --help, {c.dest}", c.help or "") for c in SUBCOMMANDS._choices_actions]
    for name, parser in COMMANDS.items():
        texts = [("description", parser.description or ""), ("epilog", parser.epilog or "")]
        texts += [(f"help of {'/'.join(a.option_strings) or a.dest}", a.help or "") for a in parser._actions]
        found += [(name, f"r1lab {name} --help, {where}", text) for where, text in texts]
    return [(name, where, " ".join(text.split())) for name, where, text in found if text]


def help_examples() -> list[tuple[str, str, list[str]]]:
    """(where, kind, argv): kind "command" (argv after ``r1lab``), "set" (argv = [command, KEY=VALUE]) or
    "config" (argv = [command, path])."""
    found = []
    for name, where, text in help_texts():
        covered = []
        for match in COMMAND_AT.finditer(text):
            begin = match.start(2) - len("r1lab ")
            span = command_span(text, begin, bool(match.group(1)))
            argv = shlex.split(span)[1:]
            if len(argv) > 1 and (match.group(1) or any(arg.startswith("-") for arg in argv[1:])):
                found.append((where, "command", argv))
                covered.append((begin, begin + len(span)))
        for match in BARE_SET.finditer(text):
            item = match.group(1).strip("'\"")
            inside = any(a <= match.start() < b for a, b in covered)
            if not inside and not item.startswith("KEY"):  # KEY=VALUE: the syntax, not an example
                found.append((where, "set", [name, item]))
        found += [(where, "config", [name, path]) for path in CONFIG_FILE.findall(text)]
    return found


def markdown_examples() -> list[tuple[str, str, list[str]]]:
    """(where, "command", argv) of README.md and docs/*.md: fenced-block lines and inline code spans."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        fenced, pending = False, ""
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{lineno}"
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                pending += line
                if line.endswith("\\"):  # a shell continuation: the command goes on on the next line
                    pending = pending[:-1] + " "
                    continue
                command, pending = pending, ""
                if not re.search(r"(^|\s)r1lab\s", command):  # not a shell line running r1lab
                    continue
                tokens = shlex.split(command, comments=True)
                argv = tokens[tokens.index("r1lab") + 1 :]
                if argv and argv[0] in COMMANDS:
                    found.append((where, "command", argv))
                continue
            for span in re.findall(r"`(r1lab [^`]+)`", line):
                argv = shlex.split(span)[1:]
                if argv[0] in COMMANDS and len(argv) > 1:
                    found.append((where, "command", argv))
    return found


@contextlib.contextmanager
def every_package_installed():
    """Validation that probes for an optional package (rollout.engine=vllm asks ``find_spec("vllm")``) finds it:
    an example is checked against the config schema, not against what this machine has installed."""
    real = importlib.util.find_spec

    def find_spec(name, package=None):
        return real(name, package) or importlib.machinery.ModuleSpec(name, None)

    importlib.util.find_spec = find_spec
    try:
        yield
    finally:
        importlib.util.find_spec = real


def config_error(cls: type, overrides: list[str]) -> str | None:
    try:
        load_config(cls, None, overrides)
    except ConfigError as error:
        return str(error)
    return None


def problem(kind: str, argv: list[str]) -> str | None:
    """Why this example would fail before its job starts, or None when it is valid. A lone ``--set`` is judged on
    its own: an error the defaults have without it too (sft's required data.train_path) is not its fault."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), every_package_installed():
            if kind == "set":
                cls = config_class(argv[0])
                error = config_error(cls, [argv[1]])
                return f"config error: {error}" if error and error != config_error(cls, []) else None
            if kind == "config":  # as the sub-command reads a recipe: its positional, or eval's --config
                load_job_config(PARSER.parse_args([argv[0], "--config", argv[1]] if argv[0] == "eval" else argv))
            else:
                load_job_config(PARSER.parse_args(argv))
    except SystemExit as exit_:  # argparse: --help exits 0, a bad option 2 with the usage on stderr
        return None if exit_.code == 0 else f"rejected by the argument parser: {err.getvalue().strip()}"
    except ConfigError as error:
        return f"config error: {error}"
    return None


EXAMPLES = help_examples() + markdown_examples()


def test_examples_are_found():
    """The collectors see the examples that exist today (a broken regex would pass every check vacuously)."""
    got = {(kind, " ".join(argv)) for _, kind, argv in EXAMPLES}
    assert ("set", "grpo train.lr=1e-5") in got
    assert ("set", "filter verify.keep_wrong=true") in got
    assert ("command", "filter --set verify.keep_wrong=true") in got  # from journey's description
    assert ("config", "pipeline configs/r1_gpu.yaml") in got
    assert ("command", "eval --method beam_search --set method.params={prm: {kind: trained, model: RUN/final}}") in got
    assert any(kind == "command" and argv[0] == "generate" and "--num-prompts" in argv for _, kind, argv in EXAMPLES)
    assert not any(argv[0] == "serve" and "vLLM" in argv for _, _, argv in EXAMPLES)  # a mention, not a command


@pytest.mark.parametrize("where, kind, argv", EXAMPLES, ids=[f"{w} {' '.join(a)}" for w, _, a in EXAMPLES])
def test_example_is_valid(where, kind, argv):
    assert problem(kind, argv) is None, f"{where}: `r1lab {' '.join(argv)}`: {problem(kind, argv)}"


@pytest.mark.parametrize("kind, argv, expected", [
    ("set", ["filter", "teacher.error_rate=0.3"], "unknown config key 'teacher'"),
    ("command", ["generate", "--url", "http://HOST:PORT/v1"], "a program teacher runs locally"),
    ("command", ["eval", "--bogus"], "rejected by the argument parser"),
    ("config", ["grpo", "configs/missing.yaml"], "config file not found"),
])
def test_a_bad_example_is_reported(kind, argv, expected):
    assert expected in (problem(kind, argv) or "")
