"""Tuned ROVER parameters next to the data (nowcast/baselines/tuning.py, tune_rover)."""

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from support import load_script, write_moving_blob

from nowcast.baselines.tuning import (
    apply_tuned_params,
    load_tuned_params,
    save_tuned_params,
    tuned_params_path,
)

ROOT = Path(__file__).resolve().parents[2]
SPECS = {
    "Persistence": {"_target_": "nowcast.baselines.Persistence"},
    "ROVER1": {"_target_": "nowcast.baselines.Rover", "variant": 1, "alpha": 20.0},
    "ROVER3": {"_target_": "nowcast.baselines.rover.Rover", "variant": 3},
}
PROVENANCE = {"variant": 1, "score": {"csi@0.5": 0.61234, "rainfall_mse": 0.2}}


def test_path_is_next_to_the_processed_file():
    assert tuned_params_path("data/fmi/processed.nc") == Path(
        "data/fmi/processed_rover.yaml"
    )
    assert tuned_params_path(Path("/x/y/hko.v2.nc")) == Path("/x/y/hko.v2_rover.yaml")


def test_without_a_file_the_defaults_are_kept_and_said(tmp_path):
    data = tmp_path / "processed.nc"
    assert load_tuned_params(data) is None
    specs, note = apply_tuned_params(SPECS, data)
    assert specs == SPECS and specs is not SPECS
    assert note == (
        "ROVER flow parameters: built-in defaults (no processed_rover.yaml next to "
        "the data)"
    )
    _, note = apply_tuned_params(SPECS, None)
    assert "built-in defaults" in note


def test_with_a_file_every_rover_gets_the_tuned_values(tmp_path):
    data = tmp_path / "processed.nc"
    params = {"method": "dis", "alpha": 5.0, "patch_size": 8}
    written = save_tuned_params(data, params, PROVENANCE)
    assert written == tmp_path / "processed_rover.yaml"
    assert load_tuned_params(data) == params
    specs, note = apply_tuned_params(OmegaConf.create(SPECS), data)  # DictConfig too
    assert specs["ROVER1"] == {**SPECS["ROVER1"], **params}  # alpha 20 -> 5
    assert specs["ROVER3"]["variant"] == 3 and specs["ROVER3"]["patch_size"] == 8
    assert specs["Persistence"] == SPECS["Persistence"]
    assert note.startswith("ROVER flow parameters tuned on processed.nc (validation")
    assert "csi@0.5 0.6123" in note and "alpha=5.0" in note
    # the specs build Rovers that carry the tuned values
    from hydra.utils import instantiate

    rover = instantiate(specs["ROVER3"])
    assert rover.variant == 3 and rover.flow_params["alpha"] == 5.0


def test_rovers_of_another_flow_method_keep_their_defaults(tmp_path):
    data = tmp_path / "processed.nc"
    save_tuned_params(data, {"method": "dis", "alpha": 5.0}, PROVENANCE)
    fast = {"_target_": "nowcast.baselines.Rover", "variant": 1, "method": "dis_fast"}
    specs, note = apply_tuned_params({"fast": fast}, data)
    assert specs["fast"] == fast
    assert "not applied to fast" in note


def test_a_broken_file_is_explained(tmp_path):
    data = tmp_path / "processed.nc"
    tuned_params_path(data).write_text("alpha: 5.0\n")  # no `params` mapping
    with pytest.raises(ValueError, match="no 'params' mapping.*tune_rover.py"):
        load_tuned_params(data)
    tuned_params_path(data).write_text("params: {variant: 2}\n")
    with pytest.raises(ValueError, match=r"not \['variant'\]"):
        apply_tuned_params(SPECS, data)


def _tune_script():
    return load_script("scripts/tune_rover.py", "tune_rover")


def test_tune_rover_writes_next_to_the_data_and_into_its_run(tmp_path):
    data = write_moving_blob(tmp_path / "data" / "processed.nc")
    tracked = sorted((ROOT / "configs" / "baseline").glob("*.yaml"))
    before = {p: p.stat().st_mtime_ns for p in tracked}
    out = _tune_script().main(
        [
            "--data",
            str(data),
            "--alpha",
            "5",
            "20",
            "--patch-size",
            "8",
            "--max-batches",
            "1",
            "--batch-size",
            "2",
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    assert out["path"] == tmp_path / "data" / "processed_rover.yaml"
    content = yaml.safe_load(out["path"].read_text())
    assert content["params"]["alpha"] in (5.0, 20.0)
    assert content["params"]["patch_size"] == 8
    prov = content["provenance"]
    assert prov["split"]["name"] == "val" and prov["split"]["counts"] == [4, 1, 1]
    assert prov["grid"]["alpha"] == [5.0, 20.0]
    assert 0.0 <= prov["score"]["csi@0.5"] <= 1.0
    # the best point is the first of the ranking by CSI@0.5
    best_csi = max(r["csi@0.5"] for r in out["results"])
    assert prov["score"]["csi@0.5"] == pytest.approx(best_csi)
    # a copy and the grid table in the run directory
    run_files = sorted(p.name for p in out["run_dir"].iterdir())
    assert run_files == ["grid.md", "processed_rover.yaml"]
    table = (out["run_dir"] / "grid.md").read_text()
    assert table.count("\n| 1 |") == 1 and table.count("\n| 2 |") == 1
    # the evaluation of this file now uses them; nothing else was written
    assert load_tuned_params(data) == content["params"]
    written = sorted(
        str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()
    )
    assert written == [
        "data/processed.nc",
        "data/processed_rover.yaml",
        *(str((out["run_dir"] / n).relative_to(tmp_path)) for n in run_files),
    ]
    assert {p: p.stat().st_mtime_ns for p in tracked} == before
