r"""How detection grows with the UBM: several UBMs on one face set; one JSON line each.

Usage:
  python -m experiments.bench_ubm_scaling --config=cpu --workdir=STUDY \
      --faces_dir=WORKDIR/faces --points=r1f16s250,r1f32s250,r1f8s250,r1f32s1000 \
      [--train_per_class=1000 --val_per_class=500] [--config.ubm.matmul_dtype=bfloat16 ...]

For each point r<R>f<F>s<steps> (`experiments.pipeline.ubm_scaling`): the UBM trained on
every pristine training crop of --faces_dir (a prepare_faces folder, e.g. of
`--dataset=crops`), the maps of --train_per_class training crops per class, of
--val_per_class val crops per class and of every test crop, and the known-attack LeNets
on them: at the first point every input (the maps, the pixel baselines, grey and RGB,
which do not depend on the UBM, and the maps with the grey pixels), at the others
--later_inputs. Prints one JSON line per point (its UBM's validation bits/dim,
training FLOPs, wall time, the detectors' val and test AUC, accuracy and EER with
intervals), appends it to STUDY/scaling.jsonl and draws STUDY/scaling.png. Each point
lives in STUDY/<point>/; an interrupted study resumes.
"""

from __future__ import annotations

import dataclasses
import json
import os

from absl import app, flags

from classifier.config import INPUT_KINDS, MAPS, MAPS_AND_GREY
from experiments import cli
from experiments.pipeline import devices

CONFIG, WORKDIR = cli.define_config_and_workdir(
    default_config="cpu", workdir_help="The study's folder: one work directory per point."
)
FACES_DIR = flags.DEFINE_string(
    "faces_dir", None, "The faces folder of prepare_faces that every point reads."
)
flags.mark_flag_as_required("faces_dir")
POINTS = flags.DEFINE_list(
    "points",
    ["r1f16s250", "r1f32s250", "r1f32s1000", "r2f64s400", "r1f32s4000"],
    "UBMs, each r<R>f<F>s<steps>, in the order they are run.",
)
LATER_INPUTS = flags.DEFINE_list(
    "later_inputs",
    [MAPS, MAPS_AND_GREY],
    "Detector inputs of every point after the first (the first trains all of them; the "
    "pixel baselines do not depend on the UBM).",
)
TRAIN_PER_CLASS = flags.DEFINE_integer(
    "train_per_class", 1000, "Training crops per class mapped for the detectors (0: all).", 0
)
VAL_PER_CLASS = flags.DEFINE_integer(
    "val_per_class", 500, "Val crops per class mapped for the detectors (0: all).", 0
)


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    devices.quiet_tensorflow_logs()
    from experiments.pipeline import ubm_scaling

    try:
        points = [ubm_scaling.ScalingPoint.parse(p) for p in POINTS.value]
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    if not os.path.isdir(FACES_DIR.value):
        raise app.UsageError(
            f"--faces_dir={FACES_DIR.value!r} is not a folder: pass the faces folder "
            "prepare_faces wrote."
        )
    base = cli.experiment_config(CONFIG)
    study = WORKDIR.value
    os.makedirs(study, exist_ok=True)
    rows = []
    for i, point in enumerate(points):
        inputs = INPUT_KINDS if i == 0 else tuple(LATER_INPUTS.value)
        try:
            figures = ubm_scaling.run_point(
                base,
                point,
                FACES_DIR.value,
                study,
                {"train": TRAIN_PER_CLASS.value, "val": VAL_PER_CLASS.value},
                inputs,
            )
        except (FileNotFoundError, ValueError, PermissionError) as err:
            raise app.UsageError(f"{point.name}: {err}") from None
        figures["config"] = dataclasses.asdict(base.detector) | {"name": base.name}
        print(json.dumps(figures), flush=True)
        rows.append(figures)
        with open(os.path.join(study, "scaling.jsonl"), "a") as f:
            f.write(json.dumps(figures) + "\n")
    ubm_scaling.plot_scaling(rows, os.path.join(study, "scaling.png"))


if __name__ == "__main__":
    app.run(main)
