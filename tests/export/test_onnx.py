"""posecore.export.onnx: export with a dynamic batch, the exporter fallback, parity, quantisation.

The dynamo exporter (the default, 10-25 s a model here) is exercised by tests/stages/test_export.py;
these tests use the TorchScript exporter (about 1 s) unless they test the dynamo path itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)
import torch

from posecore.evaluation.topdown import normalized_inputs
from posecore.export.onnx import (
    export_onnx,
    make_bundle_info,
    ort_latency_ms,
    ort_session,
    output_names,
    quantize,
    read_metadata,
    run_onnx,
    tile_batch,
)
from posecore.export.parity import check_parity


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tiny.one_thread():
        yield


@pytest.fixture(scope="module")
def setup(exported):  # noqa: ANN001, ANN201
    return exported.trained, exported.split, exported.path


def _inputs(trained, split, n: int) -> torch.Tensor:  # noqa: ANN001
    real = normalized_inputs(split, np.arange(len(split)), trained.model.mean, trained.model.std)
    return torch.from_numpy(tile_batch(real.numpy(), n))


def test_outputs_are_named_by_the_codec_keys_with_a_dynamic_batch(setup) -> None:
    trained, _, path = setup
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["inputs"]
    assert [o.name for o in model.graph.output] == ["simcc_x", "simcc_y"] == output_names(trained.model)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value
    assert not list(path.parent.glob("*.data")), "one self-contained file"


def test_onestage_outputs_are_the_codec_output_keys_with_a_dynamic_batch(onestage_exported) -> None:  # noqa: ANN001
    model = onestage_exported.trained.model
    graph = onnx.load(str(onestage_exported.path)).graph
    keys = ["obj_logits", "boxes", "keypoints", "vis_logits", "heatmaps"]  # the preset refines by heatmaps
    assert [o.name for o in graph.output] == keys == list(model.codec.output_keys) == output_names(model)
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param, "dynamic batch"
    for batch in (1, 3):
        inputs = _inputs(onestage_exported.trained, onestage_exported.split, batch).numpy()
        shapes = {k: v.shape for k, v in run_onnx(ort_session(onestage_exported.path, threads=1), inputs).items()}
        assert model.head.strides == (8, 16)  # the preset has no stride-32 level
        a = 8 * 8 + 4 * 4  # anchors of a 64x64 input at strides 8 and 16
        assert shapes == {
            "obj_logits": (batch, a),
            "boxes": (batch, a, 4),
            "keypoints": (batch, a, 17, 2),
            "vis_logits": (batch, a, 17),
            "heatmaps": (batch, 17, 16, 16),  # stride 4
        }


def test_dynamo_failure_falls_back_to_torchscript(setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trained, split, _ = setup
    real_export = torch.onnx.export

    def dynamo_breaks(*args: object, **kwargs: object) -> object:
        if kwargs.get("dynamo"):
            raise RuntimeError("unsupported operator aten::frobnicate")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_breaks)
    with pytest.warns(UserWarning, match="dynamo ONNX export failed .*frobnicate.*TorchScript"):
        exported = export_onnx(trained.model, tmp_path / "model.onnx", opset=20)
    assert exported.exporter == "torchscript" and "frobnicate" in (exported.fallback_reason or "")
    parity = check_parity(trained.model, ort_session(exported.path), _inputs(trained, split, 3), (3,))
    assert parity.max_abs_diff <= 1e-4


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_quantised_models_run_and_carry_the_metadata(setup, tmp_path: Path, mode: str) -> None:
    trained, split, path = setup
    info = make_bundle_info(
        trained.model,
        trained.meta,
        outputs=output_names(trained.model),
        bbox_padding=1.25,
        flip_test=True,
        quantization=mode,
    )
    calibration = _inputs(trained, split, 8).numpy()
    out = quantize(path, tmp_path / "model.int8.onnx", mode, calibration, info)
    assert out.stat().st_size < path.stat().st_size
    assert read_metadata(out) == info
    session = ort_session(out)
    outputs = run_onnx(session, calibration[:3])
    assert outputs["simcc_x"].shape == (3, 17, 128)
    parity = check_parity(trained.model, session, torch.from_numpy(calibration), (8,))
    assert 0.0 < parity.max_abs_diff < 1.0, "int8 is close to, not equal to, fp32"
    assert ort_latency_ms(session, calibration, runs=2, warmup=1) > 0


def test_quantisation_leaves_nothing_in_the_working_directory(
    setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORT's symbolic shape inference saves its half-inferred model into the cwd when it gives up."""
    import posecore.export.onnx as onnx_export

    _, _, path = setup
    real = onnx_export.quant_pre_process
    calls = []

    def symbolic_gives_up(src: str, dst: str, skip_symbolic_shape: bool) -> None:
        calls.append(skip_symbolic_shape)
        if not skip_symbolic_shape:  # what ORT does: save into the cwd, then raise
            Path("sym_shape_infer_temp.onnx").write_bytes(b"half-inferred")
            raise RuntimeError("Incomplete symbolic shape inference")
        real(src, dst, skip_symbolic_shape=True)

    monkeypatch.setattr(onnx_export, "quant_pre_process", symbolic_gives_up)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = quantize(path, "model.int8.onnx", "dynamic")  # a relative output path is the caller's cwd
    assert calls == [False, True]
    assert sorted(p.name for p in work.iterdir()) == ["model.int8.onnx"] and out.resolve() == work / out.name
    assert ort_session(out) is not None


def test_static_quantisation_needs_calibration(setup, tmp_path: Path) -> None:
    _, _, path = setup
    with pytest.raises(ValueError, match="needs calibration inputs"):
        quantize(path, tmp_path / "q.onnx", "static", None)
