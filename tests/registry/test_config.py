"""posecore.registry.config: the registered model's name per task, and the register params."""

from __future__ import annotations

import pytest

from posecore.codecs.base import TASKS
from posecore.registry import RegisterConfig, registered_model_name


def test_top_down_keeps_the_base_name_and_one_stage_gets_its_suffix() -> None:
    assert registered_model_name("posecore-pose", "topdown") == "posecore-pose"
    assert registered_model_name("posecore-pose", "onestage") == "posecore-pose-onestage"
    assert len({registered_model_name("m", task) for task in TASKS}) == len(TASKS)  # one name per task


def test_an_unknown_task_is_refused() -> None:
    with pytest.raises(ValueError, match="task must be one of topdown, onestage"):
        registered_model_name("posecore-pose", "bottomup")


def test_the_configured_name_is_the_base() -> None:
    assert RegisterConfig().model_name == "posecore-pose"
