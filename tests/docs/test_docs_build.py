"""The documentation builds with warnings as errors, its links resolve and it covers the API.

One ``sphinx-build -W --keep-going -b html docs <tmp>`` per test session (the build imports the
package for autodoc: about a minute on a 2-core machine). A broken cross-reference (a MyST link
to a missing page, a ``:class:`` to a lit_robust object that does not exist), a page outside
every toctree, a docstring that is not valid reStructuredText or a module that fails to import
fails the build, so the first test. The others read the built HTML: every internal link reaches
an existing file and anchor, every public module has its API page and every name a subpackage
exports is documented, every notebook ran (the build executes them on the real data) and
its example page shows the outputs. The README's relative links are
checked against the repository.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

import lit_robust
from tests.shared_paths import shared_data_root, shared_models_root

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
DOCUMENTED_PACKAGES = ("methods", "attacks", "evaluation", "data", "models", "analysis",
                       "callbacks")
"""The subpackages whose public names must all be documented; every module has its page."""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML folder of one clean build; the build's log is in the assertion message."""
    output = tmp_path_factory.mktemp("docs")
    environment = {**os.environ, "LIT_ROBUST_DATA": str(shared_data_root()),
                   "LIT_ROBUST_MODELS": str(shared_models_root()), "OMP_NUM_THREADS": "2",
                   "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
         "-d", str(output / "doctrees"), str(DOCS), str(output / "html")],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        pytest.fail(f"sphinx-build exited {done.returncode}:\n{done.stderr[-6000:]}")
    return output / "html"


class LinksAndAnchors(HTMLParser):
    """The ``href`` values and the anchor names (``id`` and ``name``) of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name") if tag != "meta" else ():
            if values.get(key):
                self.anchors.add(values[key])
        if tag in ("a", "link") and values.get("href"):
            self.links.append(values["href"])


def read_pages(html: Path) -> dict[Path, LinksAndAnchors]:
    pages = {}
    for page in html.rglob("*.html"):
        parser = LinksAndAnchors()
        parser.feed(page.read_text(encoding="utf-8"))
        pages[page.resolve()] = parser
    return pages


def documented_names(page: Path) -> set[str]:
    """The anchors of lit_robust objects on one API page (their dotted names)."""
    parser = LinksAndAnchors()
    parser.feed(page.read_text(encoding="utf-8"))
    return {anchor for anchor in parser.anchors if anchor.startswith("lit_robust.")}


def lookup(dotted: str) -> object:
    """The object a documented name stands for, or None if it is not a module attribute."""
    module_name, _, attribute = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError):
        return None


def public_modules() -> list[str]:
    """Every public module of lit_robust, found on disk (``__main__``, ``_private`` left out)."""
    found = ["lit_robust"]
    for module in pkgutil.walk_packages(lit_robust.__path__, prefix="lit_robust."):
        if not any(part.startswith("_") for part in module.name.split(".")):
            found.append(module.name)
    return sorted(found)


def test_the_docs_build_without_warnings(built: Path) -> None:
    assert (built / "index.html").is_file()


def test_every_internal_link_reaches_a_file_and_its_anchor(built: Path) -> None:
    pages = read_pages(built)
    broken = []
    for page, parsed in pages.items():
        for link in parsed.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.exists():
                broken.append(f"{page.relative_to(built)}: {link} (no such file)")
            elif parts.fragment and target.suffix == ".html" and (
                    unquote(parts.fragment) not in pages[target].anchors):
                broken.append(f"{page.relative_to(built)}: {link} (no such anchor)")
    assert not broken, "\n".join(sorted(set(broken))[:40])


def test_the_api_reference_has_a_page_for_every_public_module(built: Path) -> None:
    modules = public_modules()
    assert {f"lit_robust.{name}" for name in DOCUMENTED_PACKAGES} <= set(modules)
    missing = []
    for name in modules:
        page = built / "api" / "generated" / f"{name}.html"
        if not page.is_file() or f'id="module-{name}"' not in page.read_text(encoding="utf-8"):
            missing.append(name)
    assert not missing, f"modules without an API page: {missing}"


def test_every_exported_name_is_documented(built: Path) -> None:
    """Each name in a subpackage's ``__all__`` is documented in the module that defines it."""
    documented: dict[str, set[str]] = {}
    for page in (built / "api" / "generated").glob("*.html"):
        for anchor in documented_names(page):
            documented.setdefault(anchor.rpartition(".")[2], set()).add(anchor)
    undocumented = []
    for package_name in DOCUMENTED_PACKAGES:
        package = importlib.import_module(f"lit_robust.{package_name}")
        for name in package.__all__:
            exported = getattr(package, name)
            if not any(lookup(anchor) is exported for anchor in documented.get(name, ())):
                undocumented.append(f"{package.__name__}.{name}")
    assert not undocumented, f"exported but not documented: {undocumented}"


def test_every_notebook_executes_and_its_page_shows_the_outputs(built: Path) -> None:
    """The build executed each notebook on the real data (a cell that raises fails the
    build): its example page shows what the cells printed, and no cell output is an error."""
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert notebooks
    for notebook in notebooks:
        page = built / "examples" / "notebooks" / f"{notebook.stem}.html"
        assert page.is_file(), f"{notebook.name} has no page under examples/"
        ran = nbformat.read(DOCS / "examples" / "notebooks" / notebook.name, as_version=4)
        outputs = [output for cell in ran.cells if cell.cell_type == "code"
                   for output in cell.outputs]
        assert outputs and not [o for o in outputs if o.output_type == "error"], notebook.name
        assert 'class="cell_output' in page.read_text(encoding="utf-8"), notebook.name


def test_the_changelog_has_an_entry_for_the_version() -> None:
    changelog = (DOCS / "changelog.md").read_text(encoding="utf-8")
    assert f"\n## {lit_robust.__version__}\n" in changelog


MARKDOWN_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def test_every_relative_link_of_the_readme_points_to_a_file() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    links = MARKDOWN_LINK.findall(text) + REFERENCE_LINK.findall(text)
    relative = [link for link in links
                if not urlsplit(link).scheme and not link.startswith(("#", "//"))]
    assert relative, "the README links to no file; the test would check nothing"
    missing = [link for link in relative
               if not (REPO / unquote(urlsplit(link).path)).exists()]
    assert not missing, f"README links to missing files: {missing}"
