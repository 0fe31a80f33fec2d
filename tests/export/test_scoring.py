"""posecore.export.scoring: an ONNX model scored with the loop that scores the torch model."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)

from posecore.datasets.layout import DatasetLayout
from posecore.evaluation.bottomup import predict_images, score_bottomup
from posecore.evaluation.topdown import predict_split
from posecore.export.bundle import MODEL_FILE
from posecore.export.onnx import make_bundle_info, ort_session, output_names
from posecore.export.scoring import OnnxPredictor, score_bundle, score_onnx


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tiny.one_thread():
        yield


@pytest.fixture(scope="module")
def setup(exported, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    trained = exported.trained
    info = make_bundle_info(
        trained.model, trained.meta, outputs=output_names(trained.model), bbox_padding=1.25, flip_test=True
    )
    bundle = tmp_path_factory.mktemp("scoring") / "bundle"
    bundle.mkdir()
    shutil.copyfile(exported.path, bundle / MODEL_FILE)
    info.write(bundle)
    return exported.run, trained, exported.split, info, bundle


def test_onnx_predictions_with_the_mirrored_batch_match_pytorch_flip_test(setup) -> None:
    _, trained, split, info, bundle = setup
    onnx_model = OnnxPredictor.for_bundle(ort_session(bundle / MODEL_FILE), trained.model.codec, info)
    for flip in (False, True):
        ours = predict_split(onnx_model, split, flip_test=flip, batch_size=3)
        ref = predict_split(trained.model, split, flip_test=flip, batch_size=3)
        np.testing.assert_allclose(ours.scores, ref.scores, atol=1e-3)
        image_px_per_input_px = 1.0 / split.warp[:, 0, 0]
        err = np.linalg.norm(ours.keypoints - ref.keypoints, axis=-1) / image_px_per_input_px[:, None]
        # A barely trained model can have two maxima of equal height (an argmax tie that float
        # rounding breaks either way); a decoding or flip-back bug would move many keypoints.
        apart = err > 0.5
        assert apart.sum() <= max(1, apart.size // 50), (flip, np.argwhere(apart), err[apart])
        assert np.abs(ours.scores - ref.scores)[apart].max(initial=0.0) < 1e-4  # equal peaks: a tie


def test_a_bundle_folder_scores_as_its_session_does(setup) -> None:
    run, trained, split, info, bundle = setup
    params = run.params
    dataset = Path(params.data.out)
    metrics = score_bundle(bundle, dataset, Path(params.encode.out), params.encode, params.evaluate)
    session = ort_session(bundle / MODEL_FILE)
    direct = score_onnx(
        session,
        split,
        trained.model.codec,
        info,
        DatasetLayout(dataset).annotations("val"),
        trained.meta,
        params.evaluate,
    )
    assert metrics["AP"] == pytest.approx(direct.metrics["AP"]) and 0.0 <= metrics["AP"] <= 1.0
    assert {"AP", "AP_.5", "AR", "EPE"} <= set(metrics)


def test_a_cache_encoded_otherwise_is_refused_with_what_to_run(setup) -> None:
    run, _, _, _, bundle = setup
    params = run.params
    other = dataclasses.replace(params.encode, bbox_padding=params.encode.bbox_padding + 0.5)
    with pytest.raises(ValueError, match="encoded for its own codec.*dvc repro encode"):
        score_bundle(bundle, Path(params.data.out), Path(params.encode.out), other, params.evaluate)


def test_a_onestage_bundle_scores_as_its_torch_model(onestage_exported, tmp_path: Path) -> None:  # noqa: ANN001
    run, trained, split = onestage_exported.run, onestage_exported.trained, onestage_exported.split
    model = trained.model
    info = make_bundle_info(model, trained.meta, outputs=output_names(model), bbox_padding=1.25, flip_test=False)
    assert info.task == "onestage"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copyfile(onestage_exported.path, bundle / MODEL_FILE)
    info.write(bundle)
    params = run.params
    gt = DatasetLayout(Path(params.data.out)).annotations("val")
    session = ort_session(bundle / MODEL_FILE)
    ours = predict_images(OnnxPredictor.for_bundle(session, model.codec, info), split, batch_size=3)
    ref = predict_images(model, split, batch_size=3)
    assert len(ours.image_ids) == len(ref.image_ids) > 0
    np.testing.assert_array_equal(ours.image_ids, ref.image_ids)
    np.testing.assert_allclose(ours.bbox_scores, ref.bbox_scores, atol=1e-4)
    np.testing.assert_allclose(ours.keypoints, ref.keypoints, atol=0.05)
    direct = score_onnx(session, split, model.codec, info, gt, trained.meta, params.evaluate)
    expected = score_bottomup(ref, split, gt, trained.meta, params.evaluate)
    assert direct.metrics["AP"] == pytest.approx(expected.metrics["AP"], abs=1e-6)
    metrics = score_bundle(bundle, Path(params.data.out), Path(params.encode.out), params.encode, params.evaluate)
    assert metrics["AP"] == pytest.approx(direct.metrics["AP"]) and {"AP", "AR", "PCK"} <= set(metrics)
