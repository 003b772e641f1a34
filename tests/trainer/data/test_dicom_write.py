"""DICOM series export: valid files (dciodvfy), exact round trip of values and geometry,
no identity carried over from a source scan, safe writing, provenance in the headers."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import apply_modality_lut

from tests.conftest import pydicom_test_file
from trainer.data.dicom_write import ct_rescale, write_dicom_series
from trainer.data.provenance import Provenance, conversion
from trainer.data.read import read_volume
from trainer.data.resample import resample_to
from trainer.data.volume import Volume
from trainer.errors import ScanWriteError


def _rotation(deg_x: float, deg_z: float) -> np.ndarray:
    """A right-handed oblique direction close enough to LPS that reorienting keeps it."""
    ax, az = np.radians(deg_x), np.radians(deg_z)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ rx


OBLIQUE = _rotation(20.0, 10.0)
SYNTHETIC = Provenance(
    synthetic=True,
    description="synthetic CT from MR by style mixing",
    model_sha256="0123456789abcdef" * 4,
    recipe={"direction": "modality", "alpha": 12.5},
)

CASES = [
    pytest.param("CT", np.eye(3), id="ct-axial"),
    pytest.param("CT", OBLIQUE, id="ct-oblique"),
    pytest.param("MR", np.eye(3), id="mr-axial"),
    pytest.param("MR", OBLIQUE, id="mr-oblique"),
]


def _volume(make_volume, modality: str, direction: np.ndarray) -> Volume:
    """make_volume's pattern plus fractional noise (so rounding shows), off-origin."""
    volume = make_volume(
        modality=modality, direction=direction, origin_lps_mm=(-30.5, 12.25, -101.0), sex="M"
    )
    noise = np.random.default_rng(0).uniform(-0.49, 0.49, volume.shape).astype(np.float32)
    return volume.with_array(volume.array + noise)


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def _read_back(folder: Path) -> Volume:
    """Read the series as a user's tool would: SimpleITK's series reader (rescale applied)."""
    return Volume.from_sitk(_series_image(folder))


def _dump(path: Path) -> str:
    if shutil.which("dcmdump") is None:
        pytest.skip("dcmdump (dcmtk) is not installed; .ci/run installs it")
    return subprocess.run(["dcmdump", str(path)], capture_output=True, text=True, check=True).stdout


# -- valid DICOM ----------------------------------------------------------------------


@pytest.mark.parametrize(("modality", "direction"), CASES)
def test_dciodvfy_reports_no_error(tmp_path, make_volume, modality, direction):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed; .ci/run installs it")
    volume = _volume(make_volume, modality, direction)
    folder = write_dicom_series(volume, tmp_path / "series", provenance=SYNTHETIC)
    files = _files(folder)
    assert len(files) == volume.num_slices
    for path in files:
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        report = run.stdout + run.stderr
        assert ("CTImage" if modality == "CT" else "MRImage") in report
        errors = [line for line in report.splitlines() if "Error" in line]
        assert errors == [], f"{path.name}: {errors}"


# -- round trip -----------------------------------------------------------------------


@pytest.mark.parametrize(("modality", "direction"), CASES)
def test_round_trip_gives_same_values_and_geometry(tmp_path, make_volume, modality, direction):
    volume = _volume(make_volume, modality, direction)
    folder = write_dicom_series(volume, tmp_path / "series", provenance=conversion("a.nii"))
    back = _read_back(folder)
    assert back.shape == volume.shape
    # Fractional values are kept to half a 16-bit step of the value range.
    assert np.abs(back.array - volume.array).max() <= _value_range(volume.array) / 65533
    np.testing.assert_allclose(back.spacing_mm, volume.spacing_mm, atol=1e-5)
    np.testing.assert_allclose(back.origin_lps_mm, volume.origin_lps_mm, atol=1e-4)
    np.testing.assert_allclose(back.direction, volume.direction, atol=1e-6)


@pytest.mark.parametrize(("modality", "direction"), CASES)
def test_project_reader_reads_the_series_back(tmp_path, make_volume, modality, direction):
    """The project's own reader (read_volume on the folder) gets values, geometry,
    modality and sex back."""
    volume = _volume(make_volume, modality, direction)
    folder = write_dicom_series(volume, tmp_path / "series", provenance=SYNTHETIC)
    back = read_volume(folder)
    assert (back.modality, back.sex) == (modality, "M")
    assert np.abs(back.array - volume.array).max() <= _value_range(volume.array) / 65533
    np.testing.assert_allclose(back.spacing_mm, volume.spacing_mm, atol=1e-5)
    np.testing.assert_allclose(back.origin_lps_mm, volume.origin_lps_mm, atol=1e-4)
    np.testing.assert_allclose(back.direction, volume.direction, atol=1e-6)


def test_slice_attributes_follow_the_volume(tmp_path, make_volume):
    """Whole-number HU (as every real CT) are stored as scanners store them: intercept
    -1024, slope 1, each value exact."""
    volume = make_volume(direction=OBLIQUE, origin_lps_mm=(-30.5, 12.25, -101.0))
    done = []
    folder = write_dicom_series(
        volume, tmp_path / "series", provenance=SYNTHETIC, progress=lambda *a: done.append(a)
    )
    assert done == [(k, volume.num_slices) for k in range(1, volume.num_slices + 1)]
    slices = [pydicom.dcmread(p) for p in _files(folder)]
    normal = OBLIQUE[:, 2]
    dz, dy, dx = volume.spacing_mm  # (3.0, 1.5, 1.25): rows 1.5 mm apart, columns 1.25
    for k, ds in enumerate(slices):
        assert ds.InstanceNumber == k + 1
        expected = np.asarray(volume.origin_lps_mm) + k * dz * normal
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], expected, atol=1e-6)
        assert [float(v) for v in ds.PixelSpacing] == [dy, dx]
        assert float(ds.SliceThickness) == dz
        assert float(ds.SpacingBetweenSlices) == dz
        np.testing.assert_allclose(
            [float(v) for v in ds.ImageOrientationPatient], [*OBLIQUE[:, 0], *OBLIQUE[:, 1]]
        )
        # Rows x columns of slice k are array[k] (row = y, column = x), in HU.
        np.testing.assert_array_equal(apply_modality_lut(ds.pixel_array, ds), volume.array[k])
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.BitsAllocated == 16 and ds.PixelRepresentation == 1
        assert (float(ds.RescaleIntercept), float(ds.RescaleSlope)) == (-1024.0, 1.0)
        assert ds.RescaleType == "HU"
        assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40.0, 400.0)
    locations = [float(ds.SliceLocation) for ds in slices]
    np.testing.assert_allclose(np.diff(locations), dz, atol=1e-6)
    # One study, series and frame of reference; a fresh UID for every slice.
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({ds[keyword].value for ds in slices}) == 1
    assert len({ds.SOPInstanceUID for ds in slices}) == len(slices)
    assert all(ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID for ds in slices)
    assert slices[0].SOPClassUID == pydicom.uid.CTImageStorage


def test_every_export_gets_fresh_uids(tmp_path, make_volume):
    volume = make_volume()
    uids = []
    for name in ("a", "b"):
        ds = pydicom.dcmread(
            _files(write_dicom_series(volume, tmp_path / name, provenance=SYNTHETIC))[0]
        )
        uids.append(
            {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID, ds.SOPInstanceUID}
        )
    assert not uids[0] & uids[1]


def test_mr_is_stored_as_whole_units_without_rescale(tmp_path, make_volume):
    volume = make_volume(modality="MR")
    folder = write_dicom_series(volume, tmp_path / "mr", provenance=SYNTHETIC)
    ds = pydicom.dcmread(_files(folder)[2])
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage
    assert "RescaleSlope" not in ds and "RescaleIntercept" not in ds
    assert ds.PixelRepresentation == 0  # no negative values: unsigned 16 bits
    np.testing.assert_array_equal(ds.pixel_array, volume.array[2])
    assert ds.ScanningSequence == "RM"
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "OTHER"]


def test_mr_values_beyond_16_bits_are_kept_and_the_coarse_step_said(tmp_path, make_volume, caplog):
    """One outlier stretches the range past 16 bits: nothing is clipped, every value is
    within half a step, and the step (coarse beside the other values) is warned about."""
    volume = make_volume(modality="MR")
    array = volume.array.copy()
    array[0, 0, 0] = 70000.0
    with caplog.at_level(logging.WARNING, logger="trainer.data.dicom_write"):
        folder = write_dicom_series(volume.with_array(array), tmp_path / "mr", provenance=SYNTHETIC)
    back = read_volume(folder)
    ds = pydicom.dcmread(_files(folder)[0])
    slope = float(ds.RescaleSlope)
    assert back.array[0, 0, 0] == pytest.approx(70000.0, abs=slope / 2)
    assert np.abs(back.array - array).max() <= slope / 2 + 1e-3
    [warning] = [r.getMessage() for r in caplog.records]
    assert "\n" not in warning and f"steps of {slope:g} MR units" in warning
    assert "outliers" in warning and "steps of" in ds.ImageComments


def _value_range(array: np.ndarray) -> float:
    return float(array.max() - array.min())


@pytest.mark.parametrize(
    ("modality", "low", "high"),
    [("MR", 0.0, 1.0), ("MR", -3.5, 2.25), ("MR", 0.0, 1250.0), ("CT", -1024.0, 1500.0)],
    ids=["mr-0-1", "mr-signed", "mr-scanner-units", "ct-synthetic"],
)
def test_fractional_values_keep_their_precision(tmp_path, make_volume, caplog, modality, low, high):
    """An MR normalised to [0, 1] (or any float MR, or a synthetic float CT) comes back
    through the project's reader within 1e-3 of its value range, not rounded to whole
    units, and without a warning: the stored integers span 16 bits."""
    volume = make_volume(modality=modality)
    rng = np.random.default_rng(1)
    array = rng.uniform(low, high, volume.shape).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        folder = write_dicom_series(
            volume.with_array(array), tmp_path / "s", provenance=conversion("a.nii")
        )
    back = read_volume(folder)
    error = np.abs(back.array - array).max()
    assert error <= 1e-3 * _value_range(array)
    assert error <= _value_range(array) / 65533  # half a 16-bit step, with room
    assert caplog.records == []
    stored = np.concatenate([pydicom.dcmread(p).pixel_array.ravel() for p in _files(folder)])
    assert int(stored.max()) - int(stored.min()) > 65000  # the whole 16 bits used
    ds = pydicom.dcmread(_files(folder)[0])
    assert float(ds.RescaleSlope) < 1.0


def test_whole_number_ct_keeps_exact_hu(tmp_path, real_ct_dicom):
    """The real CT (whole HU) is written as scanners write it: slope 1, intercept -1024,
    every HU exact through the project's reader."""
    volume = read_volume(real_ct_dicom)
    folder = write_dicom_series(volume, tmp_path / "ct", provenance=conversion("ct"))
    np.testing.assert_array_equal(read_volume(folder).array, volume.array)
    ds = pydicom.dcmread(_files(folder)[0])
    assert (ds.RescaleSlope, ds.RescaleIntercept) == (1.0, -1024.0)


def test_mr_negative_values_are_kept_signed(tmp_path, make_volume):
    volume = make_volume(modality="MR")
    folder = write_dicom_series(
        volume.with_array(volume.array - 500.0), tmp_path / "mr", provenance=SYNTHETIC
    )
    back = _read_back(folder)
    np.testing.assert_array_equal(back.array, volume.array - 500.0)


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [(-1024.0, 3071.0, (-1024.0, 1.0)), (-33792.0, 31743.0, (-1024.0, 1.0))],
)
def test_ct_rescale_is_the_usual_one_for_real_ct(lo, hi, expected):
    assert ct_rescale(lo, hi) == expected


@pytest.mark.parametrize(("lo", "hi"), [(-1024.0, 40000.0), (-1024.0, 200000.0), (-9e4, -1e4)])
def test_ct_values_beyond_int16_still_fit(tmp_path, make_volume, lo, hi):
    volume = make_volume()
    array = np.linspace(lo, hi, volume.array.size, dtype=np.float32).reshape(volume.shape)
    folder = write_dicom_series(volume.with_array(array), tmp_path / "ct", provenance=SYNTHETIC)
    back = _read_back(folder)
    slope = float(pydicom.dcmread(_files(folder)[0]).RescaleSlope)
    # Nothing clipped: every value within half a step of the original (plus float32's
    # own rounding at these magnitudes).
    assert np.abs(back.array - array).max() <= slope / 2 + 0.02


# -- real scans -----------------------------------------------------------------------


def _read_real(path: Path) -> sitk.Image:
    if path.is_dir():
        return _series_image(path)
    return sitk.ReadImage(str(path))


def _series_image(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@pytest.mark.parametrize(
    ("fixture", "modality"), [("real_ct_dicom", "CT"), ("real_t2_nifti", "MR")]
)
def test_real_scans_survive_the_round_trip_exactly(tmp_path, request, fixture, modality):
    """The real JPEG 2000 CT series and the slightly oblique ProstateX T2 (whole-number
    values both) come back voxel for voxel, with their geometry."""
    volume = Volume.from_sitk(_read_real(request.getfixturevalue(fixture)), modality=modality)
    folder = write_dicom_series(volume, tmp_path / "out", provenance=conversion("scan"))
    back = _read_back(folder)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.spacing_mm, volume.spacing_mm, atol=1e-6)
    np.testing.assert_allclose(back.origin_lps_mm, volume.origin_lps_mm, atol=1e-6)
    np.testing.assert_allclose(back.direction, volume.direction, atol=1e-6)
    if modality == "MR":
        assert not np.allclose(volume.direction, np.eye(3), atol=1e-3)  # really oblique


# -- slice thickness --------------------------------------------------------------------


def test_slice_thickness_is_the_sources(tmp_path, real_ct_dicom):
    """The real CT has 3 mm slices 2 mm apart: the export says 3 (SliceThickness) and 2
    (SpacingBetweenSlices), as the source does; once resampled onto another grid, the
    slices are the grid's and the thickness is its spacing."""
    volume = read_volume(real_ct_dicom)
    assert volume.meta["slice_thickness_mm"] == 3.0 and volume.spacing_mm[0] == 2.0
    ds = pydicom.dcmread(
        _files(write_dicom_series(volume, tmp_path / "ct", provenance=conversion("ct")))[0]
    )
    assert (ds.SliceThickness, ds.SpacingBetweenSlices) == ("3", "2")

    grid = Volume(np.zeros((4, 8, 8), np.float32), (5.0, 4.0, 4.0), volume.origin_lps_mm)
    moved = resample_to(volume, grid)
    ds = pydicom.dcmread(
        _files(write_dicom_series(moved, tmp_path / "moved", provenance=conversion("ct")))[0]
    )
    assert (ds.SliceThickness, ds.SpacingBetweenSlices) == ("5", "5")


def test_slice_thickness_without_a_source_is_the_spacing_in_plain_digits(tmp_path, make_volume):
    """A spacing averaged from slice positions (0.99999999999999 mm) is written as "1"."""
    volume = make_volume(spacing=(0.99999999999999, 0.5, 0.5))
    ds = pydicom.dcmread(
        _files(write_dicom_series(volume, tmp_path / "s", provenance=SYNTHETIC))[0]
    )
    assert (ds.SliceThickness, ds.SpacingBetweenSlices) == ("1", "1")


# -- identity -------------------------------------------------------------------------


def test_export_of_a_real_scan_carries_none_of_its_identity(tmp_path):
    source_path = pydicom_test_file("CT_small.dcm")
    source = pydicom.dcmread(source_path)
    volume = Volume.from_sitk(
        sitk.ReadImage(str(source_path)),
        modality="CT",
        patient_id=str(source.PatientID),
        source=str(source_path),
    )
    folder = write_dicom_series(
        volume, tmp_path / "export", provenance=conversion(source_path.name)
    )
    dump = "\n".join(_dump(p) for p in _files(folder))

    identifying = [
        str(source.PatientName),
        source.PatientID,
        *(item.PatientID for item in source.OtherPatientIDsSequence),
        source.InstitutionName,
        source.StationName,
        source.Manufacturer,
        source.ManufacturerModelName,
        source.StudyDate,
        source.SeriesDate,
        source.AcquisitionDate,
        source.ContentDate,
        source.StudyTime,
        source.SeriesTime,
        source.AcquisitionTime,
        source.StudyInstanceUID,
        source.SeriesInstanceUID,
        source.SOPInstanceUID,
        source.FrameOfReferenceUID,
        source.InstanceCreatorUID,
    ]
    assert "CompressedSamples^CT1" in identifying and "JFK IMAGING CENTER" in identifying
    leaked = [value for value in identifying if value and value in dump]
    assert leaked == []
    ds = pydicom.dcmread(_files(folder)[0])
    assert ds.PatientName == "" and ds.PatientID == "" and ds.PatientBirthDate == ""
    assert ds.PatientIdentityRemoved == "YES"
    assert "OtherPatientIDsSequence" not in ds and "InstitutionName" not in ds
    assert not any(elem.tag.is_private for elem in ds)
    assert ds.SeriesDescription == "medstyle conversion"
    assert ds.DerivationDescription.startswith("CONVERTED")
    assert "ImageComments" not in ds  # a conversion is not called synthetic


def test_only_the_given_identity_is_written(tmp_path, make_volume):
    volume = make_volume(patient_id="HOSPITAL-0042", sex="F")
    folder = write_dicom_series(
        volume,
        tmp_path / "s",
        provenance=SYNTHETIC,
        patient_name="Study^Subject07",
        patient_id="SUBJ07",
    )
    ds = pydicom.dcmread(_files(folder)[0])
    assert (str(ds.PatientName), ds.PatientID, ds.PatientSex) == ("Study^Subject07", "SUBJ07", "F")
    assert "PatientIdentityRemoved" not in ds
    assert "HOSPITAL-0042" not in _dump(_files(folder)[0])


def test_a_patient_id_too_long_is_refused(tmp_path, make_volume):
    with pytest.raises(ScanWriteError, match="longer than 64"):
        write_dicom_series(make_volume(), tmp_path / "s", provenance=SYNTHETIC, patient_id="x" * 65)
    assert list(tmp_path.iterdir()) == []


# -- provenance -----------------------------------------------------------------------


def test_synthetic_output_says_so(tmp_path, make_volume):
    folder = write_dicom_series(make_volume(), tmp_path / "s", provenance=SYNTHETIC)
    ds = pydicom.dcmread(_files(folder)[0])
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
    assert ds.SeriesDescription == "SYNTHETIC CT medstyle"
    assert ds.DerivationDescription == SYNTHETIC.one_line()
    assert ds.DerivationDescription.startswith("SYNTHETIC")
    assert "0123456789abcdef" in ds.DerivationDescription  # the model hash
    assert '"alpha":12.5' in ds.DerivationDescription  # the latent recipe
    assert "SYNTHETIC" in ds.ImageComments and SYNTHETIC.description in ds.ImageComments
    assert ds.Manufacturer == "medstyle" and ds.BurnedInAnnotation == "NO"
    assert ds.SoftwareVersions == SYNTHETIC.software


@pytest.mark.parametrize(
    ("provenance", "chosen", "expected"),
    [
        (SYNTHETIC, "x" * 80, "SYNTHETIC " + "x" * 54),
        (SYNTHETIC, "Synthetic pelvis, alpha 12", "Synthetic pelvis, alpha 12"),
        (conversion("a.nii"), "x" * 80, "x" * 64),
        (conversion("a.nii"), "T2 axial", "T2 axial"),
    ],
)
def test_series_description_can_be_chosen(tmp_path, make_volume, provenance, chosen, expected):
    """Cut to 64 characters; synthetic data stays marked whatever the user chose."""
    folder = write_dicom_series(
        make_volume(), tmp_path / "s", provenance=provenance, series_description=chosen
    )
    assert pydicom.dcmread(_files(folder)[0]).SeriesDescription == expected


# -- safe writing ---------------------------------------------------------------------


def test_modality_unknown_is_refused(tmp_path, make_volume):
    volume = make_volume(modality=None)
    with pytest.raises(ScanWriteError, match="--modality"):
        write_dicom_series(volume, tmp_path / "s", provenance=SYNTHETIC)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_kept_without_overwrite(tmp_path, make_volume):
    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    with pytest.raises(ScanWriteError, match="already exists"):
        write_dicom_series(make_volume(), folder, provenance=SYNTHETIC)
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    assert (folder / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]

    write_dicom_series(make_volume(), folder, provenance=SYNTHETIC, overwrite=True)
    assert not (folder / "mine.txt").exists()
    assert len(_files(folder)) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


def _fail_on_third_save(monkeypatch):
    calls = {"n": 0}
    save_as = pydicom.dataset.Dataset.save_as

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return save_as(self, *args, **kwargs)

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", flaky)
    return calls


def test_failure_mid_write_leaves_nothing(tmp_path, make_volume, monkeypatch):
    calls = _fail_on_third_save(monkeypatch)
    with pytest.raises(ScanWriteError, match="No space left on device") as info:
        write_dicom_series(make_volume(), tmp_path / "series", provenance=SYNTHETIC)
    assert calls["n"] == 3
    assert str(tmp_path / "series") in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no folder, no temp debris


def test_failure_mid_overwrite_keeps_the_old_series(tmp_path, make_volume, monkeypatch):
    folder = write_dicom_series(make_volume(), tmp_path / "series", provenance=SYNTHETIC)
    before = {p.name: p.read_bytes() for p in _files(folder)}
    _fail_on_third_save(monkeypatch)
    with pytest.raises(ScanWriteError):
        write_dicom_series(make_volume(), folder, provenance=SYNTHETIC, overwrite=True)
    assert {p.name: p.read_bytes() for p in _files(folder)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]
