"""Every command the README, the getting-started page and the guides show is parsed by the
command's own parser, so a renamed option or a missing config fails here, not for a user.

- ``lit-robust fit|test|validate ...``: ``lit_robust.main.main`` with ``--print_config`` right
  after the subcommand (LightningCLI parses and checks everything, prints the config and exits
  0; nothing is instantiated, trained or read from the data folder);
- ``lit-robust-compare ...`` and ``python -m lit_robust.analysis ...``: the comparison tool's
  argparse parser;
- ``python benchmarks/<script>.py ...`` and ``python examples/<script>.py ...``: the script's
  own ``main``, stopped right after its ``parse_args`` returns (the example's CLI gets
  ``--print_config`` like ``lit-robust``); ``bash benchmarks/device/run.sh <plan>``: the script
  exists and the plan is one ``benchmarks/device/pack.py`` accepts.

Commands are read from the ```` ```bash ```` blocks: continuation lines (``\\``) are joined,
comments dropped, ``&&`` / ``;`` chains split, leading ``VAR=value`` assignments removed, and a
``for X in a b; do ...; done`` loop runs its body once per value. A placeholder the user fills
in is replaced through :data:`PLACEHOLDERS` (each entry says why); every other command runs
through its parser as shown.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from lit_robust.analysis.cli import build_parser as compare_parser
from lit_robust.main import main as lit_robust_main

REPO = Path(__file__).resolve().parents[2]
DOC_FILES = [REPO / "README.md", REPO / "docs" / "getting-started.md",
             *sorted((REPO / "docs" / "guides").glob("*.md"))]

PLACEHOLDERS = {
    "<source checkpoint>": ("source.ckpt", "the transfer study's source is the user's checkpoint"),
    "<source>": ("source.ckpt", "the last-layer ablation's source is the user's checkpoint"),
}
"""Placeholder → (stand-in, reason). The stand-in is parsed as the value a user would give."""

LIT_ROBUST_SUBCOMMANDS = {"fit", "test", "validate"}
PARSED_PROGRAMS = ("lit-robust", "lit-robust-compare", "python", "bash")
"""First words of the commands this test parses; any other command (pip, cat, tensorboard,
export, mutmut, ...) is not lit_robust's and is left alone."""


@dataclass(frozen=True)
class DocCommand:
    """One command of a ```` ```bash ```` block: where it is shown and its words."""

    where: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.words)}"


def expand_for_loops(script: str) -> str:
    """``for X in a b; do BODY; done`` (over one or more lines) → BODY once per value."""
    loop = re.compile(r"for (\w+) in ([^;\n]+);\s*do\b(.*?)\bdone", re.S)

    def unroll(match: re.Match) -> str:
        name, values, body = match.group(1), match.group(2).split(), match.group(3)
        return "\n".join(re.sub(rf"\$\{{?{name}\}}?", value, body) for value in values)

    return loop.sub(unroll, script)


def split_commands(script: str) -> list[list[str]]:
    """The simple commands of a bash block: continuations joined, comments dropped, chains
    split at ``&&``, ``||``, ``;`` and ``|``, leading ``VAR=value`` assignments removed."""
    for placeholder, (stand_in, _) in PLACEHOLDERS.items():
        script = script.replace(placeholder, stand_in)
    script = expand_for_loops(script).replace("\\\n", " ")
    commands: list[list[str]] = []
    for line in script.splitlines():
        words: list[str] = []
        for token in shlex.split(line, comments=True) + [";"]:
            if token in {"&&", "||", ";", "|"}:
                while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                    words.pop(0)
                if words:
                    commands.append(words)
                words = []
            else:
                words.append(token)
    return commands


def doc_commands() -> list[DocCommand]:
    """Every command of the ```` ```bash ```` blocks of the documentation files that starts with
    one of :data:`PARSED_PROGRAMS`."""
    found = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for block in re.finditer(r"^```bash\n(.*?)^```", text, re.S | re.M):
            line = text[:block.start()].count("\n") + 2
            where = f"{path.relative_to(REPO)}:{line}"
            for words in split_commands(block.group(1)):
                if words[0] in PARSED_PROGRAMS and not (words[0] == "python" and words[1] == "-c"):
                    found.append(DocCommand(where, tuple(words)))
        found.extend(inline_commands(path, text))
    return found


def inline_commands(path: Path, text: str) -> list[DocCommand]:
    """The complete commands shown inline in the prose (a code span that starts with one of
    :data:`PARSED_PROGRAMS` and gives at least one option), outside the fenced blocks. Spans
    that elide (``...``) or list alternatives (``fit | test``) are fragments, not commands."""
    prose = re.sub(r"^```.*?^```", lambda block: "\n" * block.group(0).count("\n"), text,
                   flags=re.S | re.M)
    found = []
    for span in re.finditer(r"(?<!`)`([^`\n]+)`(?!`)", prose):
        command = span.group(1)
        words = command.split()
        if (words[0] in PARSED_PROGRAMS and " --" in command and "..." not in command
                and "|" not in command):
            line = prose[:span.start()].count("\n") + 1
            found.extend(DocCommand(f"{path.relative_to(REPO)}:{line}", tuple(w))
                         for w in split_commands(command))
    return found


COMMANDS = doc_commands()


class _Parsed(Exception):
    """Raised by :func:`stop_after_parse` once a script's arguments parsed."""


@contextlib.contextmanager
def stop_after_parse() -> Iterator[None]:
    """Let a script's ``main`` parse its arguments (errors exit 2, as for a user) and stop it
    right after, before it does any work."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise _Parsed

    argparse.ArgumentParser.parse_args = parse_then_stop
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args = original


def load_script(path: Path) -> ModuleType:
    """Import a script by its path, with its folder on ``sys.path`` as when it runs."""
    name = f"doc_command_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


RAN = -1
"""The exit code :func:`exit_code` gives a command that ran past its parser instead of stopping."""


def exit_code(run, *args) -> tuple[int, str]:
    """Run ``run(*args)``, which must end by ``SystemExit`` or :class:`_Parsed`: its exit code
    (0 for a completed parse), or :data:`RAN` when it returned, and what it wrote to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            run(*args)
        except _Parsed:
            return 0, err.getvalue()
        except SystemExit as exited:
            return (exited.code if isinstance(exited.code, int) else 1), err.getvalue()
    return RAN, err.getvalue()


def check_lit_robust(args: list[str]) -> tuple[int, str]:
    subcommand, *rest = args
    assert subcommand in LIT_ROBUST_SUBCOMMANDS, f"unknown subcommand {subcommand!r}"
    rest = [word for word in rest if word != "--print_config"]  # shown with it, or not
    return exit_code(lit_robust_main, [subcommand, "--print_config", *rest])


def check_compare(args: list[str]) -> tuple[int, str]:
    with stop_after_parse():
        return exit_code(compare_parser().parse_args, args)


def check_script(script: str, args: list[str]) -> tuple[int, str]:
    path = REPO / script
    assert path.is_file(), f"{script} does not exist"
    module = load_script(path)
    if script.startswith("examples/"):
        subcommand, *rest = args
        return exit_code(module.main, [subcommand, "--print_config", *rest])
    argv = sys.argv
    sys.argv = [str(path), *args]
    try:
        with stop_after_parse():
            takes_argv = module.main.__code__.co_argcount > 0
            return exit_code(module.main, *([args] if takes_argv else []))
    finally:
        sys.argv = argv


def check_command(words: tuple[str, ...]) -> tuple[int, str]:
    program, *args = words
    if program == "lit-robust":
        return check_lit_robust(args)
    if program == "lit-robust-compare":
        return check_compare(args)
    if program == "python" and args[:2] == ["-m", "lit_robust.analysis"]:
        return check_compare(args[2:])
    if program == "python":
        return check_script(args[0], args[1:])
    if program == "bash" and args[0] == "benchmarks/device/run.sh":
        assert (REPO / args[0]).is_file(), f"{args[0]} does not exist"
        return check_script("benchmarks/device/pack.py", args[1:2])
    raise AssertionError(f"no parser for {shlex.join(words)}: teach this test, or drop it")


@pytest.fixture(autouse=True)
def _in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run from the repository root, as the docs say, with no arguments of pytest's
    in ``sys.argv``."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])


@pytest.mark.parametrize("command", COMMANDS, ids=[command.where for command in COMMANDS])
def test_documented_command_parses(command: DocCommand) -> None:
    code, stderr = check_command(command.words)
    assert code == 0, f"{command}\n{stderr[-2000:]}"


def test_the_docs_show_commands_of_every_kind() -> None:
    """The reader found the blocks: every page that shows commands, every kind of command."""
    programs = {command.words[0] for command in COMMANDS}
    assert programs == set(PARSED_PROGRAMS), programs
    assert len(COMMANDS) >= 80, len(COMMANDS)
    pages = {command.where.split(":")[0] for command in COMMANDS}
    assert "README.md" in pages and "docs/getting-started.md" in pages
    assert sum(page.startswith("docs/guides/") for page in pages) >= 12, pages


def test_every_placeholder_is_still_shown() -> None:
    """An allow-list entry that no page uses any more is removed, not kept."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in DOC_FILES)
    assert [placeholder for placeholder in PLACEHOLDERS if placeholder not in text] == []


def test_the_reader_joins_continuations_drops_comments_and_unrolls_loops() -> None:
    script = (
        "export A=1 && B=2 lit-robust fit --config x.yaml \\\n"
        "    --trainer.max_epochs 1   # a comment\n"
        "# only a comment\n"
        "for M in a b; do\n  lit-robust test --config c_${M}.yaml\ndone\n"
        "lit-robust fit --model.init_args.pretrained <source>\n"
    )
    assert split_commands(script) == [
        ["export", "A=1"], ["lit-robust", "fit", "--config", "x.yaml", "--trainer.max_epochs", "1"],
        ["lit-robust", "test", "--config", "c_a.yaml"],
        ["lit-robust", "test", "--config", "c_b.yaml"],
        ["lit-robust", "fit", "--model.init_args.pretrained", "source.ckpt"],
    ]


def test_a_renamed_option_and_a_missing_config_fail() -> None:
    """The check itself: what a stale page would show is refused with exit code 2."""
    assert check_lit_robust(["fit", "--config", "configs/quickstart.yaml"])[0] == 0
    assert check_lit_robust(["fit", "--config", "configs/quickstart.yaml",
                             "--model.init_args.no_such_option", "1"])[0] == 2
    assert check_lit_robust(["fit", "--config", "configs/no_such_config.yaml"])[0] != 0
    assert check_command(("python", "benchmarks/reproduce.py", "--paper", "twins",
                          "--scale", "no_such_scale"))[0] == 2
    assert check_command(("lit-robust-compare", "logs/", "--no-such-flag"))[0] == 2


def test_the_reader_takes_complete_inline_commands_and_leaves_fragments() -> None:
    text = ("Run `lit-robust fit --config a.yaml --trainer.max_epochs 2` first; `lit-robust fit`,\n"
            "`lit-robust test --ckpt_path ...` and `lit-robust fit | test` are fragments.\n"
            "```bash\nlit-robust fit --config in_a_block.yaml\n```\n"
            "Then `python benchmarks/reproduce.py --paper rift --scale cpu`.\n")
    found = inline_commands(REPO / "README.md", text)
    assert [(command.where, command.words) for command in found] == [
        ("README.md:1", ("lit-robust", "fit", "--config", "a.yaml", "--trainer.max_epochs", "2")),
        ("README.md:6", ("python", "benchmarks/reproduce.py", "--paper", "rift", "--scale",
                         "cpu")),
    ]
