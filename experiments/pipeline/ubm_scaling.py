"""How detection grows with the UBM: several UBMs, their maps, their detectors.

The paper's UBM (R=5, F=160, 5 epochs on a GPU) is out of a CPU's reach; this study
measures the curve a CPU can reach instead. For each point (R, F, steps) on one face
set (`prepare_faces` output, shared read-only by every point): train the UBM on the
pristine training crops, extract maps of a fixed subset of the training crops and of
every val and test crop, train the known-attack detectors on them, and record the
UBM's validation bits/dim, its training FLOPs (`pixelcnn_pp.flops`), its wall time and
the detectors' val and test AUC. Each point is a work directory of its own
(`<out>/<point>/`) whose stages skip finished work, so an interrupted study resumes.

Only the UBM's size and length change between points; the learning-rate schedule is
the config's, and the Polyak average spans a tenth of each run (`ema_decay = 1 - 10 /
steps`), so a short run is not judged by weights still near their initial values.
"""

from __future__ import annotations

import dataclasses
import os
import re

from experiments.configs.base import ExperimentConfig
from pixelcnn_pp import flops

_POINT = re.compile(r"^r(\d+)f(\d+)s(\d+)$")


@dataclasses.dataclass(frozen=True)
class ScalingPoint:
    """One UBM of the study: `nr_resnet` R, `nr_filters` F, training `steps`."""

    nr_resnet: int
    nr_filters: int
    steps: int

    @property
    def name(self) -> str:
        return f"r{self.nr_resnet}f{self.nr_filters}s{self.steps}"

    @classmethod
    def parse(cls, name: str) -> ScalingPoint:
        """`r1f32s1000` -> R=1, F=32, 1000 steps.

        Raises:
          ValueError: not of the form r<R>f<F>s<steps> with positive numbers.
        """
        match = _POINT.match(name.strip().lower())
        if not match or min(int(g) for g in match.groups()) < 1:
            raise ValueError(
                f"UBM point {name!r} is not r<R>f<F>s<steps> with positive numbers "
                "(e.g. r1f32s1000: R=1, F=32, 1,000 steps)."
            )
        return cls(*(int(g) for g in match.groups()))


def point_config(base: ExperimentConfig, point: ScalingPoint) -> ExperimentConfig:
    """`base` with the point's UBM: R, F, steps; evaluated once, at the end."""
    ubm = dataclasses.replace(
        base.ubm,
        nr_resnet=point.nr_resnet,
        nr_filters=point.nr_filters,
        max_steps=point.steps,
        ema_decay=max(0.0, 1.0 - 10.0 / point.steps),
        eval_every_steps=point.steps,
        checkpoint_every_steps=min(250, point.steps),
    )
    return dataclasses.replace(base, ubm=ubm)


def training_flops(config: ExperimentConfig) -> float:
    """FLOPs of the UBM's training: 3 forward passes' worth per image (forward and
    backward), batch x steps images."""
    ubm = config.ubm
    forward = flops.pixelcnn_pp_forward_flops(
        ubm.nr_resnet, ubm.nr_filters, ubm.nr_logistic_mix, ubm.image_size, ubm.image_size
    )
    return 3.0 * forward * ubm.batch_size * ubm.max_steps


def point_dir(out_dir: str, point: ScalingPoint) -> str:
    """The work directory of one point."""
    return os.path.join(out_dir, point.name)
