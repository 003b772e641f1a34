"""The explorer's pure functions, without Qt: which latent is rendered, what it is scored
against, and the request that carries it all.

A hand-made model in a 4-d W makes every case exact: "modality" separates MR (x0 < 0)
from CT (x0 > 0), "slice" runs along x1 with 0.5 normal units per slice.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from medstyle_gui.core import explore
from medstyle_gui.core.explore import ExplorerState, ScanSlot
from medstyle_gui.core.latents import SliceSet
from trainer.data.volume import Volume
from trainer.directions import linear_direction

N, R = 10, 8


def fake_model():
    modality = linear_direction("modality", ("MR", "CT"), np.eye(4)[0], 0.0)
    slice_dir = linear_direction("slice", ("inferior", "superior"), np.eye(4)[1], 0.0)
    slice_dir.calibration = {"units_per_slice": 0.5, "units_per_mm": 0.1, "mm_per_slice": 5.0}
    sex = linear_direction("sex", ("F", "M"), np.eye(4)[2], 0.0)
    both = linear_direction("modality|slice", ("MR", "CT"), np.eye(4)[0], 0.0)
    directions = {d.name: d for d in (modality, slice_dir, sex, both)}
    return SimpleNamespace(
        directions=directions, w_mean=torch.zeros(4), device=torch.device("cpu"), w_dim=4
    )


def slot(modality: str, base: float) -> ScanSlot:
    """A scan whose slice i is filled with ``base + i`` (native units)."""
    array = base + np.arange(N, dtype=np.float32)[:, None, None] * np.ones((1, R, R), np.float32)
    volume = Volume(array=array, spacing_mm=(5.0, 2.0, 2.0), modality=modality)
    images = np.zeros((N, R, R), np.float32)
    return ScanSlot(
        f"/scans/{modality}.nii.gz", None, SliceSet(images, {}, "test"), volume, modality
    )


def mr_state(**kw) -> ExplorerState:
    """MR source (slices 100 + i) paired with CT (slices -500 + i), slice 4 embedded at
    x0 = -1 (MR side), slice 6 at x0 = -1 too."""
    state = ExplorerState(source=slot("MR", 100.0), paired=slot("CT", -500.0), index=4, **kw)
    state.latents[4] = np.array([-1.0, 0.0, 0.0, 0.0], np.float32)
    state.latents[6] = np.array([-1.0, 0.3, 0.0, 0.0], np.float32)
    state.paired_latents[4] = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
    return state


def truth_value(state: ExplorerState, model) -> tuple[float | None, str]:
    truth, label = explore.ground_truth(state, model)
    return (None if truth is None else float(truth[0, 0])), label


# -- current_w -----------------------------------------------------------------------------


def test_current_w_is_the_slice_latent_then_the_encoder_guess_then_the_seed():
    model = fake_model()
    seed = np.full(4, 7.0, np.float32)
    state = mr_state(seed_w=seed)
    assert np.array_equal(explore.current_w(state, model), state.latents[4])
    state.index = 5
    assert explore.current_w(state, model) is seed
    state.encoder_latents[5] = np.ones(4, np.float32)
    assert np.array_equal(explore.current_w(state, model), np.ones(4))
    empty = ExplorerState(seed_w=seed)
    assert explore.current_w(empty, model) is seed
    assert explore.current_w(ExplorerState(), model) is None


# -- ground truth --------------------------------------------------------------------------


def test_without_moves_the_truth_is_the_source_slice():
    value, label = truth_value(mr_state(), fake_model())
    assert value == 104.0
    assert label == "source MR slice 4"


@pytest.mark.parametrize("name", ["modality", "modality|slice"])
def test_a_modality_move_across_the_surface_is_scored_against_the_paired_slice(name):
    model = fake_model()
    state = mr_state(moves={name: 2.0})  # x0: -1 -> +1, the CT side
    value, label = truth_value(state, model)
    assert value == -496.0
    assert "paired CT slice 4" in label
    assert explore.render_modality(state, model) == "CT"


def test_a_modality_move_that_stays_on_the_source_side_keeps_the_source_slice():
    model = fake_model()
    state = mr_state(moves={"modality": 0.5})  # x0: -1 -> -0.5, still MR
    assert truth_value(state, model)[0] == 104.0
    assert explore.render_modality(state, model) == "MR"


def test_crossing_without_a_paired_scan_has_no_truth_and_says_why():
    model = fake_model()
    state = mr_state(moves={"modality": 2.0})
    state.paired = None
    value, label = truth_value(state, model)
    assert value is None
    assert "open a paired study" in label


def test_a_slice_move_is_scored_against_the_sought_slice_from_the_calibration():
    model = fake_model()
    state = mr_state(moves={"slice": 1.0})  # 1.0 / 0.5 units per slice = 2 slices up
    assert explore.sought_slice(state, model) == 6
    value, label = truth_value(state, model)
    assert value == 106.0
    assert "sought MR slice 6 (+2)" in label
    state.moves = {"slice": -0.74}  # -1.48 slices rounds to -1
    assert explore.sought_slice(state, model) == 3
    assert truth_value(state, model)[0] == 103.0


def test_slice_and_modality_moves_together_seek_the_paired_slice_there():
    model = fake_model()
    state = mr_state(moves={"modality": 2.0, "slice": -1.5})
    value, label = truth_value(state, model)
    assert value == -500.0 + 1  # paired CT, slice 4 - 3
    assert "paired sought CT slice 1" in label


def test_a_sought_slice_outside_the_scan_has_no_truth():
    model = fake_model()
    state = mr_state(moves={"slice": 5.0})  # +10 slices from 4
    value, label = truth_value(state, model)
    assert value is None
    assert "outside the scan" in label


def test_an_uncalibrated_slice_direction_seeks_nothing():
    model = fake_model()
    model.directions["slice"].calibration = None
    state = mr_state(moves={"slice": 1.0})
    assert explore.sought_slice(state, model) is None
    assert truth_value(state, model)[0] == 104.0


def test_other_moves_keep_the_source_slice():
    assert truth_value(mr_state(moves={"sex": 3.0}), fake_model())[0] == 104.0


def test_mixing_in_the_paired_styles_is_scored_against_the_paired_slice():
    model = fake_model()
    state = mr_state(mix_layers=("8x8",), mix_source="paired")
    assert truth_value(state, model)[0] == -496.0
    state.paired_latents.clear()  # not embedded: no mix, the source stays the truth
    assert explore.mix_w(state, model) is None
    assert truth_value(state, model)[0] == 104.0


def test_no_scan_or_no_latent_means_no_truth():
    model = fake_model()
    assert explore.ground_truth(ExplorerState(seed_w=np.zeros(4)), model)[0] is None
    state = mr_state()
    state.index = 5  # not embedded
    value, label = truth_value(state, model)
    assert value is None
    assert "not embedded" in label


def test_a_latent_the_model_reads_as_the_other_modality_is_flagged():
    model = fake_model()
    state = mr_state()  # slice 4 refined on the MR side (x0 = -1)
    ct_like = np.array([1.0, 0.0, 0.0, 0.0], np.float32)  # CT at sigmoid(1) = 73 %
    assert explore.misread_note(state, model, state.latents[4], "MR") == ""
    note = explore.misread_note(state, model, ct_like, "MR")
    assert "reads this latent as CT (73 %), not as the MR it is drawn as" in note
    assert note.endswith(
        "its sliders may not mean here what they mean on the scans it was trained on."
    )
    state.index = 5  # only the encoder's guess: refining is the first thing to try
    state.encoder_latents[5] = ct_like
    assert "refine the slice (Embed panel) before trusting" in explore.misread_note(
        state, model, ct_like, "MR"
    )
    # near the surface (CT 55 %) the reading says nothing either way
    assert explore.misread_note(state, model, np.array([0.2, 0, 0, 0], np.float32), "MR") == ""
    # a style mix draws the other modality on purpose; a random latent has no scan
    mixed = mr_state(mix_layers=("8x8",), mix_source="paired")
    assert explore.misread_note(mixed, model, ct_like, "MR") == ""
    assert explore.misread_note(ExplorerState(seed_w=ct_like), model, ct_like, "MR") == ""


def test_misread_rows_and_the_embed_command_s_note(capsys):
    from medstyle_gui.cli_latent import _say_misread

    model = fake_model()
    ws = np.zeros((4, 4), np.float32)
    ws[:, 0] = [-2.0, 2.0, 0.2, 2.0]  # MR 88 %, CT 88 %, CT 55 % (too near), CT 88 %
    modalities = ["MR", "MR", "MR", "CT"]
    assert explore.misread_rows(model, ws, modalities).tolist() == [False, True, False, False]
    _say_misread(model, ws, modalities)
    assert "reads 1 of 4 MR slices as the other modality" in capsys.readouterr().out
    _say_misread(model, ws[[0, 3]], ["MR", "CT"])  # every slice read as what it is
    assert capsys.readouterr().out == ""
    plain = SimpleNamespace(directions={}, w_dim=4)  # a model without directions
    assert not explore.misread_rows(plain, ws, modalities).any()


# -- the request ----------------------------------------------------------------------------


def test_build_request_carries_moves_tau_mix_truth_and_stamp():
    model = fake_model()
    state = mr_state(
        moves={"sex": 0.5, "slice": 0.0, "nonexistent": 3.0},
        tau=0.7,
        mix_layers=("4x4", "8x8"),
        mix_source="slice",
        mix_slice=6,
    )
    request = explore.build_request(state, model, stamp=42)
    assert request is not None
    assert request.stamp == 42
    assert request.moves == (("sex", 0.5),)  # zero moves and unknown directions left out
    assert request.tau == 0.7
    assert request.mix_layers == ("4x4", "8x8")
    assert np.array_equal(request.mix_w, state.latents[6])
    assert np.array_equal(request.w, state.latents[4])
    assert request.modality == "MR"
    assert request.ground_truth is not None and request.ground_truth[0, 0] == 104.0


def test_build_request_drops_a_mix_whose_latent_is_missing_and_needs_a_latent():
    model = fake_model()
    state = mr_state(mix_layers=("8x8",), mix_source="slice", mix_slice=9)
    request = explore.build_request(state, model, 1)
    assert request.mix_w is None and request.mix_layers == ()
    assert explore.build_request(ExplorerState(), model, 1) is None


def test_clear_scans_forgets_slices_but_keeps_controls():
    state = mr_state(moves={"sex": 1.0}, tau=0.5)
    state.clear_scans()
    assert state.source is None and state.paired is None and not state.latents
    assert state.moves == {"sex": 1.0} and state.tau == 0.5


# -- with a trained model ---------------------------------------------------------------------


def test_the_request_renders_with_a_real_model(tiny_bundle, real_t2_nifti):
    from medstyle_gui.core.model import load_model
    from medstyle_gui.core.render import Renderer

    model = load_model(tiny_bundle)
    source, latents = explore.load_scan(model, real_t2_nifti)
    assert source.modality == "MR" and len(latents) == source.num_slices
    state = ExplorerState(source=source, index=source.num_slices // 2)
    state.encoder_latents.update(latents)
    state.seed_w = explore.seeded_w(model, 3)
    assert state.seed_w.shape == (model.w_dim,)
    result = Renderer(model).render(explore.build_request(state, model, 1))
    assert result.error is None and result.modality == "MR"
    assert result.image_native.shape == (model.resolution, model.resolution)
    assert "rmse" in result.metrics
    state.moves = {"slice": 3 * explore.units_per_slice(model)}
    assert explore.sought_slice(state, model) == state.index + 3


def test_the_sought_slice_counts_the_open_scans_own_slices():
    """The direction is calibrated per mm: in a scan with twice the training data's slice
    spacing, the same move seeks half as many slices."""
    import dataclasses

    model = fake_model()
    state = mr_state(moves={"slice": 1.0})  # 1.0 units = 10 mm (0.1 units per mm)
    thick = dataclasses.replace(state.source.volume, spacing_mm=(10.0, 2.0, 2.0))
    state.source = dataclasses.replace(state.source, volume=thick)
    assert explore.sought_slice(state, model) == state.index + 1


def series_copy(src: Path, out: Path, shift: float = 0.0, slices: int = 4, **tags: str) -> Path:
    """The ``slices`` most inferior slices of the DICOM series ``src`` in a new folder
    ``out``, with ``tags`` set (a SeriesInstanceUID, a StudyInstanceUID) and every value
    raised by ``shift`` (so that a copy never passes for another series)."""
    import pydicom

    out.mkdir(parents=True)
    datasets = sorted(map(pydicom.dcmread, src.iterdir()), key=lambda d: d.ImagePositionPatient[2])
    for ds in datasets[:slices]:
        for keyword, value in tags.items():
            setattr(ds, keyword, value)
        ds.RescaleIntercept = float(ds.get("RescaleIntercept", 0.0)) + shift
        ds.save_as(out / Path(ds.filename).name)
    return out


def test_a_series_chosen_by_number_is_kept_by_what_names_it_for_good(tmp_path, real_ct_dicom):
    """``--series N`` counts in the folder's listing, which shifts when the folder gains a
    series; what a session keeps must not: the series' UID, or, for the real CT (which has
    none), the reader's name for the series without a UID."""
    from trainer.data.dicom_read import NO_UID, list_dicom_series
    from trainer.data.read import read_volume

    folder = tmp_path / "incoming"
    series_copy(real_ct_dicom, folder / "ct", StudyInstanceUID="1.5")
    series_copy(
        real_ct_dicom, folder / "copy", 100.0, StudyInstanceUID="1.5", SeriesInstanceUID="1.5.2"
    )
    assert [s.uid for s in list_dicom_series(folder)] == ["", "1.5.2"]
    kept = {}
    for n in ("1", "2"):
        volume = read_volume(folder, series_uid=n)
        kept[n] = (explore.series_to_keep(volume, n), volume.array)
    assert [name for name, _ in kept.values()] == [NO_UID, "1.5.2"]

    series_copy(
        real_ct_dicom, folder / "earlier", 500.0, StudyInstanceUID="1.1", SeriesInstanceUID="1.1.1"
    )
    assert [s.uid for s in list_dicom_series(folder)] == ["1.1.1", "", "1.5.2"]  # N moved on
    for n, (name, array) in kept.items():
        np.testing.assert_array_equal(read_volume(folder, series_uid=name).array, array)
        assert not np.array_equal(read_volume(folder, series_uid=n).array, array)
    one_file = sorted((folder / "ct").iterdir())[0]  # a file names its series the same way
    assert read_volume(one_file, series_uid=NO_UID).num_slices == 1

    # nothing chosen stays nothing chosen; a slice dataset's PATIENT/MODALITY stays as is
    assert explore.series_to_keep(volume, None) is None
    h5 = Volume(
        array=np.zeros((1, 2, 2), np.float32), spacing_mm=(1, 1, 1), meta={"series": "P1/CT"}
    )
    assert explore.series_to_keep(h5, "P1/CT") == "P1/CT"
