"""Peak memory of the detection stage against the number of likelihood maps.

Makes a larger likelihood tree out of a small one by copying every shard `copies`
times under new video ids (`<video>c<k>`, in the `video` feature and the file name,
so each copy counts as a distinct video), then runs one known-attack detector for one
epoch in a fresh Python process and reads its peak resident set size
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`). `code_root` runs another checkout of
the project (e.g. an older commit) on the same tree, for a before/after comparison.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import tensorflow as tf

from classifier import data as data_lib
from data_prep import files

# The child process: one run_protocol call, then its peak RSS as JSON on the last line.
_CHILD = """
import dataclasses, json, resource, sys
from classifier.config import DetectorConfig
from experiments.configs import load_config
from experiments.pipeline import detection
from experiments.pipeline.workdir import Workdir
tree, workdir, method, epochs, batch_size = sys.argv[1:6]
detector = DetectorConfig(epochs=int(epochs), batch_size=int(batch_size), bootstrap_samples=20)
config = dataclasses.replace(load_config("smoke"), name="bench", detector=detector)
detection.run_protocol(config, Workdir(workdir), "known", [method], likelihoods_dir=tree)
print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def _renamed(record: bytes, video: str) -> bytes:
    example = tf.train.Example.FromString(record)
    example.features.feature["video"].bytes_list.value[0] = video.encode()
    return example.SerializeToString()


def copy_tree(source: str, target: str, copies: int) -> int:
    """Writes `copies` copies of every shard of `source` under `target`; returns maps.

    Copy k of video V is video `Vc<k>` (feature and file name); the folders
    (`<split>/<source>/`) are kept.
    """
    total = 0
    for split, sources in data_lib.available_sources(source).items():
        for src in sources:
            for shard in data_lib.folder_shards(source, split, src):
                records = [r.numpy() for r in tf.data.TFRecordDataset(shard)]
                video = os.path.basename(shard)[: -len(data_lib.SHARD_SUFFIX)]
                for k in range(copies):
                    name = f"{video}c{k}"
                    path = os.path.join(target, split, src, name + data_lib.SHARD_SUFFIX)
                    total += files.write_shard_atomically(
                        path, (_renamed(r, name) for r in records)
                    )
    return total


def peak_memory(
    tree: str,
    method: str,
    epochs: int = 1,
    batch_size: int = 64,
    code_root: str | None = None,
) -> dict[str, Any]:
    """Peak RSS and wall time of one known-attack detector over `tree`, in a new process."""
    with tempfile.TemporaryDirectory(prefix="bench_detection_") as workdir:
        env = dict(os.environ)
        root = os.path.abspath(code_root or os.getcwd())
        env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, tree, workdir, method, str(epochs), str(batch_size)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"The detection run failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "seconds": round(seconds, 1)}


def benchmark(
    likelihoods_dir: str,
    copies: list[int],
    method: str = "Deepfakes",
    epochs: int = 1,
    code_root: str | None = None,
    scratch: str | None = None,
) -> list[dict[str, Any]]:
    """One result per copy count: maps, peak RSS (bytes, MB) and seconds.

    The copied trees live in a temporary folder (under `scratch` if given), deleted
    after each measurement; `likelihoods_dir` is only read.
    """
    results = []
    for n in copies:
        tree = tempfile.mkdtemp(prefix="bench_maps_", dir=scratch)
        try:
            maps = copy_tree(likelihoods_dir, tree, n)
            measured = peak_memory(tree, method, epochs=epochs, code_root=code_root)
        finally:
            shutil.rmtree(tree, ignore_errors=True)
        results.append(
            {
                "copies": n,
                "maps": maps,
                "method": method,
                "epochs": epochs,
                "peak_rss_mb": round(measured["peak_rss_bytes"] / 1e6, 1),
                **measured,
            }
        )
    return results
