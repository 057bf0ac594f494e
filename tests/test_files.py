"""The one atomic writer (`data_prep.files`): all or nothing, no temporary left behind."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from data_prep.files import (
    atomic_path,
    check_writable,
    list_shards,
    read_json,
    write_json_atomically,
    write_text_atomically,
)


def test_a_failed_block_leaves_no_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "sub" / "out.json")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write('{"half": ')
        raise RuntimeError("killed midway")
    assert not os.path.exists(path)
    assert os.listdir(tmp_path / "sub") == []  # the temporary is gone too


def test_a_failed_block_keeps_the_previous_file(tmp_path):
    path = str(tmp_path / "out.txt")
    write_text_atomically(path, "old\n")
    with pytest.raises(ValueError), atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("new")
        raise ValueError("bad")
    assert pathlib.Path(path).read_text() == "old\n" and os.listdir(tmp_path) == ["out.txt"]


def test_a_chosen_temporary_name_is_used_and_renamed(tmp_path):
    path = str(tmp_path / "video.avi")
    hidden = str(tmp_path / ".video.avi.partial.avi")
    with atomic_path(path, tmp=hidden) as tmp:
        assert tmp == hidden
        with open(tmp, "wb") as f:
            f.write(b"frames")
    assert os.listdir(tmp_path) == ["video.avi"]


def test_json_round_trip_and_missing_file(tmp_path):
    path = str(tmp_path / "a.json")
    assert read_json(path) is None
    write_json_atomically(path, {"b": 1, "a": [1, 2]})
    assert read_json(path) == {"b": 1, "a": [1, 2]}
    assert pathlib.Path(path).read_text() == json.dumps({"b": 1, "a": [1, 2]}, indent=2) + "\n"


def test_list_shards_leaves_out_temporaries(tmp_path):
    (tmp_path / "a.tfrecord").write_bytes(b"")
    (tmp_path / "b.tfrecord.tmp").write_bytes(b"")
    assert list_shards(str(tmp_path / "*.tfrecord*")) == [str(tmp_path / "a.tfrecord")]
    with pytest.raises(FileNotFoundError, match="No TFRecord shards"):
        list_shards(str(tmp_path / "none*"))


def test_check_writable_names_the_setting(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    check_writable(str(tmp_path / "new"))
    with pytest.raises(PermissionError, match="--out=.*writable"):
        check_writable(str(blocker / "sub"), "--out")
