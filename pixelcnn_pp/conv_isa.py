"""Which CPU instruction set (ISA) oneDNN ran the UBM's convolutions with.

On a CPU, TensorFlow runs a convolution with its oneDNN kernels when its oneDNN custom
operations are on (by default only on CPUs with AVX-512 VNNI, AVX512-BF16 or AMX, or
with ``TF_ENABLE_ONEDNN_OPTS=1``; bfloat16 ones only where oneDNN sees AVX-512), and
otherwise with Eigen, whose matrix products go through oneDNN's ``gemm_api`` (float32
sgemm: bfloat16 operands are widened first). Neither path tells the program which
kernel it picked; oneDNN's verbose log does (``ONEDNN_VERBOSE=1``: one line per
executed primitive, with its implementation, e.g. ``brg_conv_fwd:avx512_core_amx``).

:func:`probe_conv_isa` runs one convolution shaped like the gated resnets' (down-shift
pad, 2x3 VALID conv from 2F to F channels, and its two gradients) in the UBM's compute
dtype, in a child process with that log on, so the benchmark's
own process never logs; :func:`parse_verbose` reads the lines.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable

# Precedes the child's own summary line on its standard output.
_MARKER = "conv_isa_probe:"

# oneDNN's CPU ISA names as they appear after the ':' of an implementation name.
_ISA_PATTERN = re.compile(r"sse41|avx(?:2|512)?(?:_[a-z0-9]+)*")
_SRC_DTYPE = re.compile(r"src[_:]([a-z0-9]+)")


def isa_of_implementation(implementation: str) -> str | None:
    """The ISA of a oneDNN implementation name, or None where it names none.

    ``"brg_conv_fwd:avx512_core_amx"`` -> ``"avx512_core_amx"``; a composite
    ``"brg_conv_bwd:avx2+brg_conv_fwd:avx2"`` -> its first ISA (``"avx2"``);
    ``"gemm:jit"``, ``"ref:any"``, ``"jit:uni"`` -> None.
    """
    for part in implementation.split("+"):
        _, _, isa = part.partition(":")
        if _ISA_PATTERN.fullmatch(isa):
            return isa
    return None


def isa_from_description(text: str) -> str | None:
    """oneDNN's ISA name for its ``isa:`` info text (the most it will use on this CPU).

    ``"Intel AVX2"`` -> ``"avx2"``; ``"Intel AVX-512 with Intel DL Boost and bfloat16
    support"`` -> ``"avx512_core_bf16"``; any text naming AMX -> ``"avx512_core_amx"``.
    """
    low = text.lower()
    # "\bfloat16" is float16 (FP16) alone: inside "bfloat16" it has no word boundary.
    fp16 = re.search(r"\bfloat16", low) is not None
    bf16, vnni = "bfloat16" in low, "dl boost" in low
    if "amx" in low:
        return "avx512_core_amx"
    if "avx-512" in low or "avx512" in low:
        if fp16:
            return "avx512_core_fp16"
        return "avx512_core_bf16" if bf16 else "avx512_core_vnni" if vnni else "avx512_core"
    if "avx2" in low:
        return "avx2_vnni_2" if bf16 else "avx2_vnni" if vnni else "avx2"
    if "avx" in low:
        return "avx"
    return "sse41" if "sse4.1" in low else None


def vector_isa(isa: str | None) -> str | None:
    """The float32 vector ISA of an ISA's family: what oneDNN's sgemm runs with.

    ``"avx512_core_amx"`` -> ``"avx512_core"``, ``"avx2_vnni"`` -> ``"avx2"``.
    """
    if isa is None:
        return None
    for family in ("avx512_core", "avx2", "avx"):
        if isa.startswith(family):
            return family
    return isa


def parse_verbose(lines: Iterable[str]) -> dict:
    """The convolutions' kernels named in oneDNN verbose lines.

    Args:
      lines: standard output of a process run with ``ONEDNN_VERBOSE=1`` (other lines
        are skipped); both the ``onednn_verbose,v1,primitive,exec,...`` form of oneDNN
        3.x and the older ``onednn_verbose,exec,...`` / ``dnnl_verbose,...`` forms.

    Returns:
      ``conv_isa``: the ISA of the forward convolutions' most frequent kernel (in a
      whole model, the 3-channel input layer may get another); where that is a
      ``gemm``-based convolution or Eigen ran (no convolution primitive, only
      ``gemm_api`` calls), the vector ISA of oneDNN's sgemm on this CPU (None when
      nothing of oneDNN ran or the kernel is a reference one). ``conv_kernels``: per
      propagation kind, its implementations with their source data type, most
      frequent first, as one string.
      ``onednn_max_isa``: the most oneDNN would use here (None if the log has no
      ``isa:`` line).
    """
    max_isa = None
    # propagation kind -> how often each (implementation, source dtype) ran
    kernels: dict[str, Counter[tuple[str, str]]] = {}
    gemm_dtypes: list[str] = []
    for line in lines:
        if not line.startswith(("onednn_verbose", "dnnl_verbose")):
            continue
        fields = line.strip().split(",")
        if "info" in fields[:4]:
            # The description runs to the end of the line and may itself hold commas.
            _, isa_tag, description = line.strip().partition(",isa:")
            if isa_tag:
                max_isa = isa_from_description(description)
            continue
        if "exec" not in fields:
            continue
        at = fields.index("exec")
        # exec, engine, primitive kind, implementation, propagation kind, memory descriptors
        kind, impl, prop, descriptors = (fields[at + 2 : at + 6] + ["", "", "", ""])[:4]
        found = _SRC_DTYPE.search(descriptors)
        dtype = found.group(1) if found else "?"
        if kind == "gemm_api":
            if dtype not in gemm_dtypes:
                gemm_dtypes.append(dtype)
        elif kind == "convolution":
            kernels.setdefault(prop, Counter())[(impl, dtype)] += 1
    forward = sum((n for k, n in kernels.items() if k.startswith("forward")), Counter())
    if forward:
        impl = forward.most_common(1)[0][0][0]
        conv_isa = isa_of_implementation(impl)
        if conv_isa is None and "gemm" in impl:  # "gemm:jit", "x64:gemm:jit"
            conv_isa = vector_isa(max_isa)
    elif gemm_dtypes:  # Eigen's convolution, its products through oneDNN's sgemm
        conv_isa = vector_isa(max_isa) if gemm_dtypes == ["f32"] else max_isa
    else:
        conv_isa = None
    described = [
        f"{name}: " + ", ".join(f"{impl} ({dtype})" for (impl, dtype), _ in ran.most_common())
        for name, ran in kernels.items()
    ]
    if not forward:
        eigen = f"eigen convolution (oneDNN gemm_api {'/'.join(gemm_dtypes)})"
        described.insert(0, eigen if gemm_dtypes else "no oneDNN kernel ran")
    return {
        "conv_isa": conv_isa,
        "conv_kernels": "; ".join(described),
        "onednn_max_isa": max_isa,
    }


def not_probed(reason: str) -> dict:
    """The keys of :func:`probe_conv_isa` where no probe ran (``conv_kernels``: why)."""
    return {
        "conv_isa": None,
        "conv_kernels": reason,
        "onednn_max_isa": None,
        "onednn_custom_ops": None,
    }


def probe_conv_isa(
    compute_dtype: str, batch: int, image_size: int, nr_filters: int, timeout: float = 300.0
) -> dict:
    """Runs the probe convolution in a child process and reads its oneDNN log.

    The child inherits this process's environment (``TF_ENABLE_ONEDNN_OPTS`` and the
    rest), so TensorFlow makes the same kernel choices as here; only
    ``ONEDNN_VERBOSE=1`` is added, and no GPU is used.

    Args:
      compute_dtype: the dtype the convolutions compute in ("float32", "bfloat16", ...).
      batch, image_size, nr_filters: the shape: input [batch, image_size, image_size,
        2 * nr_filters], kernel [2, 3, 2 * nr_filters, nr_filters].
      timeout: seconds the child may take.

    Returns:
      :func:`parse_verbose`'s keys and ``onednn_custom_ops`` (whether TensorFlow's
      oneDNN operations were on), or :func:`not_probed`'s when the child failed.
    """
    args = (compute_dtype, int(batch), int(image_size), int(nr_filters))
    code = f"from pixelcnn_pp import conv_isa; conv_isa._probe_in_this_process(*{args!r})"
    env = dict(os.environ, ONEDNN_VERBOSE="1", CUDA_VISIBLE_DEVICES="-1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return not_probed(f"probe failed: {type(err).__name__}")
    lines = done.stdout.splitlines()
    summaries = [line[len(_MARKER) :] for line in lines if line.startswith(_MARKER)]
    if done.returncode != 0 or not summaries:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return not_probed(f"probe failed (exit {done.returncode}): {tail}")
    return {**parse_verbose(lines), **json.loads(summaries[-1])}


def _probe_in_this_process(dtype: str, batch: int, size: int, filters: int) -> None:
    """The child's side: one gated-resnet-like conv step, then a summary line."""
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port  # TensorFlow's own build query

    channels = 2 * filters  # a gated resnet's conv reads concat_elu: 2F channels
    x = tf.cast(tf.random.stateless_normal([batch, size, size, channels], (1, 2)), dtype)
    kernel = tf.cast(tf.random.stateless_normal([2, 3, channels, filters], (3, 4)), dtype)

    @tf.function
    def step(x: tf.Tensor, kernel: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            # The down-shifted conv as the UBM writes it: a separate pad, a VALID conv.
            padded = tf.pad(x, [[0, 0], [1, 0], [1, 1], [0, 0]])
            y = tf.nn.conv2d(padded, kernel, strides=1, padding="VALID")
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        # The loss is returned too: else the forward conv, which no gradient of a sum
        # needs, would be pruned from the graph.
        return [loss, *tape.gradient(loss, [x, kernel])]

    [t.numpy() for t in step(x, kernel)]
    summary = {"onednn_custom_ops": bool(_pywrap_util_port.IsMklEnabled())}
    sys.stdout.flush()
    print(_MARKER + json.dumps(summary), flush=True)
