"""Layering of the UBM library (design `architecture.md`, "Layers"): checked on the source.

`pixelcnn_pp` is the UBM and nothing else: none of its files imports `data_prep`,
`classifier` or `experiments`; and inference (`likelihood`) imports nothing of training,
directly or through another module of the package.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "pixelcnn_pp"
FORBIDDEN = ("data_prep", "classifier", "experiments")


def _imports(path: pathlib.Path) -> set[str]:
    """Absolute names of the modules a file imports (`from a import b` gives a and a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve inside the package
                base = "pixelcnn_pp" + (f".{node.module}" if node.module else "")
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


MODULES = {f"pixelcnn_pp.{p.stem}": _imports(p) for p in sorted(PACKAGE.glob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_pixelcnn_pp_imports_no_other_project_package(module):
    bad = sorted(n for n in MODULES[module] if n.split(".")[0] in FORBIDDEN)
    assert not bad, f"{module} imports {bad}"


def test_likelihood_does_not_import_training():
    seen, todo = set(), ["pixelcnn_pp.likelihood"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(n for n in MODULES.get(module, ()) if n in MODULES)
    assert "pixelcnn_pp.likelihood" in MODULES and len(seen) > 1
    assert "pixelcnn_pp.training" not in seen, sorted(seen)
