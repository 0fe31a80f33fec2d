"""``bundle.json`` (:class:`BundleInfo`): round trips, validation with clear messages, no torch needed to read it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from posecore.codecs import SimCC
from posecore.data.cache import codec_config, codec_from_config
from posecore.export import METADATA_KEY, BundleError, BundleInfo
from posecore.export.bundle import bundle_meta_fields
from posecore.metainfo import load_meta

REPO = Path(__file__).resolve().parents[2]


def _info(**changes: object) -> BundleInfo:
    codec = SimCC(input_size=(192, 256), sigma=(4.9, 5.66), split_ratio=2.0)
    base = BundleInfo(
        **bundle_meta_fields(load_meta("coco")),
        input_size=(192, 256),
        mean=(123.675, 116.28, 103.53),
        std=(58.395, 57.12, 57.375),
        codec=codec_config(codec),
        outputs=("simcc_x", "simcc_y"),
        bbox_padding=1.25,
        provenance={"mlflow_run_id": "abc", "git_commit": "0" * 40, "metrics": {"AP": 0.71}},
    )
    return dataclasses.replace(base, **changes)


def test_json_round_trip(tmp_path: Path) -> None:
    info = _info(quantization="static", int8_model_file="model.int8.onnx")
    path = info.write(tmp_path)
    assert path == tmp_path / "bundle.json"
    assert BundleInfo.read(tmp_path) == info == BundleInfo.read(path)
    raw = json.loads(path.read_text())
    assert raw["input_size"] == [192, 256] and raw["skeleton"][0] == list(info.skeleton[0])
    assert raw["codec"]["name"] == "simcc" and raw["format"] == 1
    assert info.model_path(tmp_path) == tmp_path / "model.onnx"
    assert info.model_path(tmp_path, int8=True) == tmp_path / "model.int8.onnx"


def test_the_codec_config_rebuilds_the_codec() -> None:
    codec = codec_from_config(_info().codec)
    assert codec == SimCC(input_size=(192, 256), sigma=(4.9, 5.66), split_ratio=2.0)


def test_meta_fields_follow_the_dataset_meta() -> None:
    meta = load_meta("coco")
    info = _info()
    assert info.num_keypoints == 17 and info.meta_name == "coco"
    assert list(info.flip_indices) == meta.flip_indices
    assert [list(link) for link in info.skeleton] == [list(link) for link in meta.skeleton_indices]
    assert len(info.skeleton_colors) == len(info.skeleton)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"flip_indices": (1, 1) + tuple(range(2, 17))}, "flip_indices must be a permutation"),
        ({"flip_indices": (1, 2, 0) + tuple(range(3, 17))}, "its own inverse"),
        ({"sigmas": (0.1,)}, "sigmas has 1 entries for 17 keypoints"),
        ({"skeleton": ((0, 17),), "skeleton_colors": ((0, 0, 0),)}, "skeleton links must index"),
        ({"std": (1.0, 0.0, 1.0)}, "std > 0"),
        ({"quantization": "static"}, "int8_model_file is set exactly when"),
        ({"quantization": "fp16", "int8_model_file": "x"}, "quantization must be one of"),
        ({"codec": {"sigma": 2}}, "codec must be"),
        ({"outputs": ()}, "outputs must name"),
        ({"task": "bottomup"}, "task must be one of topdown, onestage"),
        ({"weights_file": "weights.pt"}, "weights_file and spec_file are set together"),
        ({"spec_file": "model.json"}, "weights_file and spec_file are set together"),
    ],
)
def test_inconsistent_info_is_refused_with_the_reason(changes: dict[str, object], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        _info(**changes)


def test_a_bundle_json_from_before_tasks_reads_as_top_down() -> None:
    raw = _info().to_dict()
    assert raw["task"] == "topdown"
    del raw["task"]
    assert BundleInfo.from_dict(raw).task == "topdown"
    assert BundleInfo.from_dict({**raw, "task": "onestage"}).task == "onestage"


def test_the_pytorch_files_are_optional_and_round_trip(tmp_path: Path) -> None:
    """Bundles from before weights.pt read with both fields null; new ones name both files."""
    raw = _info().to_dict()
    assert raw["weights_file"] is None and raw["spec_file"] is None
    old = {k: v for k, v in raw.items() if k not in ("weights_file", "spec_file")}
    assert BundleInfo.from_dict(old) == _info()
    info = _info(weights_file="weights.pt", spec_file="model.json")
    info.write(tmp_path)
    assert BundleInfo.read(tmp_path) == info
    assert json.loads((tmp_path / "bundle.json").read_text())["weights_file"] == "weights.pt"


def test_unknown_missing_and_future_keys_are_refused(tmp_path: Path) -> None:
    raw = _info().to_dict()
    with pytest.raises(BundleError, match=r"unknown keys \['extra'\]"):
        BundleInfo.from_dict({**raw, "extra": 1})
    with pytest.raises(BundleError, match=r"missing keys \['codec'\]"):
        BundleInfo.from_dict({k: v for k, v in raw.items() if k != "codec"})
    with pytest.raises(BundleError, match="format 2 is not supported"):
        BundleInfo.from_dict({**raw, "format": 2})
    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        BundleInfo.read(tmp_path)
    with pytest.raises(BundleError, match="not a posecore bundle"):
        BundleInfo.read(tmp_path / "nowhere")
    with pytest.raises(BundleError, match="no int8 model"):
        _info().model_path(tmp_path, int8=True)


def test_metadata_embedding_round_trip(tmp_path: Path) -> None:
    from posecore.export.onnx import embed_metadata, read_metadata

    graph = helper.make_graph(
        [helper.make_node("Identity", ["inputs"], ["simcc_x"])],
        "g",
        [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, ["batch", 3])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="carries no 'posecore.bundle' metadata"):
        read_metadata(path)
    embed_metadata(path, _info(meta_name="first"))
    embed_metadata(path, _info())  # replaces, never duplicates
    keys = [p.key for p in onnx.load(str(path)).metadata_props]
    assert keys == [METADATA_KEY]
    assert read_metadata(path) == _info()


def test_reading_a_bundle_needs_no_torch(tmp_path: Path) -> None:
    _info().write(tmp_path)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from posecore.export import BundleInfo, ExportConfig\n"
        f"info = BundleInfo.read({str(tmp_path)!r})\n"
        "assert info.outputs == ('simcc_x', 'simcc_y') and ExportConfig().out\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
