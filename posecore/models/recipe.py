"""A preset's training recipe: the values of params.yaml's ``train:`` / ``augment:`` keys left null.

MMPose's configs carry their schedule with the model. Here a preset file may carry a ``recipe:``
block with the ``train`` and ``augment`` values it was tuned with (the CPU hand and face presets
reach their numbers in 10 epochs, for instance)::

    recipe:
      train: {epochs: 10}

A key params.yaml sets to ``null`` takes the preset's value, or :data:`FALLBACK` when the preset
has none; a number in params.yaml always wins, so ``dvc exp run -S train.epochs=30`` means 30
whatever the preset. The resolved values are what the stages, MLflow and the run's report see.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from typing import Any

from posecore.models.estimator import available_presets, load_preset

__all__ = ["FALLBACK", "RECIPE_SECTIONS", "fill_recipe", "preset_recipe"]

#: The params.yaml sections a recipe may fill.
RECIPE_SECTIONS = ("train", "augment")
#: What a null key takes when the preset's recipe does not set it (the values the top-down presets use).
FALLBACK: dict[str, dict[str, Any]] = {
    "train": {
        "epochs": 21,
        "global_batch_size": 32,
        "batch_size_per_device": 32,
        "ema": False,
        "ema_momentum": 0.0002,
        "ema_gamma": 2000.0,
    },
}


def preset_recipe(preset: str) -> dict[str, dict[str, Any]]:
    """The ``recipe:`` of ``preset`` as {section: {key: value}} ({} for none or no preset).

    Raises ValueError for a recipe that names another section or is not a mapping of mappings."""
    if not preset or preset not in available_presets():
        return {}
    recipe = load_preset(preset).get("recipe") or {}
    where = f"posecore/models/presets/{preset}.yaml: recipe"
    if not isinstance(recipe, Mapping) or not all(isinstance(v, Mapping) for v in recipe.values()):
        raise ValueError(f"{where} must map sections ({', '.join(RECIPE_SECTIONS)}) to {{key: value}}")
    unknown = sorted(set(recipe) - set(RECIPE_SECTIONS))
    if unknown:
        raise ValueError(f"{where}: unknown sections {unknown}; a recipe sets only {', '.join(RECIPE_SECTIONS)}")
    return {section: dict(values) for section, values in recipe.items()}


def fill_recipe(
    raw: Mapping[str, Any], default_preset: str, keys: Mapping[str, Collection[str]]
) -> tuple[dict[str, Any], list[str]]:
    """params.yaml as parsed -> a copy whose null ``train``/``augment`` keys hold the recipe's values,
    and the errors (a recipe key that is not in ``keys[section]``, the section's params.yaml keys;
    a null key that neither the preset's recipe nor :data:`FALLBACK` sets).

    ``default_preset`` is the preset when ``model.preset`` is absent."""
    out = copy.deepcopy(dict(raw))
    model = out.get("model") if isinstance(out.get("model"), Mapping) else {}
    preset = model.get("preset", default_preset)
    errors: list[str] = []
    try:
        recipe = preset_recipe(preset) if isinstance(preset, str) else {}
    except ValueError as exc:
        return out, [str(exc)]
    for section, values in recipe.items():
        unknown = sorted(set(values) - set(keys.get(section, ())))
        if unknown:
            errors.append(
                f"posecore/models/presets/{preset}.yaml: recipe.{section}: unknown keys {unknown}; allowed: "
                f"{', '.join(keys.get(section, ()))}"
            )
    for section in RECIPE_SECTIONS:
        values = out.get(section)
        if not isinstance(values, dict):
            continue
        for key in [k for k, v in values.items() if v is None]:
            for source in (recipe, FALLBACK):
                if key in source.get(section, {}):
                    values[key] = source[section][key]
                    break
            else:
                del values[key]  # reported once, here, not again as a wrong type
                errors.append(
                    f"{section}.{key}: null means the preset's recipe, but preset {preset!r} has none for it and "
                    "there is no fallback; set a value"
                )
    return out, errors
