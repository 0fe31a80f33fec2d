"""PyTorch -> ONNX for a :class:`PoseEstimator`: export, bundle metadata, latency and INT8 quantisation.

What is exported is the plain forward: inputs (N, 3, h, w) float32, normalised, named
``"inputs"`` with a dynamic batch axis -> one output per key of the model's outputs
(the codec's target keys first, e.g. ``simcc_x`` (N, K, Wx), ``simcc_y`` (N, K, Wy); or
``heatmaps`` (N, K, H, W)). Flip test is left to the runtime (it runs the mirrored batch),
so one network serves both settings. A one-stage model (``model.task == "onestage"``) exports
exactly its codec's ``output_keys``, the dense outputs over all A anchors, in model-input
pixels: ``obj_logits`` (N, A), ``boxes`` (N, A, 4), ``keypoints`` (N, A, K, 2), ``vis_logits``
(N, A, K); the input size stays fixed (the anchors are baked in), the batch is dynamic.

:func:`export_onnx` uses ``torch.onnx.export(dynamo=True)`` with ``dynamic_shapes`` and falls
back to the TorchScript exporter when that fails (recording why).
:func:`posecore.export.parity.check_parity` compares ONNX Runtime with PyTorch on real inputs,
output by output and after decoding both with the model's codec. :func:`quantize` writes an
INT8 copy with ``onnxruntime.quantization``.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import Tensor, nn

from posecore.data.cache import codec_config
from posecore.export.bundle import INPUT_NAME, METADATA_KEY, BundleInfo, bundle_meta_fields
from posecore.metainfo import DatasetMeta
from posecore.models.estimator import PoseEstimator

Exporter = Literal["dynamo", "torchscript"]
TORCHSCRIPT_MAX_OPSET = 20


class _OutputsAsTuple(nn.Module):
    """The estimator with its output dict as a tuple in a fixed key order (ONNX outputs are positional)."""

    def __init__(self, model: nn.Module, keys: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.keys = tuple(keys)

    def forward(self, inputs: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(inputs)
        return tuple(outputs[k] for k in self.keys)


def example_inputs(model: PoseEstimator, batch: int = 2, seed: int = 0) -> Tensor:
    """(batch, 3, h, w) normal noise at the model's input size (batch >= 2: batch 1 would be specialised)."""
    w, h = model.spec.input_size
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def output_names(model: PoseEstimator) -> list[str]:
    """The model's output keys, the codec's target keys first, in the order the ONNX outputs take.

    One-stage: the codec's ``output_keys`` alone (what its ``decode`` reads); raises ValueError
    when the head does not produce one of them.
    """
    keys = list(model.eval()(example_inputs(model)).keys())
    if model.task == "onestage":
        wanted = list(model.codec.output_keys)  # type: ignore[attr-defined]
        missing = [k for k in wanted if k not in keys]
        if missing:
            raise ValueError(f"the one-stage head's outputs {keys} lack the codec's output keys {missing}")
        return wanted
    first = [k for k in model.codec.target_keys if k in keys]
    return first + [k for k in keys if k not in first]


@dataclass(frozen=True)
class ExportedOnnx:
    """An exported model file; ``fallback_reason`` says why dynamo was not used (None when it was or was not asked)."""

    path: Path
    exporter: Exporter
    seconds: float
    opset: int
    outputs: tuple[str, ...]
    fallback_reason: str | None = None


def export_onnx(model: PoseEstimator, path: str | Path, *, opset: int = 20, dynamo: bool = True) -> ExportedOnnx:
    """Write ``model``'s plain forward to ``path`` (one self-contained file, dynamic batch axis)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    names = output_names(model)
    wrapper = _OutputsAsTuple(model, names).eval()
    example = example_inputs(model)
    reason = None
    if dynamo:
        start = time.perf_counter()
        try:
            with _quiet():
                torch.onnx.export(
                    wrapper,
                    (example,),
                    str(path),
                    input_names=[INPUT_NAME],
                    output_names=names,
                    opset_version=opset,
                    dynamo=True,
                    dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch")}},
                    external_data=False,
                    verbose=False,
                )
            onnx.checker.check_model(str(path))
            return ExportedOnnx(path, "dynamo", time.perf_counter() - start, opset, tuple(names))
        except Exception as exc:  # any exporter failure: try the other exporter, and say why
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:500]
            warnings.warn(f"dynamo ONNX export failed ({reason}); using the TorchScript exporter", stacklevel=2)
            for leftover in (path, path.with_name(path.name + ".data")):
                leftover.unlink(missing_ok=True)
    ts_opset = min(opset, TORCHSCRIPT_MAX_OPSET)
    start = time.perf_counter()
    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, and tracer warnings are expected
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=names,
            opset_version=ts_opset,
            dynamo=False,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{k: {0: "batch"} for k in names}},
        )
    onnx.checker.check_model(str(path))
    return ExportedOnnx(path, "torchscript", time.perf_counter() - start, ts_opset, tuple(names), reason)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The dynamo exporter prints its progress to stdout; keep stage output to what the stage says."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def make_bundle_info(
    model: PoseEstimator,
    meta: DatasetMeta,
    *,
    outputs: Sequence[str],
    bbox_padding: float,
    flip_test: bool,
    quantization: str = "none",
    provenance: Mapping[str, Any] | None = None,
) -> BundleInfo:
    """The ``bundle.json`` of ``model`` trained on ``meta`` (see :mod:`posecore.export.bundle`)."""
    from posecore.export.bundle import INT8_MODEL_FILE

    return BundleInfo(
        **bundle_meta_fields(meta),
        input_size=tuple(model.spec.input_size),
        mean=tuple(float(v) for v in model.mean),
        std=tuple(float(v) for v in model.std),
        codec=codec_config(model.codec),
        outputs=tuple(outputs),
        bbox_padding=float(bbox_padding),
        flip_test=bool(flip_test),
        shift_heatmap=bool(model.spec.shift_heatmap),
        int8_model_file=None if quantization == "none" else INT8_MODEL_FILE,
        quantization=quantization,
        provenance=dict(provenance or {}),
        task=model.codec.task,
    )


def embed_metadata(path: str | Path, info: BundleInfo) -> None:
    """Store ``bundle.json`` in the ONNX file as metadata ``posecore.bundle`` (replacing an older value)."""
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=info.to_json(indent=None))
    onnx.save(model, str(path))


def read_metadata(path: str | Path) -> BundleInfo:
    """The :class:`BundleInfo` embedded in an ONNX file by :func:`embed_metadata`."""
    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return BundleInfo.from_json(prop.value)
    raise ValueError(f"{path} carries no {METADATA_KEY!r} metadata: it was not written by posecore's export")


# --------------------------------------------------------------------------- running


def ort_session(path: str | Path, threads: int = 0) -> ort.InferenceSession:
    """A CPU ONNX Runtime session with all graph optimisations (``threads`` 0: ORT's default)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session: ort.InferenceSession, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """inputs (N, 3, h, w) float32 -> {output name: array}."""
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {session.get_inputs()[0].name: np.ascontiguousarray(inputs, dtype=np.float32)})
    return dict(zip(names, values, strict=True))


def _median_ms(fn: Any, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))


def ort_latency_ms(session: ort.InferenceSession, inputs: np.ndarray, runs: int = 20, warmup: int = 3) -> float:
    """Median wall time (ms) of one ``session.run`` on ``inputs``."""
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(inputs, dtype=np.float32)}
    return _median_ms(lambda: session.run(None, feed), runs, warmup)


@torch.no_grad()
def torch_latency_ms(model: nn.Module, inputs: Tensor, runs: int = 20, warmup: int = 3) -> float:
    """Median wall time (ms) of one eager forward on ``inputs`` (synchronised on GPUs)."""
    model.eval()
    sync = torch.cuda.synchronize if inputs.is_cuda else (lambda: None)

    def step() -> None:
        model(inputs)
        sync()

    return _median_ms(step, runs, warmup)


def tile_batch(inputs: np.ndarray, batch: int) -> np.ndarray:
    """``batch`` inputs from the first ones given, repeated as needed (latency does not depend on content)."""
    reps = -(-batch // len(inputs))
    return np.ascontiguousarray(np.concatenate([inputs] * reps)[:batch])


# --------------------------------------------------------------------------- INT8


class _Calibration(CalibrationDataReader):
    """Calibration batches for static quantisation: prepared inputs, ``batch`` at a time."""

    def __init__(self, inputs: np.ndarray, input_name: str, batch: int = 8) -> None:
        self.chunks = [inputs[i : i + batch] for i in range(0, len(inputs), batch)]
        self.input_name = input_name
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.chunks):
            return None
        self.position += 1
        return {self.input_name: np.ascontiguousarray(self.chunks[self.position - 1], dtype=np.float32)}

    def rewind(self) -> None:
        self.position = 0


def _pre_process(src: Path, dst: Path) -> Path:
    """ONNX Runtime's recommended pre-processing (optimisation + shape inference) before quantisation.

    Symbolic shape inference fails on some dynamo exports; ONNX's own shape inference then
    still does. When both fail the model is quantised as it is (pre-processing only helps).
    Runs from ``dst``'s folder (a temporary one): when ORT's symbolic shape inference gives up it
    saves ``sym_shape_infer_temp.onnx`` and its external data into the working directory.
    """
    src, dst = src.resolve(), dst.resolve()
    errors = []
    for skip_symbolic in (False, True):
        try:
            with _quiet(), warnings.catch_warnings(), contextlib.chdir(dst.parent):
                warnings.simplefilter("ignore")
                quant_pre_process(str(src), str(dst), skip_symbolic_shape=skip_symbolic)
            return dst
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    warnings.warn(f"quantisation pre-processing failed ({'; '.join(errors)}); quantising without it", stacklevel=3)
    return src


def quantize(
    fp32_path: str | Path,
    out_path: str | Path,
    mode: Literal["dynamic", "static"],
    calibration: np.ndarray | None = None,
    info: BundleInfo | None = None,
) -> Path:
    """Write an INT8 copy of ``fp32_path``: ``dynamic`` (weights int8, activations quantised on the fly;
    MatMul/Gemm) or ``static`` (QDQ, per-channel int8 weights, uint8 activations calibrated on
    ``calibration`` (N, 3, h, w) by min/max). ``info`` is embedded again as metadata."""
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="posecore-quant-") as tmp:
        prepared = _pre_process(Path(fp32_path), Path(tmp) / "prepared.onnx")
        if mode == "dynamic":
            # Only MatMul/Gemm: dynamically quantised convolutions (ConvInteger) ran ~10x slower than float ones on CPU.
            quantize_dynamic(
                str(prepared), str(out_path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
            )
        elif mode == "static":
            if calibration is None or not len(calibration):
                raise ValueError("static quantisation needs calibration inputs")
            name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
            quantize_static(
                str(prepared),
                str(out_path),
                _Calibration(calibration, name),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
            )
        else:
            raise ValueError(f"quantize mode must be 'dynamic' or 'static', got {mode!r}")
    if info is not None:
        embed_metadata(out_path, info)
    return out_path


def file_mb(path: str | Path) -> float:
    return Path(path).stat().st_size / 1e6


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__}
