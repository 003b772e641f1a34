"""Session files: a round trip keeps everything, nothing is overwritten unasked, and a
damaged or foreign file is one line that names it."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from medstyle_gui.core.explore import ExplorerState
from medstyle_gui.core.session import (
    SessionError,
    load_session,
    restore_into,
    save_session,
)
from tests.core.test_explore import mr_state
from trainer.errors import MedstyleError


def full_state() -> ExplorerState:
    state = mr_state(
        moves={"modality": 1.5, "slice": -0.25},
        tau=0.7,
        mix_layers=("8x8", "16-32"),
        mix_source="slice",
        mix_slice=6,
        mix_seed=11,
        window=(40.0, 400.0),
        seed=5,
        seed_w=np.arange(4, dtype=np.float32),
    )
    state.encoder_latents[4] = np.full(4, 0.5, np.float32)
    state.paired_encoder_latents[2] = np.full(4, -0.5, np.float32)
    state.embed_errors[4] = {"encoder": 0.31, "refined": 0.12}
    return state


def test_save_and_reopen_round_trip(tmp_path):
    state = full_state()
    path = save_session(tmp_path / "a.medstyle", state, {"model": "/models/demo", "k": [1, 2]})
    saved, scans, extra = load_session(path)
    assert extra == {"model": "/models/demo", "k": [1, 2]}
    assert scans["source"] == {"path": "/scans/MR.nii.gz", "series_uid": None, "modality": "MR"}
    assert scans["paired"]["modality"] == "CT"
    assert saved.source is None and saved.paired is None  # the caller opens the scans
    for name in ("latents", "encoder_latents", "paired_latents", "paired_encoder_latents"):
        mine, theirs = getattr(state, name), getattr(saved, name)
        assert sorted(mine) == sorted(theirs), name
        for key in mine:
            assert np.array_equal(mine[key], theirs[key])
    assert saved.embed_errors == {4: {"encoder": 0.31, "refined": 0.12}}
    assert saved.moves == state.moves
    assert (saved.tau, saved.mix_layers, saved.mix_source) == (0.7, ("8x8", "16-32"), "slice")
    assert (saved.mix_slice, saved.mix_seed, saved.seed) == (6, 11, 5)
    assert saved.window == (40.0, 400.0)
    assert saved.index == 4
    assert np.array_equal(saved.seed_w, state.seed_w)


def test_relative_paths_are_saved_absolute(tmp_path, monkeypatch):
    # a session saved from one directory opens from any other
    work = tmp_path / "work"
    (work / "models" / "demo").mkdir(parents=True)
    (work / "scans").mkdir()
    (work / "scans" / "MR.nii.gz").write_bytes(b"")
    state = full_state()
    state.source.path = "scans/MR.nii.gz"
    monkeypatch.chdir(work)
    extra = {"model": "models/demo", "opened": {"kind": "scan", "path": "scans/MR.nii.gz"}}
    path = save_session("s.medstyle", state, extra)
    assert extra["model"] == "models/demo"  # the caller's dict is left alone
    monkeypatch.chdir(tmp_path)
    _, scans, extra = load_session(work / path)
    assert extra["model"] == str(work / "models" / "demo")
    assert extra["opened"] == {"kind": "scan", "path": str(work / "scans" / "MR.nii.gz")}
    assert scans["source"]["path"] == str(work / "scans" / "MR.nii.gz")


def test_restore_into_an_open_scan_keeps_its_slots(tmp_path):
    path = save_session(tmp_path / "a.medstyle", full_state())
    saved, _, _ = load_session(path)
    target = mr_state()
    target.latents.clear()
    restore_into(target, saved, directions={"slice"}, latents=True)
    assert target.source is not None and target.index == 4
    assert target.moves == {"slice": -0.25}  # only directions the model has
    assert sorted(target.latents) == [4, 6]
    other = mr_state()
    other.latents.clear()
    restore_into(other, saved, directions=set(), latents=False)
    assert not other.latents and other.tau == 0.7


def test_an_empty_state_round_trips(tmp_path):
    path = save_session(tmp_path / "empty.medstyle", ExplorerState())
    saved, scans, extra = load_session(path)
    assert scans == {"source": None, "paired": None} and extra == {}
    assert saved.latents == {} and saved.seed_w is None and saved.window is None


def test_refuses_to_overwrite_without_the_flag(tmp_path):
    path = tmp_path / "a.medstyle"
    save_session(path, full_state())
    before = path.read_bytes()
    with pytest.raises(MedstyleError, match="already exists") as err:
        save_session(path, ExplorerState())
    assert str(path) in str(err.value)
    assert path.read_bytes() == before
    save_session(path, ExplorerState(), overwrite=True)
    assert load_session(path)[0].latents == {}
    assert [p.name for p in tmp_path.iterdir()] == ["a.medstyle"]  # no temporary debris


def _one_line_naming(err: pytest.ExceptionInfo, path) -> str:
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.medstyle"
    with pytest.raises(SessionError) as err:
        load_session(path)
    assert "does not exist" in _one_line_naming(err, path)


def test_a_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "junk.medstyle"
    path.write_bytes(b"this is not a session\x00\x01" * 10)
    with pytest.raises(SessionError) as err:
        load_session(path)
    assert "not a medstyle session" in _one_line_naming(err, path)


def test_another_hdf5_file(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros(3)
    with pytest.raises(SessionError) as err:
        load_session(path)
    assert "not a medstyle session" in _one_line_naming(err, path)


def test_a_truncated_session(tmp_path):
    path = save_session(tmp_path / "a.medstyle", full_state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SessionError) as err:
        load_session(path)
    _one_line_naming(err, path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f.attrs.__setitem__("state", "{not json"),
        lambda f: f.attrs.__delitem__("state"),
        lambda f: f.__delitem__("latents/refined/w"),
        lambda f: f.attrs.__setitem__("state", '{"mix_source": "elsewhere"}'),
        lambda f: f.attrs.__setitem__("state", '{"window": [1, 2, 3]}'),
    ],
    ids=["bad-json", "no-state", "no-latents", "bad-mix-source", "bad-window"],
)
def test_a_damaged_session(tmp_path, damage):
    path = save_session(tmp_path / "a.medstyle", full_state())
    with h5py.File(path, "a") as f:
        damage(f)
    with pytest.raises(SessionError) as err:
        load_session(path)
    assert "is damaged" in _one_line_naming(err, path)


def test_a_newer_format_is_refused(tmp_path):
    path = save_session(tmp_path / "a.medstyle", ExplorerState())
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(SessionError) as err:
        load_session(path)
    assert "newer medstyle" in _one_line_naming(err, path)
