"""Shared by the settings-table tests: configs as the CLI resolves them, keys into them, and
the comparison of a found value with a paper's."""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import re
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from lit_robust.main import cli


@functools.cache
def resolve_config(paths: tuple[Path, ...]) -> dict[str, Any]:
    """The configuration ``lit-robust fit --config <path> ... --print_config`` resolves
    (every class default included)."""
    args = ["fit"]
    for path in paths:
        args += ["--config", str(path)]
    out = io.StringIO()
    with mock.patch.object(sys, "argv", ["lit-robust"]), contextlib.redirect_stdout(out), \
            pytest.raises(SystemExit) as done:
        cli([*args, "--print_config"])
    assert done.value.code in (0, None), out.getvalue()
    return yaml.safe_load(out.getvalue())


def lookup(config: dict[str, Any], key: str) -> Any:
    """The value at a dotted key.

    ``name[Class]`` picks the one entry of the list ``name`` whose class_path ends with
    ``Class``, ``name[Class@i]`` the i-th of several, ``name[Class:attack]`` the one whose
    ``attacks_to_run`` holds ``attack``; ``@image_size`` / ``@resize`` read the DataModule's
    setting, its class default when the config leaves it unset.
    """
    if key.startswith("@"):
        return _data_setting(config, key[1:])
    value: Any = config
    for part in key.split("."):
        match = re.fullmatch(r"(\w+)\[(\w+)(?:@(\d+)|:([\w-]+))?\]", part)
        if match is None:
            value = value[part]
            continue
        name, cls, index, attack = match.groups()
        entries = [e for e in value[name] if e["class_path"].rsplit(".", 1)[-1] == cls
                   and (attack is None or attack in e["init_args"]["attacks_to_run"])]
        if index is None:
            assert len(entries) == 1, f"expected one {cls} {attack or ''} in {name}: {entries}"
        value = entries[int(index or 0)]
    return value


def _data_setting(config: dict[str, Any], name: str) -> Any:
    value = config["data"]["init_args"].get(name)
    if value not in (None, "auto"):
        return value
    module, cls = config["data"]["class_path"].rsplit(".", 1)
    return getattr(getattr(importlib.import_module(module), cls), f"default_{name}")


def close(actual: Any, expected: Any) -> bool:
    """Equal; numbers within 1e-6 relative (a bool is no number); dicts compared on the
    expected keys; lists element by element."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and set(actual) >= set(expected) and all(
            close(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            close(a, e) for a, e in zip(actual, expected, strict=True))
    numbers = (int, float)
    if isinstance(expected, numbers) and not isinstance(expected, bool):
        return (isinstance(actual, numbers) and not isinstance(actual, bool)
                and actual == pytest.approx(expected, rel=1e-6))
    return type(actual) is type(expected) and actual == expected
