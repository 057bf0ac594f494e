"""Layers depend downwards only (architecture.md): the libraries never import the
pipeline or the binaries, `classifier` does not import the UBM, and the UBM knows
nothing of faces or of the detector. Checked on the source with `ast`, so a lazy
import inside a function counts too."""

from __future__ import annotations

import ast
import pathlib

import pytest
from conftest import PROJECT_ROOT

LIBRARIES = ("classifier", "data_prep", "pixelcnn_pp")
# library -> top-level packages it must not import
FORBIDDEN = {
    "classifier": ("experiments", "pixelcnn_pp"),
    "data_prep": ("experiments",),
    "pixelcnn_pp": ("experiments", "classifier", "data_prep"),
}


def imported_packages(path: pathlib.Path) -> set[str]:
    """Top-level names of every absolute import in a source file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_check_sees_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os.path\nfrom a.b import c\ndef f():\n    import experiments.cli\n")
    assert imported_packages(source) == {"os", "a", "experiments"}


@pytest.mark.parametrize("library", LIBRARIES)
def test_libraries_import_downwards_only(library):
    sources = sorted((PROJECT_ROOT / library).rglob("*.py"))
    assert sources, f"no sources under {library}/"
    offending = {
        str(path.relative_to(PROJECT_ROOT)): sorted(
            imported_packages(path) & set(FORBIDDEN[library])
        )
        for path in sources
    }
    assert {k: v for k, v in offending.items() if v} == {}
