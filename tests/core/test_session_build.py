"""``medstyle session``: a paired study embedded offline, saved, moved and reopened."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medstyle_gui import resources_path
from medstyle_gui.cli import main
from medstyle_gui.core.session import load_session, relocate
from medstyle_gui.core.session_build import describe_inputs
from trainer.errors import ConfigError

DEMO_STUDY = Path(str(resources_path("demo", "study")))


@pytest.fixture(scope="module")
def built(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the demo study, the tiny model and a session of both (2 steps)."""
    folder = tmp_path_factory.mktemp("built") / "work"
    folder.mkdir()
    shutil.copytree(DEMO_STUDY, folder / "study")
    shutil.copytree(tiny_bundle, folder / "model")
    code = main(
        [
            "session",
            str(folder / "study"),
            "--model",
            str(folder / "model"),
            "--out",
            str(folder / "s.medstyle"),
            "--refine-steps",
            "2",
            "--batch",
            "64",
            "--quiet",
        ]
    )
    assert code == 0
    return folder


def test_every_slice_of_both_modalities_is_embedded(built: Path, capsys) -> None:
    state, scans, extra = load_session(built / "s.medstyle")
    assert scans["source"]["modality"] == "MR" and scans["paired"]["modality"] == "CT"
    n = 88  # the demo study's slices
    assert sorted(state.latents) == list(range(n)) == sorted(state.paired_latents)
    assert sorted(state.encoder_latents) == list(range(n))
    assert state.index == n // 2
    errors = state.embed_errors[state.index]
    assert errors["refined"] <= errors["encoder"] * 1.05  # two steps: no worse
    assert all(np.isfinite(w).all() for w in state.latents.values())
    assert extra["opened"]["kind"] == "pair" and extra["model_sha256"]


def test_a_moved_session_finds_its_scans_and_model(built: Path, tmp_path: Path) -> None:
    moved = Path(shutil.copytree(built, tmp_path / "elsewhere"))
    shutil.rmtree(built.parent / "gone", ignore_errors=True)
    original = built.rename(built.parent / "gone")  # the original paths no longer exist
    try:
        _, scans, extra = load_session(moved / "s.medstyle")
    finally:
        original.rename(built)
    assert Path(scans["source"]["path"]).is_relative_to(moved.resolve())
    assert Path(extra["model"]) == (moved / "model").resolve()
    assert Path(extra["opened"]["ct"]) == (moved / "study").resolve()


def test_relocate_prefers_what_moved_along_and_keeps_what_it_cannot_find(tmp_path: Path) -> None:
    old = tmp_path / "old"
    (old / "scans").mkdir(parents=True)
    (old / "scans" / "a.nii").write_bytes(b"")
    new = tmp_path / "new"
    new.mkdir()
    saved = str(old / "scans" / "a.nii")
    assert relocate(saved, str(old), new) == saved  # nothing at the new place: as saved
    (new / "scans").mkdir()
    (new / "scans" / "a.nii").write_bytes(b"")
    # the copy that moved with the session wins, though the original still exists
    assert relocate(saved, str(old), new) == str((new / "scans" / "a.nii").resolve())
    assert relocate("", str(old), new) == ""


def test_describe_inputs() -> None:
    assert describe_inputs([DEMO_STUDY])["kind"] == "pair"
    assert describe_inputs(["a.nii"]) == {"kind": "scan", "path": "a.nii", "series_uid": None}
    pair = describe_inputs(["ct.nii", "mr.nii"])
    assert (pair["ct"], pair["mr"]) == ("ct.nii", "mr.nii")
    with pytest.raises(ConfigError):
        describe_inputs(["a", "b", "c"])


def test_an_existing_output_is_refused_before_any_work(built: Path, capsys) -> None:
    code = main(
        [
            "session",
            str(built / "study"),
            "--model",
            str(built / "model"),
            "--out",
            str(built / "s.medstyle"),
        ]
    )
    assert code == 1
    assert "s.medstyle" in capsys.readouterr().err
