"""FLOP counts of the PixelCNN++ forward pass: architecture formula vs traced graph."""

from __future__ import annotations

import pytest

from pixelcnn_pp import flops
from pixelcnn_pp.model import PixelCNNpp


@pytest.mark.parametrize(
    "nr_resnet, nr_filters, nr_logistic_mix, size, batch",
    [(1, 8, 2, 16, 2), pytest.param(2, 12, 10, 32, 1, marks=pytest.mark.slow)],
)
def test_graph_count_equals_architecture_formula(
    nr_resnet, nr_filters, nr_logistic_mix, size, batch
):
    model = PixelCNNpp(nr_resnet, nr_filters, nr_logistic_mix, dropout_rate=0.0)
    counted = flops.graph_forward_flops(model, (batch, size, size, 3))
    formula = flops.pixelcnn_pp_forward_flops(nr_resnet, nr_filters, nr_logistic_mix, size, size)
    assert counted == batch * formula


def test_formula_scales_and_checks_size():
    small = flops.pixelcnn_pp_forward_flops(1, 32, 10, 64, 64)
    # Doubling F roughly quadruples the F^2 terms; doubling H and W exactly quadruples.
    assert flops.pixelcnn_pp_forward_flops(1, 32, 10, 128, 128) == 4 * small
    assert 3.5 * small < flops.pixelcnn_pp_forward_flops(1, 64, 10, 64, 64) < 4 * small
    # The paper's UBM (R=5, F=160, M=10) on 64x64 crops: about 195 GFLOP per image.
    assert flops.pixelcnn_pp_forward_flops(5, 160, 10, 64, 64) == pytest.approx(1.95e11, rel=0.01)
    with pytest.raises(ValueError, match="divisible by 4"):
        flops.pixelcnn_pp_forward_flops(1, 8, 2, 18, 16)
    assert flops.describe_flops(2.5e9) == "2.5 GFLOP"
