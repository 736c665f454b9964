"""Sphinx configuration of the lit_robust documentation.

Build it with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` from the repository
root (the ``docs`` extra installs what it needs). Two kinds of page are written into the source
folder when the build starts and are not kept in git:

- ``api/generated/``: one page per module of the package, from the docstrings (autodoc,
  Google style through napoleon), so a new module gets its page without anyone writing it;
- ``examples/notebooks/``: ``notebooks/*.ipynb`` executed top to bottom (in ``notebooks/``, as
  Jupyter runs them from the repository, on the data ``LIT_ROBUST_DATA`` names) and rendered by
  myst-nb with their outputs. A notebook that raises fails the build. The repository keeps the
  notebooks without outputs; building executes them (about a minute and a half on a 2-core
  machine), so the site always shows what the current code prints.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPOSITORY = DOCS.parent
sys.path.insert(0, str(REPOSITORY))

import lit_robust  # noqa: E402

project = "lit_robust"
author = "the lit_robust authors"
copyright = "2026, the lit_robust authors"
version = release = lit_robust.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_templates", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

html_theme = "furo"
html_title = f"lit_robust {release}"

# MyST: ``[text](page.md#a-heading)`` links reach headings down to level 3.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# myst-nb renders the notebooks executed by ``execute_notebooks`` (below) as they are.
nb_execution_mode = "off"
NOTEBOOK_TIMEOUT_S = 600
"""The longest a notebook cell may run while the docs build."""

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autosummary_generate = False
# A method without a docstring of its own (an override of a Lightning hook) shows no text rather
# than Lightning's, whose examples use directives of Lightning's own documentation.
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# ``Attributes:`` sections become fields of their class: a NamedTuple's fields are documented once.
napoleon_use_ivar = True

# A reference to an object of lit_robust that does not exist is an error; references to other
# libraries (torch, lightning, the standard library, ...) are not checked, since the build reads
# no inventory over the network.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!lit_robust\b).*")]

PACKAGE = "lit_robust"
API_FOLDER = DOCS / "api" / "generated"
NOTEBOOK_SOURCE = REPOSITORY / "notebooks"
NOTEBOOK_FOLDER = DOCS / "examples" / "notebooks"


def package_modules(package: str = PACKAGE) -> list[str]:
    """Every public module of ``package``, found on disk (``__main__`` and ``_private`` left out).

    The folder is walked without importing anything, so a module that runs on import
    (``python -m lit_robust.analysis``) is never executed by the build.
    """
    root = importlib.import_module(package)
    found = [package]
    for module in pkgutil.walk_packages(root.__path__, prefix=f"{package}.",
                                        onerror=lambda name: None):
        if not any(part.startswith("_") for part in module.name.split(".")):
            found.append(module.name)
    return sorted(found)


def direct_children(name: str, modules: list[str]) -> list[str]:
    depth = name.count(".") + 1
    return [module for module in modules
            if module.startswith(f"{name}.") and module.count(".") == depth]


def module_page(name: str, modules: list[str]) -> str:
    """The reStructuredText of one module's page."""
    title = name.replace("_", r"\_")
    lines = [title, "=" * len(title), ""]
    children = direct_children(name, modules)
    if not children:
        lines += [f".. automodule:: {name}", ""]
        return "\n".join(lines)
    lines += [f".. automodule:: {name}", "   :no-members:", ""]
    public = getattr(importlib.import_module(name), "__all__", None)
    if public:
        lines += [".. rubric:: Public names", "", ".. autosummary::", ""]
        lines += [f"   {item}" for item in public] + [""]
    lines += [".. rubric:: Modules", "", ".. autosummary::", "   :toctree: .", ""]
    lines += [f"   {child.rpartition('.')[2]}" for child in children] + [""]
    return "\n".join(lines)


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` atomically, leaving an unchanged file (and its timestamp) alone."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_api_pages(app) -> None:
    """One page per public module under ``api/generated``; pages of removed modules go."""
    API_FOLDER.mkdir(parents=True, exist_ok=True)
    modules = package_modules()
    wanted = {f"{name}.rst" for name in modules}
    for stale in API_FOLDER.glob("*.rst"):
        if stale.name not in wanted:
            stale.unlink(missing_ok=True)
    for name in modules:
        write_if_changed(API_FOLDER / f"{name}.rst", module_page(name, modules))


def executed(source: Path) -> str:
    """The notebook ``source`` executed top to bottom in its own folder, as JSON text.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised; the build stops with its
            traceback.
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(source, as_version=4)
    os.environ.setdefault("MPLBACKEND", "Agg")
    NotebookClient(notebook, timeout=NOTEBOOK_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(source.parent)}}).execute()
    return nbformat.writes(notebook)


def execute_notebooks(app) -> None:
    """Write each ``notebooks/*.ipynb``, executed, beside ``examples/index.md``; copies of
    removed notebooks go."""
    NOTEBOOK_FOLDER.mkdir(parents=True, exist_ok=True)
    sources = {path.name: path for path in NOTEBOOK_SOURCE.glob("*.ipynb")}
    for stale in NOTEBOOK_FOLDER.glob("*.ipynb"):
        if stale.name not in sources:
            stale.unlink(missing_ok=True)
    for name, source in sorted(sources.items()):
        write_if_changed(NOTEBOOK_FOLDER / name, executed(source))


def resolve_reexported_name(app, env, node, contnode):
    """Let ``lit_robust.methods.TWINS`` reach the page of ``lit_robust.methods.twins.TWINS``.

    Each public object is documented once, in the module that defines it; its subpackage
    re-exports it under a shorter name, which is the name users (and the guides) write. The
    documented object with the same last name, inside the same subpackage and that *is* the
    re-exported object, is the target.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target.startswith(f"{PACKAGE}."):
        return None
    package, _, attribute = target.rpartition(".")
    try:
        wanted = getattr(importlib.import_module(package), attribute)
    except (ImportError, AttributeError):
        return None
    domain = env.get_domain("py")
    for candidate in domain.objects:
        module_name, _, name = candidate.rpartition(".")
        if name != attribute or candidate == target or not module_name.startswith(package):
            continue
        try:
            found = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError):
            continue
        if found is wanted:
            return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                                       candidate, node, contnode)
    return None


def setup(app):
    app.connect("builder-inited", write_api_pages)
    app.connect("builder-inited", execute_notebooks)
    app.connect("missing-reference", resolve_reexported_name)
    return {"parallel_read_safe": True}
