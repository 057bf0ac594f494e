"""The bfloat16-convolution mode of the UBM (`layers.matmul_precision("bfloat16")`):
same variables as float32, float32 output, close maps, causal, trainable; the float32
default untouched; `compare_precisions` compares one checkpoint; the bf16 peak, set by
the ISA of the convolutions' oneDNN kernels, read from oneDNN's verbose log.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from data_prep import files
from pixelcnn_pp import benchmark, conv_isa, likelihood, run_folder, training
from pixelcnn_pp import layers as L
from pixelcnn_pp.config import UBMConfig, validate_config
from pixelcnn_pp.distributions import discretized_mix_logistic_loss, pixel_log_likelihood
from pixelcnn_pp.ema import PolyakAverage
from pixelcnn_pp.model import PixelCNNpp

TINY = UBMConfig(nr_resnet=1, nr_filters=8, nr_logistic_mix=3, image_size=8)


def _pair(x: tf.Tensor, fused_kernels: bool = True) -> tuple[PixelCNNpp, PixelCNNpp]:
    """A float32 model (data-dependent init on x) and a bfloat16-matmul copy of it."""
    keras.utils.set_random_seed(3)
    config = dict(nr_resnet=1, nr_filters=8, nr_logistic_mix=3, dropout_rate=0.5)
    m32 = PixelCNNpp(**config, fused_kernels=fused_kernels)
    m32.data_dependent_init(x)
    with L.matmul_precision("bfloat16"):
        m16 = PixelCNNpp(**config, fused_kernels=fused_kernels)
    m16(x[:1])
    for a, b in zip(m16.weights, m32.weights, strict=True):
        a.assign(b)
    return m32, m16


def _images(rng, n: int = 2, size: int = 8) -> tf.Tensor:
    return tf.constant(rng.integers(0, 256, (n, size, size, 3)).astype(np.float32) / 127.5 - 1)


@pytest.mark.parametrize("fused_kernels", [True, False])
def test_bf16_matmuls_keep_the_variables_and_give_close_float32_maps(rng, fused_kernels):
    x = _images(rng)
    m32, m16 = _pair(x, fused_kernels)
    assert L.default_matmul_dtype() == "float32" and m32.matmul_dtype == "float32"
    assert m16.matmul_dtype == "bfloat16"
    assert [(w.path, w.shape) for w in m16.weights] == [(w.path, w.shape) for w in m32.weights]
    assert all(w.dtype == "float32" for w in m16.weights)
    # Only the gated resnets' matmuls and the stride-2 convs compute in bfloat16.
    assert m16.up0_u0.conv1.compute_dtype == "bfloat16"
    assert m16.up0_u_down.compute_dtype == "bfloat16"
    assert m16.u_in.compute_dtype == "float32" and m16.out_nin.compute_dtype == "float32"
    assert m32.up0_u0.conv1.compute_dtype == "float32"
    p32, p16 = m32(x, training=False), m16(x, training=False)
    assert p16.dtype == tf.float32
    l32, l16 = pixel_log_likelihood(x, p32).numpy(), pixel_log_likelihood(x, p16).numpy()
    diff = np.abs(l16 - l32)
    assert 0 < diff.mean() < 0.05 and diff.max() < 0.5, (diff.mean(), diff.max())


@pytest.mark.parametrize("fused_kernels", [True, False])
def test_bf16_matmul_model_is_causal(rng, fused_kernels):
    x = _images(rng, n=1)
    _, m16 = _pair(x, fused_kernels)
    base = m16(x, training=False).numpy()
    changed = x.numpy().copy()
    changed[0, 5, 3] = -changed[0, 5, 3]  # pixel (5, 3) in raster order
    out = m16(tf.constant(changed), training=False).numpy()
    moved = np.any(out != base, axis=-1)[0]
    flat = moved.reshape(-1)
    assert not flat[: 5 * 8 + 3 + 1].any()  # no pixel up to and including (5, 3) moved
    assert flat[5 * 8 + 4 :].any()


@pytest.mark.parametrize("fused_kernels", [True, False])
def test_bf16_matmul_model_trains_with_finite_gradients_for_every_weight(rng, fused_kernels):
    x = _images(rng)
    _, m16 = _pair(x, fused_kernels)
    with tf.GradientTape() as tape:
        loss = discretized_mix_logistic_loss(x, m16(x, training=True))
    grads = tape.gradient(loss, m16.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    assert all(g.dtype == tf.float32 for g in grads)


def test_unknown_matmul_precision_is_refused():
    with (
        pytest.raises(ValueError, match="Unknown matmul precision 'fp8'"),
        L.matmul_precision("fp8"),
    ):
        pass
    with pytest.raises(ValueError, match="Unknown matmul precision"):
        PixelCNNpp(nr_resnet=1, nr_filters=8, nr_logistic_mix=3, matmul_dtype="int8")


def _write_ubm_with_two_checkpoints(ubm_dir: str) -> tuple[str, str]:
    """A train_ubm-like folder whose two checkpoints hold different EMA weights."""
    model = run_folder.build_model(TINY)
    ema = PolyakAverage(model.trainable_variables, TINY.ema_decay)
    holder = run_folder.model_variables_tracker(model)
    checkpoint = tf.train.Checkpoint(model=holder, ema=ema)
    prefix = os.path.join(run_folder.checkpoint_dir(ubm_dir), "ckpt")
    first = checkpoint.save(prefix)
    for shadow in ema.shadows:
        shadow.assign(shadow * 1.5 + 0.01)
    second = checkpoint.save(prefix)
    files.write_json_atomically(run_folder.config_path(ubm_dir), {"ubm": dataclasses.asdict(TINY)})
    return first, second


@pytest.mark.slow
def test_compare_precisions_compares_maps_of_one_checkpoint(tmp_path, rng, monkeypatch):
    ubm_dir = str(tmp_path / "ubm")
    first, second = _write_ubm_with_two_checkpoints(ubm_dir)
    images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    m1, m2 = likelihood.load_ubm(ubm_dir, first), likelihood.load_ubm(ubm_dir, second)
    gap = np.abs(
        likelihood.likelihood_maps(m1, images)[0] - likelihood.likelihood_maps(m2, images)[0]
    )
    # As while train_ubm runs: the latest checkpoint changes after the first look-up.
    answers = iter([first, second, second])
    monkeypatch.setattr(likelihood, "latest_checkpoint", lambda run_dir: next(answers))
    result = likelihood.compare_precisions(
        ubm_dir, images, "float32", batch_size=4, matmul_dtype="bfloat16"
    )
    assert result["checkpoint"] == first and result["matmul_dtype"] == "bfloat16"
    assert 0 < result["mean_abs_diff_nats"] < 0.05
    assert gap.mean() > 10 * result["mean_abs_diff_nats"]


def test_bf16_peak_uses_the_matrix_units(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    monkeypatch.setattr(benchmark, "_cpu_cores", lambda: 2)
    flags_ = {"avx512f", "amx_bf16", "avx512_bf16"}
    monkeypatch.setattr(benchmark, "_cpu_flags_and_mhz", lambda: (flags_, 2000.0, "test"))
    fp32, _ = benchmark.device_peak("float32")
    amx, why = benchmark.device_peak("float32", "bfloat16")
    assert fp32 == pytest.approx(2 * 2.0 * 16 * 2 * 2)
    assert amx == pytest.approx(2 * 2.0 * 1024) and "AMX" in why
    assert benchmark.device_peak("mixed_bfloat16")[0] == pytest.approx(amx)
    flags_.discard("amx_bf16")
    assert benchmark.device_peak("float32", "bfloat16")[0] == pytest.approx(2 * 2.0 * 128)
    flags_.discard("avx512_bf16")
    assert benchmark.device_peak("float32", "bfloat16")[0] == pytest.approx(fp32)


# oneDNN verbose lines as TensorFlow 2.21 (oneDNN 3.7) prints them, and in the older
# form without the "v1,primitive" fields.
_AMX_INFO = (
    "onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with float16, Intel DL Boost and "
    "bfloat16 support and Intel AMX with bfloat16 and 8-bit integer support"
)
_CONV = (
    "onednn_verbose,v1,primitive,exec,cpu,convolution,{impl},{prop},src:{dt}::blocked:acdb::f0 "
    "wei:{dt}:a:blocked:Acdb16a::f0 bia:undef::undef::: dst:{dt}::blocked:acdb::f0,"
    "attr-scratchpad:user,alg:convolution_direct,mb8_ic64oc32_ih65oh64kh2_iw66ow64kw3,0.5"
)
_GEMM = (
    "onednn_verbose,v1,primitive,exec,cpu,gemm_api,,undef,src_f32::blocked:ab:f0 "
    "wei_f32::blocked:ab:f0 dst_f32::blocked:ab:f0,,,256x32:32x288,0.06"
)


def test_conv_isa_is_read_from_onednn_verbose_lines():
    amx = [
        _AMX_INFO,
        "onednn_verbose,v1,primitive,info,template:operation,engine,primitive,implementation",
        _CONV.format(impl="brg_conv_fwd:avx512_core_amx", prop="forward_training", dt="bf16"),
        _CONV.format(
            impl="brg_conv_bwd:avx512_core_amx+brg_conv_fwd:avx512_core_amx",
            prop="backward_data",
            dt="bf16",
        ),
        "2026-01-01 some other output",
    ]
    found = conv_isa.parse_verbose(amx)
    assert found["conv_isa"] == "avx512_core_amx"
    assert found["onednn_max_isa"] == "avx512_core_amx"
    assert "forward_training: brg_conv_fwd:avx512_core_amx (bf16)" in found["conv_kernels"]
    assert "backward_data: brg_conv_bwd:avx512_core_amx" in found["conv_kernels"]
    # AVX512-BF16 without AMX (older line form), and float32 on AVX-512.
    bf16 = [
        "onednn_verbose,info,cpu,isa:Intel AVX-512 with Intel DL Boost and bfloat16 support",
        "onednn_verbose,exec,cpu,convolution,jit:avx512_core_bf16,forward_inference,"
        "src_bf16::blocked:aBcd16b:f0 wei_bf16::blocked:ABcd8b16a2b:f0,,mb8,0.2",
    ]
    assert conv_isa.parse_verbose(bf16)["conv_isa"] == "avx512_core_bf16"
    # A whole model: the most frequent forward kernel counts, not the input layer's.
    fp32 = [
        "onednn_verbose,v1,info,cpu,isa:Intel AVX2",
        _CONV.format(impl="x64:gemm:jit", prop="forward_training", dt="f32"),
        *[_CONV.format(impl="brg_conv_fwd:avx2", prop="forward_training", dt="f32")] * 3,
    ]
    found = conv_isa.parse_verbose(fp32)
    assert found["conv_isa"] == "avx2"
    assert found["conv_kernels"] == "forward_training: brg_conv_fwd:avx2 (f32), x64:gemm:jit (f32)"
    assert conv_isa.parse_verbose(fp32[:2])["conv_isa"] == "avx2"  # gemm: sgemm's ISA
    # TensorFlow's oneDNN operations off (or bf16 without AVX-512): Eigen convolutions,
    # their products through oneDNN's float32 sgemm at the CPU's vector ISA.
    eigen = conv_isa.parse_verbose(["onednn_verbose,v1,info,cpu,isa:Intel AVX2", _GEMM, _GEMM])
    assert eigen["conv_isa"] == "avx2" and eigen["onednn_max_isa"] == "avx2"
    assert eigen["conv_kernels"] == "eigen convolution (oneDNN gemm_api f32)"
    eigen_on_amx = conv_isa.parse_verbose([_AMX_INFO, _GEMM])
    assert eigen_on_amx["conv_isa"] == "avx512_core"
    reference = [_CONV.format(impl="ref:any", prop="forward_training", dt="f32")]
    assert conv_isa.parse_verbose(reference)["conv_isa"] is None
    nothing = conv_isa.parse_verbose(["no oneDNN here"])
    assert nothing == {
        "conv_isa": None,
        "conv_kernels": "no oneDNN kernel ran",
        "onednn_max_isa": None,
    }


def test_onednn_isa_names_from_implementations_and_descriptions():
    assert conv_isa.isa_of_implementation("jit_1x1:avx512_core") == "avx512_core"
    assert conv_isa.isa_of_implementation("brg_conv_fwd:avx2") == "avx2"
    assert conv_isa.isa_of_implementation("gemm:jit") is None
    assert conv_isa.isa_of_implementation("jit:uni") is None
    described = {
        "Intel AVX2": "avx2",
        "Intel AVX2 with Intel DL Boost": "avx2_vnni",
        "Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions": "avx512_core",
        "Intel AVX-512 with Intel DL Boost": "avx512_core_vnni",
        "Intel AVX-512 with Intel DL Boost and bfloat16 support": "avx512_core_bf16",
        "Intel AVX-512 with float16 and Intel DL Boost and bfloat16": "avx512_core_fp16",
        "Intel SSE4.1": "sse41",
    }
    for text, isa in described.items():
        assert conv_isa.isa_from_description(text) == isa, text
    assert conv_isa.vector_isa("avx512_core_amx") == "avx512_core"
    assert conv_isa.vector_isa("avx2_vnni") == "avx2"


def test_the_cpu_peak_follows_the_isa_the_convolutions_ran_with(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    monkeypatch.setattr(benchmark, "_cpu_cores", lambda: 2)
    flags_ = {"avx512f", "avx2", "amx_bf16", "avx512_bf16"}
    monkeypatch.setattr(benchmark, "_cpu_flags_and_mhz", lambda: (flags_, 2000.0, "test"))
    amx, why = benchmark.device_peak("float32", "bfloat16", conv_isa="avx512_core_amx")
    assert amx == pytest.approx(2 * 2.0 * 1024) and "avx512_core_amx" in why
    # The CPU has AMX, but the kernels did not use it: no AMX peak.
    bf16 = benchmark.device_peak("float32", "bfloat16", conv_isa="avx512_core_bf16")[0]
    assert bf16 == pytest.approx(2 * 2.0 * 128)
    widened = benchmark.device_peak("float32", "bfloat16", conv_isa="avx512_core")[0]
    assert widened == pytest.approx(2 * 2.0 * 16 * 2 * 2)
    fp32 = benchmark.device_peak("float32", "float32", conv_isa="avx512_core_bf16")[0]
    assert fp32 == pytest.approx(widened)
    avx2, why = benchmark.device_peak("float32", "bfloat16", conv_isa="avx2")
    assert avx2 == pytest.approx(2 * 2.0 * 8 * 2 * 2) and "AMX" not in why


def test_a_training_run_builds_its_model_in_the_configs_matmul_dtype(tmp_path):
    config = UBMConfig(nr_resnet=1, nr_filters=8, nr_logistic_mix=2, image_size=16)
    with pytest.raises(ValueError, match="matmul_dtype"):
        validate_config(dataclasses.replace(config, matmul_dtype="fp8"))
    strategy = tf.distribute.get_strategy()
    for dtype in ("float32", "bfloat16"):
        run = training.build_run(
            dataclasses.replace(config, matmul_dtype=dtype), strategy, str(tmp_path / dtype), 1
        )
        assert run.model.matmul_dtype == dtype
        assert run.model.up0_u0.conv1.compute_dtype == dtype
        assert run.model.up0_u0.conv1.variable_dtype == "float32"


def test_bench_ubm_measures_the_matmul_dtype_it_is_asked_for(tmp_path):
    # The training run inside the benchmark builds its model from the config: the
    # benchmark must put the dtype there (an outer matmul_precision scope is overridden).
    config = benchmark.config_for_benchmark(1, 8, 2, 2, 8, xla=False, mixed_precision="")
    result = benchmark.benchmark_ubm(
        config, steps=1, warmup=1, scratch_dir=str(tmp_path), matmul_dtype="bfloat16"
    )
    assert result["matmul_dtype"] == "bfloat16" and result["conv_compute_dtype"] == "bfloat16"
    assert result["likelihood_images_per_sec"] > 0 and result["train_images_per_sec"] > 0
    # The kernels' ISA, probed in a child process (this process logs nothing of oneDNN).
    assert result["cpu_model"] == benchmark.cpu_model()
    assert isinstance(result["onednn_custom_ops"], bool), result["conv_kernels"]
    assert result["conv_isa"] is not None
    assert result["peak_gflops"] is None or result["conv_isa"] in result["peak_assumptions"]
    assert result["conv_isa"].startswith(("avx", "sse")), result["conv_isa"]
    assert result["conv_kernels"] and result["onednn_max_isa"] is not None
