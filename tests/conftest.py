"""Shared test fixtures: quiet TensorFlow, the shared real-data folder, seeded RNGs, one
tiny work directory built once per session for the modules that each use a copy of it,
and the hook that starts a module's long subprocess chains once the tests are collected."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real test data beside the project; tests skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at ../shared/data (looked in {SHARED_DATA})")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory) -> str:
    """The root of one tiny work directory (`test_model_folder.build_workdir`: a tiny
    UBM, generated likelihood maps, a LeNet of protocol all trained one epoch), built
    once: each module that needs one works on its own copy (`copy_workdir`)."""
    from test_model_folder import build_workdir

    return build_workdir(str(tmp_path_factory.mktemp("tiny_workdir") / "work")).root


def copy_workdir(template: str, root: str):
    """A copy of the work directory `template` at `root` (created; may exist empty)."""
    from experiments.pipeline.workdir import Workdir

    shutil.copytree(template, root, dirs_exist_ok=True)
    return Workdir(root)


# --- Work started in the background as soon as the tests are collected -----------------
#
# A test module may define `start_in_background(tmp_path_factory)`, which starts
# subprocesses and returns a handle (whose last element is the process). Where any of
# the module's tests is selected, it is called once collection is done; the module's
# fixture takes the handle with `started_in_background(__name__)`. So a long chain of
# subprocesses (the pipeline smoke run) runs on the second core beside the tests that
# come before its own.
#
# Under pytest-xdist (`make test` runs two workers) every worker collects every test, so
# nothing starts at collection. The scheduler below keeps each module's tests on one
# worker (module fixtures are built once), and the modules that share an expensive
# session fixture together (`SHARED_FIXTURE_MODULES`, checked by test_conftest.py). The
# modules with a background chain are handed out first, so their worker runs the chain
# while the other takes the rest, then the modules with the most slow tests, so that no
# long module is left for the end.

_STARTED: dict[str, tuple] = {}
SHARED_FIXTURE_MODULES = {
    "tiny_workdir": ("test_detector.py", "test_evaluation.py", "test_model_folder.py"),
}


def _under_xdist() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


def scheduling_group(nodeid: str) -> str:
    """The xdist work unit of a test: its module, or the group of modules sharing a
    session fixture."""
    path = nodeid.split("::")[0]
    for group, modules in SHARED_FIXTURE_MODULES.items():
        if pathlib.PurePosixPath(path).name in modules:
            return group
    return path


@pytest.hookimpl(optionalhook=True)  # an xdist hook: plain pytest runs without it
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scheduling_group(nodeid)

    config.option.loadscopereorder = False  # the order is the collection's (below)
    return ModuleGroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _under_xdist():
        return
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        groups.setdefault(scheduling_group(item.nodeid), []).append(item)

    def order(group: list[pytest.Item]) -> tuple[bool, int]:
        background = any(hasattr(getattr(i, "module", None), "start_in_background") for i in group)
        return (not background, -sum(1 for i in group if i.get_closest_marker("slow")))

    items[:] = [item for group in sorted(groups.values(), key=order) for item in group]


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or _under_xdist():
        return
    modules = {}
    for item in session.items:
        module = getattr(item, "module", None)
        if module is not None and hasattr(module, "start_in_background"):
            modules[module.__name__] = module
    for name, module in sorted(modules.items()):
        _STARTED[name] = module.start_in_background(session.config._tmp_path_factory)


def started_in_background(module_name: str) -> tuple | None:
    """The handle of what conftest started for that module, or None (then it starts it)."""
    return _STARTED.pop(module_name, None)


def start_python_in_background(code: str, *args: str) -> subprocess.Popen:
    """`python -c code args...` in the project root, in a session of its own (so that
    `stop_process_group` stops its children too), its output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def communicate_all(
    processes: list[subprocess.Popen], timeout: float
) -> list[subprocess.CompletedProcess]:
    """Waits for processes started at once (each within `timeout` seconds) and returns
    their results; any still running when this fails is killed."""
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=timeout)
            results.append(
                subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
            )
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


def stop_process_group(process: subprocess.Popen) -> None:
    """Kills a process started with `start_new_session=True` and its children, if running."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def pytest_sessionfinish(session: pytest.Session) -> None:
    for handle in _STARTED.values():  # started, but their module's fixture never ran
        stop_process_group(handle[-1])
    _STARTED.clear()
