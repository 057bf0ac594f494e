"""Floating-point operation counts of the PixelCNN++ forward pass.

Two independent counts of the multiply-adds (2 FLOPs each) of convolutions, transposed
convolutions and 1x1 ("nin") layers, the layers that dominate the cost:

* `pixelcnn_pp_forward_flops` counts them from the architecture (Salimans et al.,
  ICLR 2017; layer shapes of the reference openai/pixel-cnn `model_spec`): a conv with
  a kH x kW kernel from Cin to Cout channels on an Hout x Wout output costs
  `2 * kH * kW * Cin * Cout * Hout * Wout`; a transposed conv the same with its
  (smaller) input's H x W; a nin layer `2 * Cin * Cout * H * W`.
* `graph_forward_flops` counts them from the shapes of the Conv2D,
  Conv2DBackpropInput, MatMul, BatchMatMul and Einsum ops in the traced graph of any
  Keras model.

Element-wise work (activations, the weight-norm, the likelihood) is left out of both,
so FLOP/s figures derived from them are the usual "model FLOPs" utilisation.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _conv(kh: int, kw: int, cin: int, cout: int, h: int, w: int) -> int:
    return 2 * kh * kw * cin * cout * h * w


def pixelcnn_pp_forward_flops(
    nr_resnet: int, nr_filters: int, nr_logistic_mix: int, height: int, width: int
) -> int:
    """Multiply-add FLOPs of one PixelCNN++ forward pass on one RGB image.

    Args:
      nr_resnet: R.
      nr_filters: F.
      nr_logistic_mix: M.
      height, width: image size (divisible by 4).

    Returns:
      FLOPs per image (conv, transposed conv and nin layers; 2 per multiply-add).
    """
    if height % 4 or width % 4:
        raise ValueError(f"Image size must be divisible by 4, got {height}x{width}.")
    r, f = nr_resnet, nr_filters
    cin = 4  # RGB plus the channel of ones
    total = 0
    hw = height * width
    # Stream inputs: u from a 2x3 conv; ul from a 1x3 and a 2x1 conv.
    total += _conv(2, 3, cin, f, height, width)
    total += _conv(1, 3, cin, f, height, width) + _conv(2, 1, cin, f, height, width)

    def u_block(npix: int, aux_channels: int) -> int:
        # conv(concat_elu(x): 2F -> F), [nin(concat_elu(a): 2Ca -> F)], conv(2F -> 2F).
        flops = 2 * 6 * 2 * f * f * npix + 2 * 6 * 2 * f * 2 * f * npix
        return flops + (2 * 2 * aux_channels * f * npix if aux_channels else 0)

    def ul_block(npix: int, aux_channels: int) -> int:
        flops = 2 * 4 * 2 * f * f * npix + 2 * 4 * 2 * f * 2 * f * npix
        return flops + 2 * 2 * aux_channels * f * npix

    sizes = [hw, hw // 4, hw // 16]
    # Up pass: u blocks without aux input; ul blocks with a = u (F channels).
    for level, npix in enumerate(sizes):
        total += r * (u_block(npix, 0) + ul_block(npix, f))
        if level < 2:  # stride-2 convs, output at the next resolution
            total += 2 * 6 * f * f * sizes[level + 1] + 2 * 4 * f * f * sizes[level + 1]
    # Down pass: u takes a = popped u (F); ul takes a = concat(u, popped ul) (2F).
    for level, npix in enumerate(reversed(sizes)):
        if level > 0:  # stride-2 transposed convs, cost on their input resolution
            coarse = sizes[len(sizes) - level]
            total += 2 * 6 * f * f * coarse + 2 * 4 * f * f * coarse
        n = r if level == 0 else r + 1
        total += n * (u_block(npix, f) + ul_block(npix, 2 * f))
    # Output nin on elu(ul): F -> 10M.
    total += 2 * f * 10 * nr_logistic_mix * hw
    return int(total)


def _dims(tensor: tf.Tensor) -> list[int]:
    shape = tensor.shape
    if shape.rank is None or any(d is None for d in shape):
        raise ValueError(f"FLOP counting needs static shapes, got {shape} for {tensor.name}.")
    return [int(d) for d in shape]


def _einsum_flops(equation: str, inputs: list[tf.Tensor]) -> int:
    lhs = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for labels, tensor in zip(lhs, inputs, strict=True):
        for label, dim in zip(labels, _dims(tensor), strict=False):
            sizes[label] = dim
    return 2 * int(np.prod(list(sizes.values())))


def _op_flops(op: tf.Operation) -> int:
    kind = op.type
    if kind in ("Conv2D", "DepthwiseConv2dNative"):
        kh, kw, cin, cout = _dims(op.inputs[1])
        if kind == "DepthwiseConv2dNative":
            cout = 1
        b, h, w, _ = _dims(op.outputs[0])
        return 2 * kh * kw * cin * cout * b * h * w
    if kind == "Conv2DBackpropInput":  # a transposed conv: cost on its input side
        kh, kw, cout, cin = _dims(op.inputs[1])
        b, h, w, _ = _dims(op.inputs[2])
        return 2 * kh * kw * cin * cout * b * h * w
    if kind == "MatMul":
        a, bmat = _dims(op.inputs[0]), _dims(op.inputs[1])
        m, k = (a[1], a[0]) if op.get_attr("transpose_a") else (a[0], a[1])
        n = bmat[0] if op.get_attr("transpose_b") else bmat[1]
        return 2 * m * k * n
    if kind in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        out = _dims(op.outputs[0])
        a = _dims(op.inputs[0])
        k = a[-2] if op.get_attr("adj_x") else a[-1]
        return 2 * int(np.prod(out)) * k
    if kind == "Einsum":
        return _einsum_flops(op.get_attr("equation").decode(), list(op.inputs))
    return 0


def graph_forward_flops(model: keras.Model, input_shape: tuple[int, ...]) -> int:
    """Multiply-add FLOPs of `model(x, training=False)` counted from its traced graph.

    Args:
      model: a (built or unbuilt) Keras model taking one float32 tensor.
      input_shape: the full static input shape, e.g. (1, 64, 64, 3).

    Returns:
      FLOPs of the Conv2D / transposed-conv / MatMul / Einsum ops of one call.
    """

    @tf.function
    def forward(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    graph = forward.get_concrete_function(tf.TensorSpec(input_shape, tf.float32)).graph
    return int(sum(_op_flops(op) for op in _all_ops(graph)))


def _all_ops(graph: tf.Graph):
    """The graph's ops, descending into nested functions (e.g. inner tf.functions)."""
    yield from graph.get_operations()
    for function in getattr(graph, "_functions", {}).values():
        inner = getattr(function, "graph", None)
        if inner is not None:
            yield from _all_ops(inner)


def describe_flops(flops: float) -> str:
    """A short human form, e.g. '12.3 GFLOP'."""
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.0f} FLOP"
