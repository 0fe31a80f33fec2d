"""Shipped dataset meta YAML files, the loader's validation, user schemas and ``posecore meta``.

One module (~500 lines) because :mod:`posecore.metainfo` is one module: its loader, its
validation and the command that prints it share the user-schema fixtures below.
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from posecore.metainfo import available_metas, load_meta
from posecore.validation import DataValidationError

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "posecore" / "metainfo"

EXPECTED_COUNTS = {
    "300w": 68,
    "aic": 14,
    "ap10k": 17,
    "coco": 17,
    "coco_wholebody": 133,
    "cofw": 29,
    "crowdpose": 14,
    "freihand": 21,
    "h36m": 17,
    "halpe": 136,
    "halpe26": 26,
    "lsp": 14,
    "mirror_mouse": 17,
    "mpii": 16,
    "onehand10k": 21,
    "posetrack18": 17,
    "wflw": 98,
}

# Published COCO keypoint evaluation constants (cocoapi, cocoeval.py).
COCO_SIGMAS = [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107]
COCO_SIGMAS += [0.087, 0.087, 0.089, 0.089]
COCO_FLIP_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]


def _mmpose_samples(shared_data: Path, rel: str) -> dict[str, Any]:
    path = shared_data / "mmpose_samples" / rel
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return json.loads(path.read_text())


# --- every shipped schema --------------------------------------------------------------------


def test_every_shipped_schema_has_an_expected_count() -> None:
    shipped = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))
    assert shipped == sorted(EXPECTED_COUNTS), "add new schemas to EXPECTED_COUNTS (and remove deleted ones)"


@pytest.mark.parametrize("name", available_metas())
def test_schema_loads_and_is_consistent(name: str) -> None:
    meta = load_meta(name)
    k = meta.num_keypoints
    assert name in EXPECTED_COUNTS, f"no expected keypoint count for schema {name!r}"
    assert k == EXPECTED_COUNTS[name]
    assert meta.name == name, "the name field must equal the file name"
    assert len(set(meta.keypoint_names)) == k
    assert len(meta.sigmas) == k
    assert len(meta.joint_weights) == k
    assert all(s > 0 for s in meta.sigmas), "a zero sigma makes OKS undefined"
    assert meta.description, "say where the facts come from"

    flip = meta.flip_indices
    assert sorted(flip) == list(range(k))
    assert [flip[flip[i]] for i in range(k)] == list(range(k)), "flipping twice must be the identity"
    for i, j in meta.flip_pairs:
        assert meta.keypoints[i].swap == meta.keypoint_names[j]

    upper, lower = set(meta.upper_body_ids), set(meta.lower_body_ids)
    assert not upper & lower

    links = meta.skeleton_indices
    assert all(a != b for a, b in links), "no self-links"
    assert len({frozenset(ab) for ab in links}) == len(links), "no duplicate links"

    category = meta.coco_category()
    assert category["keypoints"] == meta.keypoint_names
    for a, b in category["skeleton"]:
        assert 1 <= a <= k and 1 <= b <= k, "COCO skeletons are 1-based"
    assert [(a - 1, b - 1) for a, b in category["skeleton"]] == links


# --- golden values -------------------------------------------------------------------------


def test_coco_sigmas_are_the_published_ones() -> None:
    assert list(load_meta("coco").sigmas) == COCO_SIGMAS


def test_coco_flip_pairs() -> None:
    assert load_meta("coco").flip_pairs == COCO_FLIP_PAIRS


def test_coco_body_halves() -> None:
    meta = load_meta("coco")
    assert meta.upper_body_ids == list(range(11))
    assert meta.lower_body_ids == list(range(11, 17))


def test_wholebody_starts_with_coco_and_has_its_published_body_sigmas() -> None:
    coco, wb = load_meta("coco"), load_meta("coco_wholebody")
    assert wb.keypoint_names[:17] == coco.keypoint_names
    assert list(wb.sigmas[:17]) == COCO_SIGMAS
    assert wb.flip_pairs[:8] == COCO_FLIP_PAIRS
    # 17 body, 6 foot, 68 face, 21 left hand, 21 right hand: every left hand point swaps with its right one.
    for i in range(91, 112):
        assert wb.flip_indices[i] == i + 21


def test_halpe26_is_the_body_part_of_halpe() -> None:
    assert load_meta("halpe26").keypoint_names == load_meta("halpe").keypoint_names[:26]


def test_h36m_is_mmpose_1x_order_with_the_right_leg_first() -> None:
    meta = load_meta("h36m")
    assert meta.keypoint_names[:7] == [
        "root",
        "right_hip",
        "right_knee",
        "right_foot",
        "left_hip",
        "left_knee",
        "left_foot",
    ]
    assert meta.flip_pairs == [(1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16)]
    assert meta.lower_body_ids == list(range(7))
    assert len(meta.skeleton) == 16 and set(meta.joint_weights) == {1.0}


def test_hands_have_no_flip_pairs_and_a_wrist_rooted_skeleton() -> None:
    for name in ("onehand10k", "freihand"):
        meta = load_meta(name)
        assert meta.flip_pairs == []
        wrist_links = [ab for ab in meta.skeleton_indices if 0 in ab]
        assert len(wrist_links) == 5


def test_mirror_mouse_swaps_left_and_right_paws_within_a_view() -> None:
    meta = load_meta("mirror_mouse")
    pairs = {(meta.keypoint_names[i], meta.keypoint_names[j]) for i, j in meta.flip_pairs}
    assert pairs == {
        ("paw1LH_top", "paw4RH_top"),
        ("paw2LF_top", "paw3RF_top"),
        ("paw1LH_bot", "paw4RH_bot"),
        ("paw2LF_bot", "paw3RF_bot"),
    }
    assert set(meta.sigmas) == {0.05}


# --- against the real annotation files -----------------------------------------------------


@pytest.mark.real_data
def test_coco_matches_the_coco_annotation_categories(shared_data: Path) -> None:
    category = _mmpose_samples(shared_data, "coco/test_coco.json")["categories"][0]
    ours = load_meta("coco").coco_category()
    assert ours["keypoints"] == category["keypoints"]
    assert ours["skeleton"] == category["skeleton"]


@pytest.mark.real_data
def test_coco_matches_coco_mini(shared_data: Path) -> None:
    path = shared_data / "coco_mini" / "annotations" / "person_keypoints_val2017.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    category = json.loads(path.read_text())["categories"][0]
    ours = load_meta("coco").coco_category()
    assert ours["keypoints"] == category["keypoints"]
    assert ours["skeleton"] == category["skeleton"]


@pytest.mark.real_data
@pytest.mark.parametrize(
    ("name", "rel"),
    [
        ("crowdpose", "crowdpose/test_crowdpose.json"),
        ("aic", "aic/test_aic.json"),
        ("onehand10k", "onehand10k/test_onehand10k.json"),
        ("freihand", "freihand/test_freihand.json"),
        ("wflw", "wflw/test_wflw.json"),
        ("ap10k", "ap10k/test_ap10k.json"),
        ("halpe", "halpe/test_halpe.json"),
        ("300w", "300w/test_300w.json"),
        ("cofw", "cofw/test_cofw.json"),
        ("posetrack18", "posetrack18/annotations/test_posetrack18_val.json"),
    ],
)
def test_keypoint_count_matches_annotations(shared_data: Path, name: str, rel: str) -> None:
    data = _mmpose_samples(shared_data, rel)
    counts = {len(a["keypoints"]) // 3 for a in data["annotations"]}
    assert counts == {load_meta(name).num_keypoints}


@pytest.mark.real_data
@pytest.mark.parametrize(
    ("name", "rel", "same_names"),
    [
        ("onehand10k", "onehand10k/test_onehand10k.json", True),
        ("freihand", "freihand/test_freihand.json", True),
        # These files spell the same keypoints differently ("Right Shoulder", "left_eye" for L_Eye).
        ("aic", "aic/test_aic.json", False),
        ("ap10k", "ap10k/test_ap10k.json", False),
    ],
)
def test_skeleton_matches_annotation_categories(shared_data: Path, name: str, rel: str, same_names: bool) -> None:
    category = _mmpose_samples(shared_data, rel)["categories"][0]
    ours = load_meta(name).coco_category()
    assert ours["skeleton"] == category["skeleton"]
    assert len(ours["keypoints"]) == len(category["keypoints"])
    if same_names:
        assert ours["keypoints"] == category["keypoints"]


@pytest.mark.real_data
def test_crowdpose_names_match_annotations_except_head(shared_data: Path) -> None:
    # MMPose calls keypoint 12 top_head; the CrowdPose files call it head.
    names = _mmpose_samples(shared_data, "crowdpose/test_crowdpose.json")["categories"][0]["keypoints"]
    ours = load_meta("crowdpose").keypoint_names
    assert (ours[:12], ours[13]) == (names[:12], names[13])


@pytest.mark.real_data
def test_coco_wholebody_parts_add_up(shared_data: Path) -> None:
    data = _mmpose_samples(shared_data, "coco/test_coco_wholebody.json")
    parts = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
    for ann in data["annotations"]:
        assert sum(len(ann[p]) // 3 for p in parts) == load_meta("coco_wholebody").num_keypoints
    assert data["categories"][0]["keypoints"] == load_meta("coco_wholebody").keypoint_names[:17]


@pytest.mark.real_data
def test_mirror_mouse_matches_the_csv_header(shared_data: Path) -> None:
    path = shared_data / "mirror_mouse" / "CollectedData.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with path.open(newline="") as fh:
        rows = csv.reader(fh)
        next(rows)
        bodyparts = next(rows)[1:]
    names = list(dict.fromkeys(bodyparts))
    assert len(bodyparts) == 2 * len(names)
    assert load_meta("mirror_mouse").keypoint_names == names


@pytest.mark.real_data
def test_lsp_matches_the_lspet_readme_and_joints(shared_data: Path) -> None:
    root = shared_data / "lspet"
    if not (root / "README.txt").is_file():
        pytest.skip(f"{root} is absent")
    lines = (root / "README.txt").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "labelled in the following order" in line) + 1
    order = [line.strip().lower().replace(" ", "_") for line in lines[start : start + 14]]
    assert load_meta("lsp").keypoint_names == order

    from scipy.io import loadmat

    joints = loadmat(str(root / "joints.mat"))["joints"]
    assert joints.shape[0] == load_meta("lsp").num_keypoints


# --- bad files are rejected, naming the field ----------------------------------------------


def _valid() -> dict[str, Any]:
    return {
        "name": "tiny",
        "description": "a test schema",
        "keypoints": [
            {"name": "nose", "type": "upper", "color": [51, 153, 255], "swap": ""},
            {"name": "left_eye", "type": "upper", "color": [0, 255, 0], "swap": "right_eye"},
            {"name": "right_eye", "type": "upper", "color": [255, 128, 0], "swap": "left_eye"},
            {"name": "hip", "type": "lower", "color": [51, 153, 255], "swap": ""},
        ],
        "skeleton": [
            {"link": ["nose", "left_eye"], "color": [0, 255, 0]},
            {"link": ["nose", "right_eye"], "color": [255, 128, 0]},
            {"link": ["nose", "hip"], "color": [51, 153, 255]},
        ],
        "joint_weights": [1.0, 1.0, 1.0, 1.5],
        "sigmas": [0.026, 0.025, 0.025, 0.107],
    }


def _write(tmp_path: Path, raw: dict[str, Any], name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_valid_tiny_schema_loads(tmp_path: Path) -> None:
    meta = load_meta(_write(tmp_path, _valid()))
    assert meta.flip_pairs == [(1, 2)]
    assert meta.upper_body_ids == [0, 1, 2]
    assert meta.lower_body_ids == [3]
    assert meta.coco_category()["skeleton"] == [[1, 2], [1, 3], [1, 4]]
    assert meta.source == str((tmp_path / "tiny.yaml").resolve())


def _duplicate_name(raw: dict[str, Any]) -> None:
    raw["keypoints"][3]["name"] = "nose"


def _missing_partner(raw: dict[str, Any]) -> None:
    raw["keypoints"][1]["swap"] = "left_ear"


def _non_symmetric_swap(raw: dict[str, Any]) -> None:
    raw["keypoints"][2]["swap"] = "nose"


def _sigma_count(raw: dict[str, Any]) -> None:
    raw["sigmas"] = raw["sigmas"][:3]


def _negative_sigma(raw: dict[str, Any]) -> None:
    raw["sigmas"][2] = -0.1


def _weight_count(raw: dict[str, Any]) -> None:
    raw["joint_weights"] = [*raw["joint_weights"], 1.0]


def _unknown_link(raw: dict[str, Any]) -> None:
    raw["skeleton"][1]["link"] = ["nose", "chin"]


def _bad_keypoint_color(raw: dict[str, Any]) -> None:
    raw["keypoints"][3]["color"] = [0, 300, 0]


def _bad_link_color(raw: dict[str, Any]) -> None:
    raw["skeleton"][0]["color"] = [0, 255]


def _unknown_top_key(raw: dict[str, Any]) -> None:
    raw["flip_pairs"] = [[1, 2]]


def _unknown_keypoint_key(raw: dict[str, Any]) -> None:
    raw["keypoints"][0]["id"] = 0


def _bad_type(raw: dict[str, Any]) -> None:
    raw["keypoints"][3]["type"] = "legs"


def _zero_sigma(raw: dict[str, Any]) -> None:
    raw["sigmas"][1] = 0


def _self_link(raw: dict[str, Any]) -> None:
    raw["skeleton"][0]["link"] = ["nose", "nose"]


def _duplicate_link(raw: dict[str, Any]) -> None:
    raw["skeleton"].append({"link": list(reversed(raw["skeleton"][0]["link"])), "color": [0, 0, 0]})


def _nameless_keypoint_keeps_indices(raw: dict[str, Any]) -> None:
    raw["keypoints"][1]["name"] = ""
    raw["keypoints"][3]["type"] = "legs"


def _swap_not_a_string(raw: dict[str, Any]) -> None:
    raw["keypoints"][0]["swap"] = 0


def _missing_sigmas(raw: dict[str, Any]) -> None:
    del raw["sigmas"]


def _empty_keypoints(raw: dict[str, Any]) -> None:
    raw["keypoints"] = []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_duplicate_name, ["keypoints[3]", "'name'", "duplicate"]),
        (_missing_partner, ["keypoints[1]", "'swap'", "left_ear"]),
        (_non_symmetric_swap, ["keypoints[2]", "'swap'"]),
        (_sigma_count, ["'sigmas'", "3 values", "4 keypoints"]),
        (_negative_sigma, ["sigmas[2]", "'sigmas'"]),
        (_weight_count, ["'joint_weights'", "5 values"]),
        (_unknown_link, ["skeleton[1]", "'link'", "chin"]),
        (_bad_keypoint_color, ["keypoints[3]", "'color'"]),
        (_bad_link_color, ["skeleton[0]", "'color'"]),
        (_unknown_top_key, ["'flip_pairs'", "unknown key"]),
        (_unknown_keypoint_key, ["keypoints[0]", "'id'", "unknown key"]),
        (_bad_type, ["keypoints[3]", "'type'", "legs"]),
        (_missing_sigmas, ["'sigmas'", "required"]),
        (_zero_sigma, ["sigmas[1]", "> 0"]),
        (_self_link, ["skeleton[0]", "itself"]),
        (_duplicate_link, ["skeleton[3]", "duplicate link"]),
        (_nameless_keypoint_keeps_indices, ["keypoints[1]", "keypoints[3]", "'type'"]),
        (_swap_not_a_string, ["keypoints[0]", "'swap'"]),
        (_empty_keypoints, ["'keypoints'"]),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_bad_schema_is_rejected_naming_the_field(tmp_path: Path, mutate: Any, expected: list[str]) -> None:
    raw = copy.deepcopy(_valid())
    mutate(raw)
    path = _write(tmp_path, raw)
    with pytest.raises(DataValidationError) as exc:
        load_meta(path)
    message = str(exc.value)
    assert str(path.resolve()) in message, "the message names the file"
    for part in expected:
        assert part in message


def test_invalid_yaml_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(DataValidationError, match="not valid YAML"):
        load_meta(path)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    raw = _valid()
    _duplicate_name(raw)
    _sigma_count(raw)
    _bad_type(raw)
    with pytest.raises(DataValidationError) as exc:
        load_meta(_write(tmp_path, raw))
    fields = {p.field for p in exc.value.problems}
    assert {"name", "sigmas", "type"} <= fields


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(FileNotFoundError, match="coco"):
        load_meta("no_such_schema")


def test_a_data_folder_named_like_a_schema_does_not_shadow_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "coco").mkdir()  # e.g. running from a data root that holds coco/
    monkeypatch.chdir(tmp_path)
    assert load_meta("coco").num_keypoints == 17


def test_missing_yaml_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_meta(tmp_path / "absent.yaml")


# --- a user-added schema -------------------------------------------------------------------


def test_user_schema_by_path_and_by_name_via_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "metas"
    folder.mkdir()
    raw = _valid()
    raw["name"] = "my_rig"
    path = _write(folder, raw, name="my_rig")

    assert load_meta(path).name == "my_rig"
    assert "my_rig" not in available_metas()

    monkeypatch.setenv("POSECORE_META_PATH", str(folder))
    assert "my_rig" in available_metas()
    assert "coco" in available_metas(), "shipped schemas stay visible"
    by_name = load_meta("my_rig")
    assert by_name.num_keypoints == 4
    assert by_name.source == str(path.resolve())


def test_user_schema_on_the_search_path_shadows_a_shipped_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _valid()
    raw["name"] = "coco"
    _write(tmp_path, raw, name="coco")
    monkeypatch.setenv("POSECORE_META_PATH", str(tmp_path))
    assert load_meta("coco").num_keypoints == 4
    monkeypatch.delenv("POSECORE_META_PATH")
    assert load_meta("coco").num_keypoints == 17


# --- the command line ----------------------------------------------------------------------


@pytest.fixture()
def cli_main() -> Any:
    try:
        from posecore.cli import main
    except ImportError as exc:  # another module the CLI imports may be mid-edit
        pytest.skip(f"posecore.cli does not import: {exc}")
    return main


def test_cli_lists_schemas(cli_main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["meta"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split("\t")[0]: line for line in lines}
    assert set(listed) == set(available_metas())
    assert "17 keypoints" in listed["coco"]
    assert "133 keypoints" in listed["coco_wholebody"]


def test_cli_shows_one_schema(cli_main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["meta", "coco"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("coco: 17 keypoints, 19 links")
    assert "left_eye" in out and "swap=right_eye" in out
    assert "sigma=0.026" in out


def test_cli_shows_a_schema_by_path(cli_main: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _valid())
    assert cli_main(["meta", str(path)]) == 0
    assert capsys.readouterr().out.startswith("tiny: 4 keypoints")


def test_cli_reports_a_bad_schema(cli_main: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = _valid()
    _sigma_count(raw)
    assert cli_main(["meta", str(_write(tmp_path, raw))]) == 2
    assert "sigmas" in capsys.readouterr().err


def test_cli_reports_an_unknown_schema(cli_main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["meta", "no_such_schema"]) == 2
    assert "unknown dataset meta" in capsys.readouterr().err
