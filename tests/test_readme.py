"""The README's commands are what CI runs, verbatim."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_setup_commands() -> list[str]:
    """The bash commands of the README's "Set-up: two commands" section, in order."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_has_the_two_setup_commands():
    commands = readme_setup_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in command for command in commands)
    assert "lit-robust fit --config configs/quickstart.yaml" in commands[0]
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command_verbatim_and_exports_nothing():
    script = (REPO / ".ci" / "run").read_text()
    code = [line for line in script.splitlines() if line.strip() and not line.startswith("#")]
    assert readme_setup_commands()[1] in code
    assert not [line for line in code if re.match(r"\s*(export|declare|env)\b", line)], code
    assert not [line for line in code if re.match(r"\s*[A-Z_]+=", line)], code
