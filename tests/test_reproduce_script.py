"""`make reproduce`'s script refuses bad settings with a clear message, before any work."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT


def _reproduce(tmp_path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHON": sys.executable, "WORKDIR": str(tmp_path / "work"), **env}
    return subprocess.run(
        ["bash", "experiments/reproduce.sh"],
        cwd=PROJECT_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FFPP_ROOT": "{tmp}", "SPLITS_DIR": ""}, "SPLITS_DIR is required with FFPP_ROOT"),
        ({"FFPP_ROOT": "{tmp}/missing", "SPLITS_DIR": "{tmp}"}, "is not a folder"),
        ({"CONFIG": "bogus"}, "unknown CONFIG='bogus'"),
        ({"COMPRESSION": "c99"}, "COMPRESSION must be raw, c23 or c40"),
    ],
)
def test_bad_settings_are_refused(tmp_path, env, message):
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    result = _reproduce(tmp_path, **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "work").exists()  # refused before writing anything
