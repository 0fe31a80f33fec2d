"""``export:`` in params.yaml: where the bundle goes and what it must prove before it is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Quantize = Literal["none", "dynamic", "static"]


@dataclass(frozen=True)
class ExportConfig:
    """How :func:`posecore.export.verify.export_and_verify` turns the trained model into a bundle (see :mod:`posecore.export`).

    ``out``: the bundle folder (replaced atomically); ``metrics``: the DVC metrics file (outside
    the bundle: DVC outputs may not overlap). ``dynamo``: the ``torch.export`` based exporter
    (falls back to the TorchScript one when it fails); ``False`` uses the TorchScript exporter
    directly. ``atol``: largest allowed absolute difference of any ONNX Runtime output from
    PyTorch's, and ``max_kpt_px``: of any decoded keypoint (model-input pixels), both over
    ``parity_samples`` real val inputs at several batch sizes. ``quantize``: also write
    ``model.int8.onnx`` (``static`` calibrates on ``calibration_samples`` val inputs) and
    measure its COCO AP against the fp32 model's on the val split. ``latency_runs`` timed runs
    (after ``latency_warmup``) per batch size give the median latencies; ``threads``: ONNX
    Runtime intra-op threads (0: its default).
    """

    out: str = "models/bundle"
    metrics: str = "reports/export_metrics.json"
    opset: int = field(default=20, metadata={"range": (17, 23)})
    dynamo: bool = True
    atol: float = field(default=1e-4, metadata={"range": (0.0, 1e6)})
    max_kpt_px: float = field(default=0.5, metadata={"range": (0.0, 1e6)})
    parity_samples: int = field(default=32, metadata={"range": (1, 100_000)})
    quantize: Quantize = "none"
    calibration_samples: int = field(default=64, metadata={"range": (1, 100_000)})
    latency_runs: int = field(default=20, metadata={"range": (1, 100_000)})
    latency_warmup: int = field(default=3, metadata={"range": (0, 100_000)})
    threads: int = field(default=0, metadata={"range": (0, 1024)})
