"""HDF5 slice datasets: finding studies, building, reading back, the torch Dataset."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch.utils.data import DataLoader

from medstyle_gui.cli import main
from trainer.data.dataset import (
    build_dataset,
    is_slice_dataset,
    list_dataset_series,
    read_dataset_volume,
    read_labels,
)
from trainer.data.dataset_info import dataset_info, format_dataset_info
from trainer.data.normalise import PAPER
from trainer.data.studies import find_studies
from trainer.data.torch_dataset import SliceDataset
from trainer.errors import DatasetError, MedstyleError, ScanWriteError

SIZE = 32
SPACING_XYZ = (1.5, 1.5, 3.0)


# -- tiny studies on disk ---------------------------------------------------------------


def phantom_arrays(n_slices: int, px: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CT (HU) and MR arrays ``[z, y, x]``: air around an elliptic body whose value
    grows with the slice index, so every slice is told apart by its value."""
    z, y, x = np.meshgrid(np.arange(n_slices), np.arange(px), np.arange(px), indexing="ij")
    body = ((y - px / 2) / (0.4 * px)) ** 2 + ((x - px / 2) / (0.3 * px)) ** 2 < 1
    ct = np.where(body, 40.0 + 10.0 * z + seed, -1024.0)
    mr = np.where(body, 500.0 + 20.0 * z + seed, 0.0)
    return ct.astype(np.float32), mr.astype(np.float32)


def write_scan(array: np.ndarray, path: Path, modality: str | None = None, **sidecar) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING_XYZ)
    sitk.WriteImage(image, str(path))
    if modality is not None:  # a sidecar saying which modality the NIfTI holds
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(
            json.dumps({"modality": modality, **sidecar})
        )
    return path


def write_study(
    folder: Path,
    patient_id: str,
    sex: str | None,
    *,
    n_slices: int = 6,
    px: int = 24,
    seed: int = 0,
    manifest: bool = True,
) -> Path:
    """A study folder: ct.nii.gz + mr.nii.gz and a study.json (or sidecars without)."""
    folder.mkdir(parents=True)
    ct, mr = phantom_arrays(n_slices, px, seed)
    write_scan(ct, folder / "ct.nii.gz", None if manifest else "CT")
    write_scan(mr, folder / "mr.nii.gz", None if manifest else "MR")
    if manifest:
        record = {"patient_id": patient_id, "sex": sex, "age": 60, "aligned": True}
        record |= {"ct": "ct.nii.gz", "mr": "mr.nii.gz"}
        (folder / "study.json").write_text(json.dumps(record))
    return folder


def write_studies(root: Path, count: int, **kw) -> Path:
    for i in range(count):
        write_study(root / f"study{i:02d}", f"P{i:04d}", "FM"[i % 2], seed=i, **kw)
    return root


@pytest.fixture
def studies(tmp_path: Path) -> Path:
    """A folder of four studies (two F, two M), six slices each."""
    return write_studies(tmp_path / "studies", 4)


@pytest.fixture
def built(studies: Path, tmp_path: Path) -> Path:
    return build_dataset(
        [studies], tmp_path / "data.h5", size=SIZE, register=False, n4=False, progress=False
    )


# -- finding studies --------------------------------------------------------------------


def test_find_studies_in_manifest_folders_and_folders_of_them(studies: Path) -> None:
    found = find_studies([studies])
    assert [s.patient_id for s in found] == ["P0000", "P0001", "P0002", "P0003"]
    assert [s.sex for s in found] == ["F", "M", "F", "M"]
    assert all(s.aligned and s.ct.name == "ct.nii.gz" for s in found)
    # One study folder given directly, plus the same study again, is listed once.
    again = find_studies([studies / "study01", studies])
    assert [s.patient_id for s in again] == ["P0001", "P0000", "P0002", "P0003"]


def test_find_study_without_manifest_by_sidecars(tmp_path: Path) -> None:
    write_study(tmp_path / "nomanifest" / "Smith", "ignored", None, manifest=False)
    (study,) = find_studies([tmp_path / "nomanifest"])
    assert study.patient_id == "Smith"  # the folder's name when the scans carry none
    assert study.ct.name == "ct.nii.gz" and study.mr.name == "mr.nii.gz"
    assert study.aligned is False


def test_sidecars_give_sex_and_patient_and_must_agree(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    ct, mr = phantom_arrays(4, 16)
    write_scan(ct, folder / "a.nii.gz", "CT", sex="M", patient_id="ABC")
    write_scan(mr, folder / "b.nii.gz", "MR", sex="M", patient_id="ABC")
    (study,) = find_studies([folder])
    assert (study.patient_id, study.sex, study.ct.name, study.mr.name) == (
        "ABC",
        "M",
        "a.nii.gz",
        "b.nii.gz",
    )
    write_scan(mr, folder / "b.nii.gz", "MR", sex="M", patient_id="XYZ")
    with pytest.raises(DatasetError, match=r"study: CT and MR belong to different patients"):
        find_studies([folder])


def test_ct_without_mr_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "only_ct"
    folder.mkdir()
    write_scan(phantom_arrays(4, 16)[0], folder / "ct.nii.gz", "CT")
    with pytest.raises(DatasetError, match=r"only_ct: has a CT scan \(ct.nii.gz\) but no MR"):
        find_studies([folder])


def test_two_cts_are_refused(tmp_path: Path) -> None:
    folder = write_study(tmp_path / "two", "X", None, manifest=False)
    write_scan(phantom_arrays(4, 16)[0], folder / "ct2.nii.gz", "CT")
    with pytest.raises(DatasetError, match=r"two: has 2 CT scans \(ct.nii.gz, ct2.nii.gz\)"):
        find_studies([folder])


def test_bad_manifests_are_refused(tmp_path: Path) -> None:
    folder = write_study(tmp_path / "s", "P1", "F")
    (folder / "study.json").write_text('{"patient_id": "P1", "ct": "ct.nii.gz"}')
    with pytest.raises(DatasetError, match=r"study.json: names no MR scan"):
        find_studies([folder])
    (folder / "study.json").write_text('{"ct": "ct.nii.gz", "mr": "missing.nii.gz"}')
    with pytest.raises(DatasetError, match=r"'missing.nii.gz', which does not exist"):
        find_studies([folder])
    (folder / "study.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"study.json: is not valid JSON"):
        find_studies([folder])


def test_two_studies_of_one_patient_id_are_refused(tmp_path: Path) -> None:
    write_study(tmp_path / "a", "P1", "F")
    write_study(tmp_path / "b", "P1", "F")
    with pytest.raises(DatasetError, match=r"patient id 'P1' is used by two studies"):
        find_studies([tmp_path])


def test_no_studies_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("nothing here")
    with pytest.raises(DatasetError, match=r"empty: no studies found"):
        find_studies([tmp_path / "empty"])
    with pytest.raises(DatasetError, match=r"nowhere: does not exist"):
        find_studies([tmp_path / "nowhere"])


# -- building ---------------------------------------------------------------------------


def test_counts_and_labels(built: Path) -> None:
    labels = read_labels(built)
    n = 4 * 2 * 6
    assert labels["modality"].shape == (n,)
    with h5py.File(built) as f:
        assert f["images"].shape == (n, SIZE, SIZE) and f["images"].dtype == np.float32
        assert f["images"].chunks == (1, SIZE, SIZE)
        assert f.attrs["format"] == "medstyle-slices" and f.attrs["format_version"] == 1
        assert f.attrs["size"] == SIZE
        assert json.loads(f.attrs["normalisation"]) == PAPER.to_dict()
        assert list(f["modality"].attrs["names"]) == ["MR", "CT"]
        sources = json.loads(f.attrs["sources"])
    assert [s["patient_id"] for s in sources] == ["P0000", "P0001", "P0002", "P0003"]
    assert all(s["registered"] is False and s["n4"] is False for s in sources)
    assert sources[0]["folder_name"] == "study00"

    assert list(labels["patients"]) == ["P0000", "P0001", "P0002", "P0003"]
    assert np.bincount(labels["modality"]).tolist() == [24, 24]  # MR, CT
    assert np.bincount(labels["sex"]).tolist() == [24, 24]  # F, M
    assert np.bincount(labels["patient"]).tolist() == [12, 12, 12, 12]
    # Sex follows the patient: P0000 and P0002 are F, the others M.
    assert (labels["sex"] == labels["patient"] % 2).all()
    # Per volume: slice index 0..5 inferior to superior, normalised 0..1, z every 3 mm.
    first = labels["patient"] == 1
    mr = first & (labels["modality"] == 0)
    assert labels["slice_index"][mr].tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(labels["slice_norm"][mr], np.linspace(0, 1, 6), atol=1e-6)
    np.testing.assert_allclose(np.diff(labels["z_mm"][mr]), 3.0, atol=1e-4)


def test_pair_index_points_to_the_same_slice_of_the_other_modality(built: Path) -> None:
    labels = read_labels(built)
    pair = labels["pair_index"]
    assert (pair >= 0).all()
    rows = np.arange(pair.size)
    assert (pair[pair] == rows).all()  # and back
    for name in ("patient", "slice_index", "z_mm"):
        assert (labels[name][pair] == labels[name]).all(), name
    assert (labels["modality"][pair] != labels["modality"]).all()


def test_normalisation_round_trip_gives_native_values(built: Path, studies: Path) -> None:
    from trainer.data.read import read_volume
    from trainer.data.register import prepare_pair

    with h5py.File(built) as f:
        images = f["images"][()]
    assert -1.0 <= images.min() and images.max() <= 1.0
    assert list_dataset_series(built)[:2] == ["P0000/MR", "P0000/CT"]

    ct = read_dataset_volume(built, "P0002/CT")
    mr = read_dataset_volume(built, "P0002/mr")  # modality in any case
    assert ct.shape == mr.shape == (6, SIZE, SIZE)
    assert (ct.modality, ct.sex, ct.patient_id, ct.modality_source) == (
        "CT",
        "F",
        "P0002",
        "dataset",
    )
    # The body centre of slice k holds 40 + 10 k + 2 HU (the phantom of patient 2).
    centre = SIZE // 2
    np.testing.assert_allclose(ct.array[:, centre, centre], 42.0 + 10.0 * np.arange(6), atol=0.01)
    np.testing.assert_allclose(mr.array[:, centre, centre], 502.0 + 20.0 * np.arange(6), atol=0.01)
    assert ct.array.min() == pytest.approx(-1024.0, abs=0.01)

    # Exactly what the pairing step made, geometry included.
    folder = studies / "study02"
    pair = prepare_pair(
        read_volume(folder / "ct.nii.gz", modality="CT"),
        read_volume(folder / "mr.nii.gz", modality="MR"),
        size=SIZE,
        register=False,
        n4=False,
    )
    np.testing.assert_allclose(ct.array, pair.ct.array, atol=0.01)
    np.testing.assert_allclose(mr.array, pair.mr.array, atol=0.01)
    assert ct.spacing_mm == pytest.approx(pair.ct.spacing_mm)
    assert ct.origin_lps_mm == pytest.approx(pair.ct.origin_lps_mm)

    # The scan reader opens a dataset series too (medstyle info DATA.h5 --series P/CT).
    assert read_volume(built, series_uid="P0002/CT").modality_source == "dataset"


def test_unknown_series_lists_what_exists(built: Path) -> None:
    with pytest.raises(DatasetError, match=r"has no series 'P9/CT'; it holds P0000/MR, P0000/CT"):
        read_dataset_volume(built, "P9/CT")


def test_dataset_info_through_the_command_line(built: Path, capsys) -> None:
    assert main(["dataset", "info", str(built)]) == 0
    text = capsys.readouterr().out
    assert "48 of 32 x 32 pixels (MR 24, CT 24; 48 paired)" in text
    assert "4 (F 2, M 2, unknown 0)" in text
    assert any(line.split() == ["P0001", "M", "6", "6", "12", "12"] for line in text.splitlines())
    assert main(["dataset", "info", "--json", str(built)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["by_modality"] == {"CT": 24, "MR": 24}
    assert info["by_patient"]["P0002"] == {"sex": "F", "CT": 6, "MR": 6, "paired": 12}
    assert format_dataset_info(dataset_info(built)) == text.rstrip("\n")


def test_build_through_the_command_line(studies: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.h5"
    args = ["dataset", "build", str(studies), "--out", str(out), "--size", "16"]
    assert main([*args, "--no-register", "--no-n4", "--quiet"]) == 0
    assert dataset_info(out)["size"] == 16 and dataset_info(out)["slices"] == 48
    # Again without --overwrite: refused, the file untouched.
    before = out.read_bytes()
    assert main([*args, "--quiet"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_existing_out_is_refused_before_any_work(built: Path, tmp_path: Path) -> None:
    before = built.read_bytes()
    # The source does not even exist: the existing target is reported first.
    with pytest.raises(ScanWriteError, match=r"data.h5: already exists"):
        build_dataset([tmp_path / "nowhere"], built, size=SIZE, progress=False)
    assert built.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5", "studies"]  # no debris


def test_overwrite_replaces(built: Path, studies: Path) -> None:
    import shutil

    shutil.rmtree(studies / "study03")
    build_dataset(
        [studies], built, size=SIZE, overwrite=True, register=False, n4=False, progress=False
    )
    assert dataset_info(built)["patients"] == 3


def test_failed_build_leaves_no_file(tmp_path: Path) -> None:
    root = write_studies(tmp_path / "s", 2)
    (root / "study01" / "mr.nii.gz").write_bytes(b"not a nifti")
    out = tmp_path / "x.h5"
    with pytest.raises(MedstyleError, match=r"mr.nii.gz"):
        build_dataset([root], out, size=SIZE, register=False, n4=False, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_aligned_studies_are_not_registered_and_n4_runs(tmp_path: Path) -> None:
    root = write_studies(tmp_path / "s", 1)
    out = build_dataset(
        [root], tmp_path / "d.h5", size=SIZE, register=True, n4=True, progress=False
    )
    with h5py.File(out) as f:
        (source,) = json.loads(f.attrs["sources"])
    assert source["registered"] is False and source["registration"] is None
    assert source["n4"] is True
    assert dataset_info(out)["paired_slices"] == 12


@pytest.mark.parametrize("register", [True, False])
def test_unaligned_study_is_registered_when_asked(tmp_path: Path, register: bool) -> None:
    folder = write_study(tmp_path / "s" / "one", "P1", "M", n_slices=8, px=SIZE)
    manifest = json.loads((folder / "study.json").read_text())
    (folder / "study.json").write_text(json.dumps({**manifest, "aligned": False}))
    out = build_dataset(
        [tmp_path / "s"], tmp_path / "d.h5", size=SIZE, register=register, n4=False, progress=False
    )
    with h5py.File(out) as f:
        (source,) = json.loads(f.attrs["sources"])
    assert source["registered"] is register
    assert isinstance(source["registration"], dict) is register  # the result is recorded
    # Already aligned scans stay aligned: the body centre keeps its value slice by slice.
    ct = read_dataset_volume(out, "P1/CT").array[:, SIZE // 2, SIZE // 2]
    np.testing.assert_allclose(ct, 40.0 + 10.0 * np.arange(8), atol=2.0)


def test_memory_stays_bounded_by_one_study(tmp_path: Path) -> None:
    """Peak traced memory with 12 studies is about that with 3: slices are streamed."""

    def peak(count: int) -> int:
        root = write_studies(tmp_path / f"s{count}", count, n_slices=12, px=SIZE)
        tracemalloc.start()
        try:
            build_dataset(
                [root],
                tmp_path / f"d{count}.h5",
                size=SIZE,
                register=False,
                n4=False,
                progress=False,
            )
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(1)  # first use imports modules: keep that out of the comparison
    small, large = peak(3), peak(12)
    study_bytes = 2 * 12 * SIZE * SIZE * 4  # one study's slices, float32
    assert dataset_info(tmp_path / "d12.h5")["slices"] == 12 * 24  # a few hundred slices
    # Holding all slices would add 9 studies' worth (~880 kB); streaming adds next to nothing.
    assert large - small < 2 * study_bytes, (small, large)


# -- foreign and damaged files ----------------------------------------------------------


def test_foreign_h5_is_refused(tmp_path: Path, capsys) -> None:
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF but not really")
    assert not is_slice_dataset(foreign) and not is_slice_dataset(garbage)
    assert not is_slice_dataset(tmp_path / "missing.h5")
    with pytest.raises(DatasetError, match=r"foreign.h5: is an HDF5 file but not a medstyle slice"):
        dataset_info(foreign)
    with pytest.raises(DatasetError, match=r"garbage.h5: is not a readable HDF5 file"):
        list_dataset_series(garbage)
    assert main(["dataset", "info", str(foreign)]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("medstyle: error: ") and "foreign.h5" in err and len(err.splitlines()) == 1
    )


def test_build_with_no_studies(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "d.h5"
    assert main(["dataset", "build", str(tmp_path / "empty"), "--out", str(out), "--quiet"]) == 1
    assert "empty: no studies found" in capsys.readouterr().err
    assert not out.exists()


# -- the torch Dataset ------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_slice_dataset_with_a_data_loader(built: Path, workers: int) -> None:
    labels = read_labels(built)
    data = SliceDataset(built, modality="CT", patients=["P0001", "P0002"])
    expected = np.flatnonzero((labels["modality"] == 1) & np.isin(labels["patient"], [1, 2]))
    assert len(data) == expected.size == 12

    loader = DataLoader(data, batch_size=5, shuffle=True, num_workers=workers)
    seen = []
    with h5py.File(built) as f:
        stored = f["images"][()]
    for images, batch in loader:
        assert images.dtype == torch.float32 and images.shape[1:] == (1, SIZE, SIZE)
        rows = batch["row"].numpy()
        np.testing.assert_array_equal(images[:, 0].numpy(), stored[rows])
        assert (batch["modality"] == 1).all()
        np.testing.assert_array_equal(batch["sex"].numpy(), labels["sex"][rows])
        np.testing.assert_allclose(batch["slice_norm"].numpy(), labels["slice_norm"][rows])
        np.testing.assert_array_equal(batch["pair_index"].numpy(), labels["pair_index"][rows])
        seen.extend(rows.tolist())
    assert sorted(seen) == expected.tolist()


def test_slice_dataset_rejects_unknown_choices(built: Path) -> None:
    assert len(SliceDataset(built)) == 48
    with pytest.raises(DatasetError, match=r"has no patient 'P9'; it holds P0000, P0001"):
        SliceDataset(built, patients=["P9"])
    with pytest.raises(DatasetError, match=r"unknown modality 'PET'"):
        SliceDataset(built, modality="PET")


# -- real scans -------------------------------------------------------------------------


def test_real_ct_and_mr_of_two_people_are_refused(
    real_ct_dicom: Path, real_t2_nifti: Path, tmp_path: Path
) -> None:
    """A folder holding a real DICOM CT series folder and a real T2 NIfTI (no manifest,
    no sidecar: the modality comes from the DICOM tag and from intensities). They are
    an abdomen and another person's pelvis, a metre apart: without registration the CT
    on the MR's slices is all air, which a dataset must not learn from."""
    study = tmp_path / "real" / "case1"
    study.mkdir(parents=True)
    (study / "ct").symlink_to(real_ct_dicom, target_is_directory=True)
    (study / "t2.nii.gz").symlink_to(real_t2_nifti)
    (found,) = find_studies([tmp_path / "real"])
    assert (found.ct.name, found.mr.name) == ("ct", "t2.nii.gz")

    out = tmp_path / "r.h5"
    with pytest.raises(DatasetError) as err:
        build_dataset([tmp_path / "real"], out, size=SIZE, register=False, n4=False, progress=False)
    message = str(err.value)
    assert message.startswith(f"{study}: study case1: its CT and MR do not make a plausible pair")
    assert "19 of 19 CT slices are one constant value" in message and "\n" not in message
    assert not out.exists()


def test_a_32_px_phantom_cohort_builds_with_n4(tmp_path: Path) -> None:
    """``medstyle phantom --size 32 --slices 8`` then ``dataset build``: N4 used to stop
    on ITK's "Zero-valued spacing" (the 8 slices shrunk to one)."""
    from trainer.data.phantom import CohortOptions, write_cohort

    options = CohortOptions(patients=1, seed=0, size=32, slices=8)
    cohort = write_cohort(tmp_path / "cohort", options, workers=1, progress=False)
    out = build_dataset([cohort], tmp_path / "d.h5", size=SIZE, n4=True, progress=False)
    with h5py.File(out) as f:
        (source,) = json.loads(f.attrs["sources"])
    assert source["n4"] is True and source["pairing_check"]["passed"] is True
    assert dataset_info(out)["slices"] == 16


def test_study_with_constant_ct_slices_is_refused(tmp_path: Path) -> None:
    folder = write_study(tmp_path / "s" / "blank", "P1", "F")
    ct, _ = phantom_arrays(6, 24)
    write_scan(np.full_like(ct, -1024.0), folder / "ct.nii.gz")
    with pytest.raises(DatasetError, match=r"study P1: .*6 of 6 CT slices are one constant value"):
        build_dataset([folder], tmp_path / "d.h5", size=SIZE, n4=False, progress=False)


def test_study_whose_pairing_failed_is_refused(tmp_path: Path) -> None:
    """A study kept with ``medstyle pair --force`` records its failed check."""
    folder = write_study(tmp_path / "s" / "forced", "P1", "F")
    manifest = json.loads((folder / "study.json").read_text())
    failed = {"passed": False, "failures": ["Mattes MI -0.070 is above -0.15"]}
    manifest |= {"aligned": False, "pairing_check": failed}
    (folder / "study.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError) as err:
        build_dataset([folder], tmp_path / "d.h5", size=SIZE, n4=False, progress=False)
    assert str(err.value) == (
        f"{folder}: study P1 failed its pairing check when it was paired (Mattes MI -0.070 "
        "is above -0.15) and is marked not aligned; pair its scans again or leave it out"
    )
