"""posecore.experiment.lineage: what produced a run (git, dvc.lock, runtime), never raising."""

from __future__ import annotations

from pathlib import Path

import pytest

from posecore.experiment import git_commit, lineage_tags


def test_lineage_without_git_or_dvc_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("WORLD_SIZE", "4")
    tags = lineage_tags(tmp_path)
    assert "git.commit" not in tags and "data.version" not in tags
    assert tags["world_size"] == "4"
    assert tags["python.version"].count(".") == 2


def test_lineage_dirty_tree(repo) -> None:
    root, commit = repo
    (root / "README.md").write_text("changed\n")
    tags = lineage_tags(root)
    assert tags["git.commit"] == commit
    assert tags["git.dirty"] == "true"


def test_git_commit_of_a_checkout_and_of_a_plain_folder(repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, commit = repo
    assert git_commit(root) == {"git_commit": commit, "git_dirty": False}
    (root / "README.md").write_text("changed\n")
    assert git_commit(root) == {"git_commit": commit, "git_dirty": True}
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert git_commit(plain) == {"git_commit": None}
