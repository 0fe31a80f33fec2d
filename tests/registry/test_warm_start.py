"""posecore.registry.warm_start: ``model.init.from`` (checkpoint files, training and bundle folders, registry
references) read into weights with weights_only loading, and applied to a model.

Registry references run against the real SQLite MLflow store of tests/registry/conftest.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from registry_store import Store, tiny_bundle  # tests/_helpers (on sys.path by tests/conftest.py)

from posecore.engine.checkpoint import save_checkpoint
from posecore.export.bundle import BundleInfo, bundle_meta_fields
from posecore.export.trained import TrainedModel, write_bundle_weights, write_model_description
from posecore.metainfo import load_meta, resolve_meta_path
from posecore.models.config import InitParams
from posecore.models.estimator import ModelSpec, PoseEstimator, build_estimator
from posecore.models.init import InitError
from posecore.registry import (
    TAG_INIT_SOURCE,
    TAG_PARENT_RUN,
    TAG_PARENT_VERSION,
    TAG_SHA,
    RegisterConfig,
    describe_version,
    log_bundle,
    promote,
)
from posecore.registry.warm_start import lineage_tags, load_weights_file, resolve_init_source, warm_start

SPEC = ModelSpec.resolve("synthetic-lite0", input_size=(64, 64), backbone={"name": "mobilenetv3_small"})
COCO = load_meta("coco")


@pytest.fixture(scope="module")
def coco_model() -> PoseEstimator:
    torch.manual_seed(0)
    return build_estimator(SPEC, COCO, pretrained=False).eval()


def _shifted(state: dict[str, torch.Tensor], delta: float) -> dict[str, torch.Tensor]:
    return {k: v + delta if v.is_floating_point() else v.clone() for k, v in state.items()}


def _training_folder(folder: Path, model: PoseEstimator) -> dict[str, torch.Tensor]:
    """best.pt as the trainer writes it (live and EMA weights), model.json and meta.yaml; returns the EMA weights."""
    live, ema = model.state_dict(), _shifted(model.state_dict(), 1.0)
    save_checkpoint(folder / "best.pt", {"model": live, "ema": {"module": ema, "updates": 3}, "epoch": 1})
    write_model_description(folder, SPEC, COCO.name, resolve_meta_path("coco"))
    return ema


def _bundle(path: Path, model: PoseEstimator, with_weights: bool = True) -> Path:
    """A bundle whose bundle.json describes ``model``'s keypoints, with its weights.pt and model.json."""
    tiny_bundle(path)
    info = dataclasses.replace(BundleInfo.read(path), **bundle_meta_fields(COCO))
    if with_weights:
        trained = TrainedModel(model, SPEC, COCO, path / "best.pt", False, None, None, None)
        weights, spec = write_bundle_weights(trained, path)
        info = dataclasses.replace(info, weights_file=weights.name, spec_file=spec.name)
    info.write(path)
    return path


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_empty_and_none_mean_no_warm_start(coco_model: PoseEstimator) -> None:
    for text in ("", "none", " None "):
        assert resolve_init_source(text) is None
    before = {k: v.clone() for k, v in coco_model.state_dict().items()}
    assert warm_start(coco_model, InitParams(source="none"), COCO.keypoint_names) is None
    assert _equal(before, coco_model.state_dict())


def test_a_training_folder_gives_its_ema_weights_and_keypoints(coco_model: PoseEstimator, tmp_path: Path) -> None:
    ema = _training_folder(tmp_path, coco_model)
    for where in (tmp_path, tmp_path / "best.pt"):
        source = resolve_init_source(str(where))
        assert source is not None and _equal(dict(source.state), ema)
        assert source.keypoint_names == tuple(COCO.keypoint_names)
        assert "posecore checkpoint, EMA weights" in source.description
        assert source.origin == {"kind": "checkpoint", "path": str(tmp_path / "best.pt")}
    alone = tmp_path / "elsewhere" / "copy.pt"
    alone.parent.mkdir()
    alone.write_bytes((tmp_path / "best.pt").read_bytes())
    source = resolve_init_source(str(alone))
    assert source is not None and source.keypoint_names is None  # no model.json / meta.yaml beside it


def test_mmpose_checkpoints_load_with_prefix_and_into(coco_model: PoseEstimator, tmp_path: Path) -> None:
    """MMPose keeps the weights under "state_dict" beside plain metadata; its prefix keeps the backbone."""
    donor = _shifted(coco_model.state_dict(), 0.5)
    path = tmp_path / "mmpose.pth"
    torch.save({"meta": {"epoch": 210, "mmpose_version": "1.3.2"}, "state_dict": donor}, path)
    model = build_estimator(SPEC, COCO, pretrained=False)
    head_before = model.state_dict()["head.cls_x.weight"].clone()
    cfg = InitParams(source=str(path), prefix="backbone.", into="backbone.")
    report = warm_start(model, cfg, COCO.keypoint_names)
    assert report is not None and "checkpoint's state_dict" in report.source
    assert set(report.loaded) == {k for k in donor if k.startswith("backbone.")}
    assert set(report.missing) == {k for k in donor if k.startswith("head.")}
    assert report.origin["from"] == str(path) and report.unexpected == ()
    state = model.state_dict()
    first = next(k for k in donor if k.startswith("backbone.") and donor[k].is_floating_point())
    assert torch.equal(state[first], donor[first]) and not torch.equal(state[first], coco_model.state_dict()[first])
    assert torch.equal(state["head.cls_x.weight"], head_before)


@pytest.mark.parametrize(
    ("wrap", "kind"), [(lambda s: {"model": s}, "checkpoint's model"), (lambda s: s, "state dict")]
)
def test_other_containers(coco_model: PoseEstimator, tmp_path: Path, wrap: Any, kind: str) -> None:
    torch.save(wrap(coco_model.state_dict()), tmp_path / "w.pt")
    state, found = load_weights_file(tmp_path / "w.pt")
    assert found == kind and _equal(state, coco_model.state_dict())


def test_a_corrupt_file_names_itself_and_what_was_expected(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(3)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:100])
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights")
    for path in (cut, text):
        with pytest.raises(InitError) as err:
            resolve_init_source(str(path))
        assert str(path) in str(err.value) and "is not a readable PyTorch weights file" in str(err.value)
        assert "expected a state dict" in str(err.value)


class _Trap:
    """Unpickling it with full pickle would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_weights_only_refuses_a_pickled_object_and_never_runs_it(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "trap.pt"
    torch.save({"w": torch.zeros(2), "trap": _Trap(marker)}, path)
    with pytest.raises(InitError) as err:
        load_weights_file(path)
    assert str(path) in str(err.value) and "weights_only=True never runs pickled code" in str(err.value)
    assert " holds a pickled " in str(err.value)  # the global it refused (getattr, for a bound method)
    assert not marker.exists()


def test_files_that_hold_no_state_dict_are_refused(tmp_path: Path) -> None:
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(InitError, match=r"list\.pt holds a list; expected a state dict"):
        load_weights_file(tmp_path / "list.pt")
    torch.save({"w": torch.zeros(1), "step": 3}, tmp_path / "mixed.pt")
    with pytest.raises(InitError, match="entries that are not tensors: step"):
        load_weights_file(tmp_path / "mixed.pt")
    with pytest.raises(InitError, match="does not exist"):
        load_weights_file(tmp_path / "absent.pt")


def test_sources_that_are_neither_say_what_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InitError, match="is not a file or folder, nor a registry reference"):
        resolve_init_source(str(tmp_path / "absent.pt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InitError, match=r"neither a bundle \(bundle.json\) nor a training folder \(best.pt\)"):
        resolve_init_source(str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pose@champion").mkdir()  # an existing path wins over the reference it also spells
    with pytest.raises(InitError, match="neither a bundle"):
        resolve_init_source("pose@champion")


def test_a_bundle_folder_round_trips_the_exported_weights(coco_model: PoseEstimator, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "bundle", coco_model)
    assert json.loads((bundle / "model.json").read_text()) == {"model": SPEC.to_dict(), "meta": "coco"}
    source = resolve_init_source(str(bundle))
    assert source is not None and _equal(dict(source.state), coco_model.state_dict())
    assert source.keypoint_names == tuple(COCO.keypoint_names)
    assert source.origin["kind"] == "bundle" and source.origin["meta"] == "coco"


def test_a_bundle_without_weights_asks_for_a_re_export(coco_model: PoseEstimator, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "old", coco_model, with_weights=False)
    with pytest.raises(InitError, match=r"has no PyTorch weights \(weights.pt\).*re-export it with this version"):
        resolve_init_source(str(bundle))


def test_a_registry_reference_pulls_the_registered_weights(
    store: Store, coco_model: PoseEstimator, tmp_path: Path
) -> None:
    name = store.model_name("warm")
    run_id = store.new_run()
    bundle = _bundle(tmp_path / "bundle", coco_model)
    mv = log_bundle(bundle, run_id, RegisterConfig(model_name=name), metric_value=0.5, eval_data="md5:val")
    assert mv is not None
    assert {TAG_SHA + "weights.pt", TAG_SHA + "model.json"} <= set(mv.tags)  # pull verifies them
    for ref in (f"{name}@challenger", f"models:/{name}/{mv.version}"):
        source = resolve_init_source(ref, tracking_uri=store.uri)
        assert source is not None and _equal(dict(source.state), coco_model.state_dict())
        assert source.keypoint_names == tuple(COCO.keypoint_names)
        assert source.origin["kind"] == "registry" and source.origin["ref"] == ref
        assert (source.origin["model"], source.origin["version"], source.origin["run_id"]) == (name, "1", run_id)
        assert f"{name} version 1, run {run_id}" in source.description


def test_a_version_registered_without_weights_asks_for_a_re_export(store: Store, logged: dict[str, Any]) -> None:
    with pytest.raises(InitError, match="has no PyTorch weights.*register it again"):
        resolve_init_source(f"{logged['name']}@champion", tracking_uri=store.uri)


def test_warm_start_from_a_coco_folder_into_an_lsp_model(coco_model: PoseEstimator, tmp_path: Path) -> None:
    ema = _training_folder(tmp_path, coco_model)
    lsp = load_meta("lsp")
    model = build_estimator(SPEC, lsp, pretrained=False)
    report = warm_start(model, InitParams(source=str(tmp_path)), lsp.keypoint_names)
    assert report is not None and report.fresh_keypoints == ("neck", "head_top")
    assert dict(report.transferred) == {"head.final_layer.weight": 12, "head.final_layer.bias": 12}
    i, j = lsp.keypoint_names.index("right_ankle"), COCO.keypoint_names.index("right_ankle")
    assert torch.equal(model.state_dict()["head.final_layer.weight"][i], ema["head.final_layer.weight"][j])
    assert report.origin == {"from": str(tmp_path), "kind": "checkpoint", "path": str(tmp_path / "best.pt")}


def test_from_champion_starts_cold_until_there_is_one_then_from_it(
    store: Store, coco_model: PoseEstimator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = store.model_name("retrain")
    model = build_estimator(SPEC, COCO, pretrained=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = InitParams(source="champion")
    report = warm_start(model, cfg, COCO.keypoint_names, tracking_uri=store.uri, model_name=base)
    assert report is None and _equal(before, model.state_dict())  # no champion yet: a cold start, said so
    assert f"{base} has no champion yet, so training starts cold" in caplog.text

    run_id = store.new_run()
    mv = log_bundle(
        _bundle(tmp_path / "b", coco_model),
        run_id,
        RegisterConfig(model_name=base),
        metric_value=0.5,
        eval_data="md5:val",
    )
    assert mv is not None and promote(store.client, base, mv.version, RegisterConfig()).promoted
    report = warm_start(model, cfg, COCO.keypoint_names, tracking_uri=store.uri, model_name=base)
    assert report is not None and _equal(model.state_dict(), coco_model.state_dict())
    assert report.origin["from"] == "champion" and report.origin["version"] == str(mv.version)
    tags = lineage_tags(report)
    assert tags[TAG_PARENT_VERSION] == f"{base}/{mv.version}" and tags[TAG_PARENT_RUN] == run_id
    assert f"{base}/{mv.version}" in tags[TAG_INIT_SOURCE]
    # a one-stage model's champion is that of the one-stage registered model, which has none
    assert warm_start(model, cfg, COCO.keypoint_names, tracking_uri=store.uri, model_name=base, task="onestage") is None
    assert f"{base}-onestage has no champion yet" in caplog.text


def test_a_registered_version_carries_its_runs_parent_so_the_registry_shows_the_chain(
    store: Store, coco_model: PoseEstimator, tmp_path: Path
) -> None:
    base = store.model_name("chain")
    parent_run = store.new_run()
    bundle = _bundle(tmp_path / "b", coco_model)
    first = log_bundle(bundle, parent_run, RegisterConfig(model_name=base), metric_value=0.5, eval_data="md5:val")
    assert first is not None and describe_version(first)["parent"] is None
    report = warm_start(coco_model, InitParams(source=f"{base}/1"), COCO.keypoint_names, tracking_uri=store.uri)
    assert report is not None
    child_run = store.new_run()
    for key, value in lineage_tags(report).items():  # what the train stage tags its run with
        store.client.set_tag(child_run, key, value)
    second = log_bundle(bundle, child_run, RegisterConfig(model_name=base), metric_value=0.6, eval_data="md5:val")
    assert second is not None
    assert second.tags[TAG_PARENT_VERSION] == f"{base}/1" and second.tags[TAG_PARENT_RUN] == parent_run
    assert describe_version(second)["parent"] == f"{base}/1"


def test_lineage_tags_of_a_file_source_name_only_the_source(coco_model: PoseEstimator, tmp_path: Path) -> None:
    _training_folder(tmp_path, coco_model)
    report = warm_start(
        build_estimator(SPEC, COCO, pretrained=False), InitParams(source=str(tmp_path)), COCO.keypoint_names
    )
    assert report is not None and lineage_tags(report) == {TAG_INIT_SOURCE: report.source}
