"""The test-suite plumbing in conftest.py: the groups the xdist scheduler keeps together."""

from __future__ import annotations

import re

from conftest import PROJECT_ROOT, SHARED_FIXTURE_MODULES, scheduling_group


def _modules_using(fixture: str) -> set[str]:
    uses = re.compile(rf"\bdef \w+\([^)]*\b{fixture}\b")
    return {
        path.name
        for path in (PROJECT_ROOT / "tests").glob("test_*.py")
        if uses.search(path.read_text())
    }


def test_every_module_using_a_shared_session_fixture_is_in_its_group():
    for fixture, modules in SHARED_FIXTURE_MODULES.items():
        assert _modules_using(fixture) == set(modules), fixture


def test_tests_are_scheduled_by_module_or_shared_group():
    assert scheduling_group("tests/test_flops.py::test_a[1-2]") == "tests/test_flops.py"
    assert scheduling_group("tests/test_flops.py::Case::test_b") == "tests/test_flops.py"
    assert scheduling_group("tests/test_detector.py::test_c") == "tiny_workdir"
    assert scheduling_group("tests/test_model_folder.py::test_d") == "tiny_workdir"
