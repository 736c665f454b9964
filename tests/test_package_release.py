"""The package is ready to upload: sdist and wheel build, pass ``twine check`` and install.

``python -m build --no-isolation`` builds the sdist, then the wheel *from the sdist* (so a file
the sdist forgets breaks the wheel), with the setuptools of the test environment (nothing is
downloaded). The wheel is installed without its dependencies into a fresh virtual
environment that sees the test environment's packages through a ``.pth`` line; a ``.pth`` line
adds a folder to ``sys.path`` without running the ``.pth`` files inside it, so the editable
install's import hook stays out and ``lit_robust`` is imported from the fresh environment (the
test asserts where it comes from). There the declared requirements are checked against the
installed versions, and ``lit-robust --help`` runs from a folder outside the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import lit_robust

REPO = Path(__file__).resolve().parents[1]
NAME = f"lit_robust-{lit_robust.__version__}"

pytestmark = pytest.mark.slow

CHECK_REQUIREMENTS = """
import sys
from importlib.metadata import PackageNotFoundError, distribution, version

from packaging.requirements import Requirement

import lit_robust

problems = []

def check(requirement, extra=""):
    if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
        return
    try:
        installed = version(requirement.name)
    except PackageNotFoundError:
        problems.append(f"{requirement} is not installed")
        return
    if not requirement.specifier.contains(installed, prereleases=True):
        problems.append(f"{requirement} is not met by {installed}")
    for wanted in requirement.extras:
        for inner in distribution(requirement.name).requires or []:
            check(Requirement(inner), extra=wanted)

package = distribution("lit-robust")
for line in package.requires:
    check(Requirement(line))
print(lit_robust.__file__)
print(lit_robust.__version__, package.version)
print("\\n".join(problems))
"""


def run(command: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                          **kwargs)
    assert done.returncode == 0, (
        f"{' '.join(map(str, command))} exited {done.returncode}:\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding the sdist and the wheel built from it."""
    folder = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(folder), str(REPO)],
        cwd=REPO)
    return folder


def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    files = sorted(dist.glob(f"{NAME}*"))
    assert [file.name for file in files] == [f"{NAME}-py3-none-any.whl", f"{NAME}.tar.gz"]
    done = run([sys.executable, "-m", "twine", "check", "--strict", *map(str, files)], cwd=dist)
    assert done.stdout.count("PASSED") == 2


def test_the_sdist_holds_the_configs_readme_license_and_docs(dist: Path) -> None:
    with tarfile.open(dist / f"{NAME}.tar.gz") as sdist:
        names = {name.removeprefix(f"{NAME}/") for name in sdist.getnames()}
    expected = {"README.md", "LICENSE", "setup.cfg", "pyproject.toml", "docs/conf.py",
                "docs/index.md"}
    expected |= {path.relative_to(REPO).as_posix() for path in (REPO / "configs").rglob("*.yaml")}
    expected |= {path.relative_to(REPO).as_posix() for path in (REPO / "notebooks").glob("*.ipynb")}
    assert not expected - names, f"missing from the sdist: {sorted(expected - names)}"
    assert not any(name.startswith("docs/api/generated") for name in names)


def test_the_wheel_holds_the_package_license_and_commands(dist: Path) -> None:
    with zipfile.ZipFile(dist / f"{NAME}-py3-none-any.whl") as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(f"{NAME}.dist-info/entry_points.txt").decode()
        metadata = wheel.read(f"{NAME}.dist-info/METADATA").decode()
    package = {path.relative_to(REPO).as_posix() for path in (REPO / "lit_robust").rglob("*.py")}
    assert not package - names, f"missing from the wheel: {sorted(package - names)}"
    assert f"{NAME}.dist-info/licenses/LICENSE" in names
    assert not any(name.startswith(("tests/", "configs/", "docs/")) for name in names)
    assert "lit-robust = lit_robust.main:main" in entry_points
    assert "lit-robust-compare = lit_robust.analysis.cli:main" in entry_points
    for field in ("Summary: Robust fine-tuning", "License-Expression: MIT",
                  "License-File: LICENSE", "Requires-Python: >=3.10",
                  "Description-Content-Type: text/markdown", "Keywords: ",
                  "Provides-Extra: docs", "Provides-Extra: test",
                  "Classifier: Programming Language :: Python :: 3.10",
                  "Classifier: Programming Language :: Python :: 3.12"):
        assert field in metadata, f"{field!r} missing from the wheel's metadata"


def test_the_wheel_installs_into_a_fresh_environment_and_the_command_runs(
        dist: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], cwd=tmp_path)
    python = fresh / "bin" / "python"
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    # without PYTHONPATH: a checkout on it would make pip skip the wheel as installed
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--quiet", str(dist / f"{NAME}-py3-none-any.whl")], cwd=tmp_path,
        env=environment)
    fresh_site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                           "'purelib'))"], cwd=tmp_path).stdout.strip())
    (fresh_site / "test-environment.pth").write_text(sysconfig.get_path("purelib") + "\n")
    environment["PATH"] = f"{fresh / 'bin'}{os.pathsep}{environment.get('PATH', '')}"

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    checked = run([str(python), "-c", CHECK_REQUIREMENTS], cwd=outside, env=environment)
    location, versions, *problems = checked.stdout.splitlines()
    assert Path(location).is_relative_to(fresh_site), f"lit_robust came from {location}"
    assert versions == f"{lit_robust.__version__} {lit_robust.__version__}"
    assert not [line for line in problems if line], problems

    help_text = run([str(fresh / "bin" / "lit-robust"), "--help"], cwd=outside,
                    env=environment).stdout
    assert help_text.startswith("usage: lit-robust")
    for subcommand in ("fit", "validate", "test", "predict"):
        assert subcommand in help_text
    compare_help = run([str(fresh / "bin" / "lit-robust-compare"), "--help"], cwd=outside,
                       env=environment).stdout
    assert compare_help.startswith("usage: lit-robust-compare")
