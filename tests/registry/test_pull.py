"""posecore.registry.pull: resolving references, pulling a version's bundle, the champion's record, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from registry_store import (  # tests/_helpers (put on sys.path by tests/conftest.py)
    H,
    K,
    Store,
    W,
    champion_of,
    cross_crop,
    make_version,
    tiny_bundle,
)

from posecore import registry
from posecore.export.bundle import BundleInfo
from posecore.registry import RegisterConfig, RegistryError, log_bundle, parse_model_ref, promote, pull
from posecore.registry.pull import champion_record


def test_pull_gives_the_logged_bundle(store: Store, bundle: Path, logged: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "pulled"
    (out).mkdir()
    (out / "stale.txt").write_text("old")
    assert pull(f"{logged['name']}@champion", out, client=store.client).version == logged["version"].version
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "model.onnx"]
    for name in ("model.onnx", "bundle.json"):
        assert (out / name).read_bytes() == (bundle / name).read_bytes()
    pull(f"models:/{logged['name']}/{logged['version'].version}", tmp_path / "by-version", client=store.client)
    assert (tmp_path / "by-version" / "model.onnx").read_bytes() == (bundle / "model.onnx").read_bytes()

    from posecore.inference import BundleModel

    kps, _ = BundleModel(out).predict_crops(cross_crop(H, W, 7, 20)[None])
    np.testing.assert_allclose(kps[0], [[7, 20]] * K)


def test_pull_keeps_the_old_folder_when_the_download_does_not_verify(
    store: Store, logged: dict[str, Any], tmp_path: Path
) -> None:
    name, version = logged["name"], logged["version"].version
    out = tmp_path / "pulled"
    pull(f"{name}@champion", out, client=store.client)
    before = (out / "model.onnx").read_bytes()
    store.client.set_model_version_tag(name, version, registry.TAG_SHA + "model.onnx", "0" * 64)
    try:
        with pytest.raises(RegistryError, match="SHA-256"):
            pull(f"{name}@champion", out, client=store.client)
    finally:
        store.client.set_model_version_tag(
            name, version, registry.TAG_SHA + "model.onnx", logged["version"].tags[registry.TAG_SHA + "model.onnx"]
        )
    assert (out / "model.onnx").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pulled"]  # no temporary folders left
    with pytest.raises(RegistryError, match="no version with alias"):
        pull(f"{name}@nobody", tmp_path / "x", client=store.client)
    with pytest.raises(ValueError, match="NAME@champion"):
        parse_model_ref("no-alias-or-version")


def test_cli_list_show_promote_and_pull(
    store: Store, logged: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from posecore.cli import main

    uri = ["--tracking-uri", store.uri]
    assert main(["registry", "list", "--json", *uri]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[logged["name"]]["champion"] == str(logged["version"].version) and rows[logged["name"]]["metric"] == "AP"
    assert main(["registry", "list", *uri]) == 0
    assert f"champion={logged['version'].version}" in capsys.readouterr().out
    assert main(["registry", "show", logged["name"], *uri]) == 0
    assert f"v{logged['version'].version}" in capsys.readouterr().out

    name = store.model_name("cli")
    promote(store.client, name, make_version(store, name, 0.5), RegisterConfig())
    worse = make_version(store, name, 0.4)
    assert main(["registry", "promote", name, worse, *uri]) == 1
    assert "rejected" in capsys.readouterr().out and champion_of(store, name) != worse
    assert main(["registry", "promote", name, worse, "--force", "--json", *uri]) == 0
    assert json.loads(capsys.readouterr().out)["forced"] and champion_of(store, name) == worse
    assert main(["registry", "promote", name, "99", *uri]) == 2

    out = tmp_path / "bundle"
    assert main(["pull", f"{logged['name']}@champion", "--out", str(out), *uri]) == 0
    assert (out / "model.onnx").is_file() and (out / "bundle.json").is_file()
    assert main(["pull", f"{logged['name']}@nobody", "--out", str(out), *uri]) == 2
    missing = tmp_path / "none.db"
    assert main(["registry", "list", "--tracking-uri", f"sqlite:///{missing}"]) == 2
    assert not missing.exists()  # no empty store is created by a typo
    assert "no MLflow store" in capsys.readouterr().err


def _mv(**tags: str) -> Any:
    return SimpleNamespace(name="pose", version=4, run_id="run1", tags=tags)


def test_champion_record_reads_the_registration_tags() -> None:
    c = champion_record(
        _mv(**{registry.TAG_METRIC: "AP", registry.TAG_VALUE: "0.7", registry.TAG_EVAL_DATA: "md5:a"}), "champion"
    )
    assert (c.model_name, c.version, c.alias, c.run_id) == ("pose", "4", "champion", "run1")
    assert (c.metric, c.recorded_value, c.eval_data, c.higher_is_better) == ("AP", 0.7, "md5:a", True)
    epe = champion_record(_mv(**{registry.TAG_METRIC: "EPE", registry.TAG_VALUE: "nan"}), "champion")
    assert epe.recorded_value is None and not epe.higher_is_better
    told = champion_record(_mv(**{registry.TAG_METRIC: "EPE", registry.TAG_HIGHER: "true"}), "champion")
    assert told.higher_is_better and told.recorded_value is None and told.eval_data is None
    assert c.task == "topdown"  # registered before the task tag
    assert champion_record(_mv(**{registry.TAG_TASK: "onestage"}), "champion").task == "onestage"


def test_champion_lookups_use_the_registered_name_of_the_task() -> None:
    assert registry.champion_ref("posecore-pose", "topdown") == "posecore-pose@champion"
    assert registry.champion_ref("posecore-pose", "onestage") == "posecore-pose-onestage@champion"
    assert registry.champion_ref("m", "onestage", "challenger") == "m-onestage@challenger"
    assert parse_model_ref(registry.champion_ref("m", "onestage")) == ("m-onestage", "champion", None)


def test_a_one_stage_champion_is_pulled_under_its_name(store: Store, tmp_path: Path) -> None:
    base = store.model_name("pull")
    bundle = tiny_bundle(tmp_path / "onestage", task="onestage")
    cfg = RegisterConfig(model_name=base)
    mv = log_bundle(bundle, store.new_run(), cfg, metric_value=0.5, eval_data="md5:val")
    assert mv is not None
    promote(store.client, mv.name, mv.version, cfg)
    pulled = pull(registry.champion_ref(base, "onestage"), tmp_path / "out", client=store.client)
    assert (pulled.name, pulled.version) == (f"{base}-onestage", mv.version)
    assert BundleInfo.read(tmp_path / "out").task == "onestage"
    assert registry.describe_version(store.client.get_model_version(mv.name, mv.version))["task"] == "onestage"
    with pytest.raises(RegistryError, match="no version with alias"):  # nothing under the top-down name
        pull(registry.champion_ref(base, "topdown"), tmp_path / "none", client=store.client)
