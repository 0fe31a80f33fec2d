"""A preset's training recipe fills params.yaml's null train/augment keys; numbers in params.yaml win."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from posecore.config import ConfigError, load_params
from posecore.models import estimator
from posecore.models.recipe import FALLBACK, fill_recipe, preset_recipe

REPO = Path(__file__).resolve().parents[2]
DEFAULT = "synthetic-lite0-heatmap"


@pytest.fixture
def presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A preset folder with the default preset and ``tuned``: the same model with a recipe."""
    text = (estimator.PRESET_DIR / f"{DEFAULT}.yaml").read_text()
    (tmp_path / f"{DEFAULT}.yaml").write_text(text)
    recipe = {"train": {"epochs": 7, "global_batch_size": 64}, "augment": {"rotate_factor": 5.0}}
    (tmp_path / "tuned.yaml").write_text(yaml.safe_dump({**yaml.safe_load(text), "recipe": recipe}))
    monkeypatch.setattr(estimator, "PRESET_DIR", tmp_path)
    return tmp_path


def _params(tmp_path: Path, **sections: dict) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in sections.items():
        raw[section].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_null_keys_take_the_presets_recipe_then_the_fallback(presets: Path, tmp_path: Path) -> None:
    nulls = {"epochs": None, "global_batch_size": None, "batch_size_per_device": None}
    path = _params(tmp_path, model={"preset": "tuned"}, train=nulls, augment={"rotate_factor": None})
    params = load_params(path)
    assert (params.train.epochs, params.train.global_batch_size) == (7, 64)
    assert params.train.batch_size_per_device == FALLBACK["train"]["batch_size_per_device"]
    assert params.augment.rotate_factor == 5.0
    plain = load_params(_params(tmp_path, model={"preset": DEFAULT}, train=nulls))
    assert plain.train.epochs == FALLBACK["train"]["epochs"]
    assert plain.train.global_batch_size == FALLBACK["train"]["global_batch_size"]


def test_a_number_in_params_wins_over_the_recipe(presets: Path, tmp_path: Path) -> None:
    params = load_params(
        _params(tmp_path, model={"preset": "tuned"}, train={"epochs": 3}), {"augment.rotate_factor": 9}
    )
    assert params.train.epochs == 3 and params.augment.rotate_factor == 9.0


def test_a_null_nobody_fills_is_one_clear_error(presets: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_params(_params(tmp_path, model={"preset": "tuned"}), {"train.lr": None})
    assert err.value.errors == [
        "train.lr: null means the preset's recipe, but preset 'tuned' has none for it and there is no fallback; "
        "set a value"
    ]


def test_a_recipe_for_another_section_is_refused(presets: Path) -> None:
    raw = yaml.safe_load((presets / "tuned.yaml").read_text())
    (presets / "bad.yaml").write_text(yaml.safe_dump({**raw, "recipe": {"model": {"head": {}}}}))
    with pytest.raises(ValueError, match=r"bad.yaml: recipe: unknown sections \['model'\]"):
        preset_recipe("bad")
    _, errors = fill_recipe({"model": {"preset": "bad"}, "train": {"epochs": None}}, DEFAULT, {"train": ["epochs"]})
    assert len(errors) == 1 and "unknown sections" in errors[0]


def test_a_misspelt_recipe_key_is_refused_naming_the_preset_file(presets: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load((presets / "tuned.yaml").read_text())
    (presets / "typo.yaml").write_text(yaml.safe_dump({**raw, "recipe": {"train": {"epoch": 5}}}))
    with pytest.raises(ConfigError) as err:
        load_params(_params(tmp_path, model={"preset": "typo"}))
    assert len(err.value.errors) == 1
    assert err.value.errors[0].startswith("posecore/models/presets/typo.yaml: recipe.train: unknown keys ['epoch']")
    assert "epochs" in err.value.errors[0]


def test_the_shipped_params_resolve_each_presets_own_recipe() -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    nulls = [key for key, value in raw["train"].items() if value is None]
    assert nulls, "params.yaml leaves the recipe keys null"
    for preset in estimator.available_presets():
        params = load_params(REPO / "params.yaml", {"model.preset": preset})
        recipe = {**FALLBACK["train"], **preset_recipe(preset).get("train", {})}
        for key in nulls:
            assert getattr(params.train, key) == recipe[key], (preset, key)
