from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from posecore.config import (
    ConfigError,
    Params,
    flatten,
    load_params,
    parse_params,
    to_dict,
)
from posecore.data.config import EncodeParams
from posecore.datasets.converters.config import DataParams
from posecore.datasets.synthetic import SynthParams


def test_repo_params_load(repo_root: Path) -> None:
    params = load_params(repo_root / "params.yaml")
    assert isinstance(params, Params)
    assert params.data.source == "synthetic"
    assert params.data.root == params.synth.out


def test_defaults_when_empty() -> None:
    assert parse_params({}) == Params()


def test_unknown_key_names_the_dotted_key_and_allowed_keys() -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({"synth": {"n_trian": 5}})
    msg = str(err.value)
    assert "synth.n_trian: unknown key" in msg
    assert "n_train" in msg


def test_unknown_section() -> None:
    with pytest.raises(ConfigError, match="trian: unknown key; allowed keys: data, synth"):
        parse_params({"trian": {}})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"synth": {"n_train": "many"}}, "synth.n_train: expected an integer, got str 'many'"),
        ({"synth": {"n_train": True}}, "synth.n_train: expected an integer"),
        ({"data": {"val_fraction": "x"}}, "data.val_fraction: expected a number"),
        ({"data": {"drop_invalid": "yes"}}, "data.drop_invalid: expected true or false"),
        ({"data": {"annotations": ["a"]}}, "data.annotations: expected a mapping"),
        ({"synth": {"width": 10}}, "synth.width: 10 is out of range; allowed: 64 to 4096"),
        ({"data": {"val_fraction": 1.5}}, "data.val_fraction: 1.5 is out of range; allowed: 0.0 to 1.0"),
        ({"data": {"source": "nope"}}, "data.source: 'nope' is not allowed; allowed values:"),
        ({"synth": {"min_people": 3, "max_people": 2}}, "synth.min_people (3) must be <= synth.max_people (2)"),
        ({"data": {"meta": "nosuchmeta"}}, "data.meta: 'nosuchmeta' is not a known dataset meta"),
        ({"data": {"root": "elsewhere"}}, "data.root ('elsewhere') must equal synth.out"),
        (
            {"model": {"init": {"keypoint_map": {"neck": 3}}}},
            "model.init.keypoint_map.neck: expected str or a list of str, got int 3",
        ),
    ],
)
def test_bad_values_are_named(raw: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert expected in str(err.value)


def test_all_errors_reported_together() -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({"synth": {"n_train": "x", "width": 1, "bogus": 0}})
    assert len(err.value.errors) == 3


def test_int_accepted_for_float_and_types_coerced() -> None:
    params = parse_params({"data": {"val_fraction": 0}})
    assert params.data.val_fraction == 0.0 and isinstance(params.data.val_fraction, float)


def test_a_union_takes_the_first_type_the_value_fits() -> None:
    params = parse_params(
        {"model": {"init": {"keypoint_map": {"head_top": "nose", "neck": ["left_hip", "right_hip"]}}}}
    )
    assert params.model.init.keypoint_map == {"head_top": "nose", "neck": ("left_hip", "right_hip")}


def test_unquoted_off_read_back_as_the_word(tmp_path: Path) -> None:
    # `dvc exp run -S train.amp=off` writes the value unquoted; YAML 1.1 reads it as false.
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  amp: off\n")
    assert load_params(path).train.amp == "off"
    with pytest.raises(ConfigError, match="train.amp"):
        parse_params({"train": {"amp": True}})


def test_augmentation_is_read_from_params() -> None:
    params = parse_params({"augment": {"rotate_factor": 30, "scale_factor": [0.75, 1.25]}})
    assert params.augment.rotate_factor == 30.0 and params.augment.scale_factor == (0.75, 1.25)
    with pytest.raises(ConfigError, match=r"augment.flip_prob: 1.5 is out of range"):
        parse_params({"augment": {"flip_prob": 1.5}})


def test_overrides_use_dotted_keys(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"synth": {"n_train": 7}}))
    params = load_params(path, overrides={"synth.n_val": 3})
    assert (params.synth.n_train, params.synth.n_val) == (7, 3)


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("synth: [unclosed")
    with pytest.raises(ConfigError, match="params.yaml is invalid"):
        load_params(path)


def test_flatten_for_logging() -> None:
    flat = flatten(to_dict(Params()))
    assert flat["synth.n_train"] == SynthParams().n_train
    assert flat["data.source"] == "synthetic"


def _dvc_params(repo_root: Path, stage: str) -> set[str]:
    dvc = yaml.safe_load((repo_root / "dvc.yaml").read_text())
    return set(dvc["stages"][stage]["params"])


def test_dvc_yaml_lists_every_param_a_stage_reads(repo_root: Path) -> None:
    convert = _dvc_params(repo_root, "convert")
    assert convert == {f"data.{f.name}" for f in dataclasses.fields(DataParams)}
    synth = _dvc_params(repo_root, "synth")
    # workers only changes speed, never the output, so it must not invalidate the stage.
    assert synth == {f"synth.{f.name}" for f in dataclasses.fields(SynthParams)} - {"synth.workers"}
    encode = _dvc_params(repo_root, "encode")
    expected = {f"encode.{f.name}" for f in dataclasses.fields(EncodeParams)} - {"encode.workers"}
    assert encode == expected | {"model.preset", "model.input_size", "model.codec"}


@pytest.mark.parametrize(
    ("codec", "expected"),
    [
        ({"name": "nope"}, "model.codec: unknown codec 'nope'"),
        ({"name": "msra_heatmap", "heatmap_size": [48, 64], "sigmaa": 2}, "has no field(s) sigmaa"),
        (
            {"name": "msra_heatmap", "heatmap_size": [48, 64], "input_size": [1, 2]},
            "model.codec.input_size: not allowed",
        ),
        # no name: the keys update the default preset's codec (msra_heatmap), which has no split_ratio
        ({"split_ratio": 2.0}, "model.codec: codec 'msra_heatmap' (MSRAHeatmap) has no field(s) split_ratio"),
    ],
)
def test_codec_params_are_checked_when_loading(codec: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({"model": {"codec": codec}})
    assert expected in str(err.value)


def test_codec_takes_the_model_input_size() -> None:
    params = parse_params({"model": {"input_size": [96, 128], "codec": {"name": "simcc", "split_ratio": 2.0}}})
    codec = params.model.build_codec()
    assert tuple(codec.input_size) == (96, 128)
