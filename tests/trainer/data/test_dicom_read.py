"""DICOM reading: the real CT series, pydicom's test files (compressed and multi-frame),
slice order and orientation, several series in a folder, and every kind of bad input
(built in tmp_path by copying and editing real files with pydicom)."""

from __future__ import annotations

import copy
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.conftest import pydicom_test_file
from trainer.data import dicom_read
from trainer.data.dicom_padding import padding_range
from trainer.data.dicom_read import SeriesInfo, list_dicom_series, read_dicom
from trainer.errors import InvalidScanError, MedstyleError, ScanReadError

DCMCJPEG = shutil.which("dcmcjpeg")
#: Slices of the real series used to build bad inputs (enough for gaps and tilt, fast).
SUBSET = 6


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_volume(real_ct_dicom: Path):
    """The real JPEG 2000 CT series, read once for the module."""
    return read_dicom(real_ct_dicom)


@pytest.fixture(scope="module")
def ct_slices(real_ct_dicom: Path) -> list[Dataset]:
    """The real CT series decompressed (explicit VR little endian), ordered inferior to
    superior, as datasets the tests copy and edit."""
    slices = [pydicom.dcmread(p) for p in real_ct_dicom.iterdir()]
    for ds in slices:
        ds.decompress()
    return sorted(slices, key=lambda ds: float(ds.ImagePositionPatient[2]))


def copies(slices: list[Dataset], n: int | None = SUBSET) -> list[Dataset]:
    return [copy.deepcopy(ds) for ds in slices[:n]]


def write_series(folder: Path, slices: list[Dataset]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, ds in enumerate(slices):
        ds.save_as(folder / f"IM{i:04d}.dcm")
    return folder


def dataset_with_meta(sop_class: str, modality: str) -> Dataset:
    """A small non-image DICOM object (header only) of the given SOP class."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "TEST"
    return ds


def error_of(exc_info: pytest.ExceptionInfo) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, "user-facing errors are one line"
    return message


# -- the real CT series ----------------------------------------------------------------


def test_real_ct_series_geometry_and_hu(real_volume, real_ct_dicom):
    v = real_volume
    assert v.modality == "CT" and v.modality_source == "dicom"
    assert v.shape == (20, 512, 512)
    assert v.spacing_mm[0] == pytest.approx(2.0)
    assert v.spacing_mm[1:] == pytest.approx((0.9765625, 0.9765625))
    assert v.array.min() == pytest.approx(-1024, abs=1)
    assert 1500 < v.array.max() < 2000
    assert np.all(np.diff(v.slice_positions_mm) > 0)
    # Slice 0 is the most inferior of the 20 (positions -804.5 ... -766.5 mm).
    assert v.slice_positions_mm[0] == pytest.approx(-804.5)
    assert v.slice_positions_mm[-1] == pytest.approx(-766.5)
    np.testing.assert_allclose(v.direction, np.eye(3))
    assert v.sex is None  # PatientSex is empty in these files
    assert v.source == str(real_ct_dicom)
    assert v.meta["files"] == 20
    assert v.meta["transfer_syntax"] == "JPEG 2000 Image Compression (Lossless Only)"
    assert v.meta["sop_class"] == "CT Image Storage"
    assert v.meta["manufacturer"] == "SIEMENS"
    assert v.meta["series_description"] == "CT Body 3.0"


def test_real_ct_series_matches_gdcm(real_volume, real_ct_dicom):
    """An independent reader (SimpleITK's GDCM, its own J2K decoder and slice sorting)
    gives the same HU and geometry."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(real_ct_dicom)))
    image = sitk.DICOMOrient(reader.Execute(), "LPS")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), real_volume.array)
    assert image.GetOrigin() == pytest.approx(real_volume.origin_lps_mm)
    assert tuple(reversed(image.GetSpacing())) == pytest.approx(real_volume.spacing_mm)


def test_real_ct_series_listing(real_ct_dicom):
    (info,) = list_dicom_series(real_ct_dicom)
    assert isinstance(info, SeriesInfo)
    assert (info.modality, info.num_files, info.rows, info.columns) == ("CT", 20, 512, 512)
    assert info.sop_class_name == "CT Image Storage" and info.is_image
    assert info.label().endswith('(CT, "CT Body 3.0", 20 slices)')


def test_file_names_in_reverse_order_give_the_same_volume(real_volume, real_ct_dicom, tmp_path):
    files = sorted(real_ct_dicom.iterdir())
    for i, f in enumerate(reversed(files)):
        shutil.copyfile(f, tmp_path / f"{i:03d}.dcm")
    v = read_dicom(tmp_path)
    np.testing.assert_array_equal(v.array, real_volume.array)
    assert v.origin_lps_mm == pytest.approx(real_volume.origin_lps_mm)


@pytest.mark.parametrize("flip_rows, flip_columns", [(True, False), (False, True), (True, True)])
def test_mirrored_slices_with_matching_cosines_give_the_same_volume(
    real_volume, ct_slices, tmp_path, flip_rows, flip_columns
):
    """Pixels stored bottom-up and/or right-to-left, with the direction cosines and
    positions saying so (which also reverses the slice normal when one axis flips),
    read back to the identical LPS array."""
    slices = copies(ct_slices, None)
    for ds in slices:
        pixels = ds.pixel_array
        row_dir = np.array([float(v) for v in ds.ImageOrientationPatient[:3]])
        col_dir = np.array([float(v) for v in ds.ImageOrientationPatient[3:]])
        position = np.array([float(v) for v in ds.ImagePositionPatient])
        dy, dx = (float(s) for s in ds.PixelSpacing)
        if flip_rows:
            pixels = pixels[::-1]
            position = position + (ds.Rows - 1) * dy * col_dir
            col_dir = -col_dir
        if flip_columns:
            pixels = pixels[:, ::-1]
            position = position + (ds.Columns - 1) * dx * row_dir
            row_dir = -row_dir
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        ds.ImageOrientationPatient = [f"{v:g}" for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    v = read_dicom(write_series(tmp_path / "mirrored", slices))
    np.testing.assert_array_equal(v.array, real_volume.array)
    assert v.origin_lps_mm == pytest.approx(real_volume.origin_lps_mm, abs=1e-4)
    np.testing.assert_allclose(v.direction, np.eye(3), atol=1e-9)


# -- pydicom's test files: HU, MR, compression, multi-frame ---------------------------


def test_ct_small_gives_exactly_the_hu_of_apply_modality_lut():
    path = pydicom_test_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds)
    v = read_dicom(path)
    assert v.modality == "CT" and v.shape == (1, 128, 128)
    # A single axial slice: LPS orientation keeps the stored rows and columns here.
    assert [float(x) for x in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    np.testing.assert_array_equal(v.array[0], expected.astype(np.float32))
    assert v.spacing_mm[1:] == pytest.approx([float(s) for s in ds.PixelSpacing])
    assert v.origin_lps_mm == pytest.approx([float(p) for p in ds.ImagePositionPatient])


def test_mr_small_loads_as_mr():
    v = read_dicom(pydicom_test_file("MR_small.dcm"))
    assert v.modality == "MR" and v.units == "MR units"
    assert v.shape == (1, 64, 64)
    assert v.sex == "F" and v.patient_id == "4MR1"
    assert v.meta["sop_class"] == "MR Image Storage"


@pytest.mark.parametrize(
    "original, variant",
    [
        ("MR_small.dcm", "MR_small_RLE.dcm"),
        ("MR_small.dcm", "MR_small_jp2klossless.dcm"),
        ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm"),
        ("MR_small.dcm", "MR_small_bigendian.dcm"),
        ("693_UNCR.dcm", "693_J2KR.dcm"),
        ("MR2_UNCR.dcm", "MR2_J2KR.dcm"),
        ("emri_small.dcm", "emri_small_RLE.dcm"),
        ("emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm"),
        ("emri_small.dcm", "emri_small_jpeg_ls_lossless.dcm"),
    ],
)
def test_compressed_variants_give_the_same_array(original, variant):
    a = read_dicom(pydicom_test_file(original))
    b = read_dicom(pydicom_test_file(variant))
    assert a.meta["transfer_syntax"] != b.meta["transfer_syntax"]
    np.testing.assert_array_equal(a.array, b.array)
    assert a.spacing_mm == b.spacing_mm


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"])
def test_jpeg_lossless_matches_gdcm(name):
    """JPEG lossless files (no uncompressed twin ships) against GDCM's decoder."""
    path = pydicom_test_file(name)
    v = read_dicom(path)
    assert v.meta["transfer_syntax"].startswith("JPEG Lossless")
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    np.testing.assert_array_equal(v.array, expected.reshape(v.shape))
    # These files carry no patient geometry: the reader says what it assumed.
    assert "assumed" in v.meta["geometry_note"]


@pytest.mark.skipif(DCMCJPEG is None, reason="dcmtk's dcmcjpeg is not installed")
def test_jpeg_lossless_made_by_dcmtk_gives_the_same_array(tmp_path):
    original = pydicom_test_file("MR_small.dcm")
    subprocess.run([DCMCJPEG, "+e1", str(original), str(tmp_path / "ll.dcm")], check=True)
    v = read_dicom(tmp_path / "ll.dcm")
    assert v.meta["transfer_syntax"].startswith("JPEG Lossless")
    np.testing.assert_array_equal(v.array, read_dicom(original).array)


@pytest.mark.skipif(DCMCJPEG is None, reason="dcmtk's dcmcjpeg is not installed")
def test_jpeg_baseline_keeps_hu_and_matches_gdcm(tmp_path):
    """An 8-bit CT slice compressed with lossy JPEG baseline: HU stay close to the
    source (dcmcjpeg rescales stored values and writes a new slope/intercept) and agree
    with GDCM's decoder to within one stored step."""
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    hu = apply_modality_lut(ds.pixel_array, ds)
    ds.PixelData = np.clip(np.round((hu + 1024) / 8), 0, 255).astype(np.uint8).tobytes()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.RescaleSlope, ds.RescaleIntercept = 8, -1024
    for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        ds.pop(keyword, None)
    ds.save_as(tmp_path / "ct8.dcm")
    subprocess.run(
        [DCMCJPEG, "+eb", str(tmp_path / "ct8.dcm"), str(tmp_path / "jpeg.dcm")], check=True
    )
    source = read_dicom(tmp_path / "ct8.dcm")
    v = read_dicom(tmp_path / "jpeg.dcm")
    assert v.meta["transfer_syntax"] == "JPEG Baseline (Process 1)"
    step = float(pydicom.dcmread(tmp_path / "jpeg.dcm").RescaleSlope)
    assert np.abs(v.array - source.array).mean() < 2 * step
    gdcm = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "jpeg.dcm")))
    np.testing.assert_allclose(v.array, gdcm.reshape(v.shape), atol=step + 1e-3)


def test_enhanced_mr_multiframe_loads_all_frames():
    v = read_dicom(pydicom_test_file("emri_small.dcm"))
    assert v.modality == "MR" and v.shape == (10, 64, 64)
    assert v.meta["sop_class"] == "Enhanced MR Image Storage"
    # This test file was stripped of its plane geometry: the reader falls back to
    # Spacing Between Slices and says what it assumed.
    assert v.spacing_mm[0] == pytest.approx(1.2)
    assert "no Image Position" in v.meta["geometry_note"]
    frames = pydicom.dcmread(pydicom_test_file("emri_small.dcm")).pixel_array
    np.testing.assert_array_equal(v.array, frames.astype(np.float32))


def test_enhanced_ct_takes_geometry_and_hu_from_functional_groups():
    path = pydicom_test_file("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    v = read_dicom(path)
    assert v.modality == "CT" and v.shape == (2, 512, 512)
    assert v.spacing_mm == pytest.approx((10.0, 0.388672, 0.388672))
    frame_z = [
        float(item.PlanePositionSequence[0].ImagePositionPatient[2])
        for item in ds.PerFrameFunctionalGroupsSequence
    ]
    np.testing.assert_allclose(v.slice_positions_mm, sorted(frame_z))
    # Rescale Intercept -1024 lives in the shared Pixel Value Transformation group; the
    # row direction is -x (patient's left to right), so LPS order flips the columns.
    expected = ds.pixel_array.astype(np.float32)[np.argsort(frame_z), :, ::-1] - 1024
    np.testing.assert_array_equal(v.array, expected)
    assert "geometry_note" not in v.meta


def test_rt_dose_frames_stack_by_grid_frame_offsets():
    path = pydicom_test_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    v = read_dicom(path)
    assert v.shape[0] == int(ds.NumberOfFrames) == 15
    assert v.modality is None and "RTDOSE" in v.meta["modality_note"]
    offsets = [float(g) for g in ds.GridFrameOffsetVector]
    assert v.spacing_mm[0] == pytest.approx(abs(offsets[1] - offsets[0]))
    assert v.array.max() == pytest.approx(ds.pixel_array.max() * float(ds.DoseGridScaling))


# -- several series in a folder --------------------------------------------------------


@pytest.fixture
def two_series(tmp_path) -> Path:
    """A CT slice and an MR slice (two series) in sub-folders, with a README, a DICOMDIR
    and an RT Structure Set beside them."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "deeper").mkdir(parents=True)
    shutil.copy(pydicom_test_file("CT_small.dcm"), tmp_path / "a" / "ct")
    shutil.copy(pydicom_test_file("MR_small.dcm"), tmp_path / "b" / "deeper" / "mr.dcm")
    shutil.copy(pydicom_test_file("rtstruct.dcm"), tmp_path / "rtstruct.dcm")
    (tmp_path / "README.txt").write_text("two series\n")
    dicomdir = dataset_with_meta("1.2.840.10008.1.3.10", "")
    dicomdir.save_as(tmp_path / "DICOMDIR", enforce_file_format=True)
    return tmp_path


def test_two_series_need_a_choice(two_series):
    ct = pydicom.dcmread(pydicom_test_file("CT_small.dcm"), stop_before_pixels=True)
    mr = pydicom.dcmread(pydicom_test_file("MR_small.dcm"), stop_before_pixels=True)
    with pytest.raises(ScanReadError) as exc:
        read_dicom(two_series)
    message = error_of(exc)
    assert message.startswith(f"{two_series}: holds 2 image series")
    assert f"{ct.SeriesInstanceUID} (CT" in message and f"{mr.SeriesInstanceUID} (MR" in message
    assert "--series UID" in message

    assert read_dicom(two_series, series_uid=mr.SeriesInstanceUID).modality == "MR"
    assert read_dicom(two_series, series_uid=ct.SeriesInstanceUID).modality == "CT"

    with pytest.raises(ScanReadError) as exc:
        read_dicom(two_series, series_uid="1.2.3.4")
    message = error_of(exc)
    assert "has no series 1.2.3.4" in message and "3 series" in message
    assert ct.SeriesInstanceUID in message and mr.SeriesInstanceUID in message


def test_listing_skips_readme_and_dicomdir_and_names_non_images(two_series):
    infos = list_dicom_series(two_series)
    assert sorted(i.modality for i in infos) == ["CT", "MR", "RTSTRUCT"]
    rt = next(i for i in infos if i.modality == "RTSTRUCT")
    assert not rt.is_image and "RT Structure Set" in rt.label()
    mr = next(i for i in infos if i.modality == "MR")
    assert (mr.num_files, mr.rows, mr.columns, mr.num_images) == (1, 64, 64, 1)


def test_one_image_series_beside_an_rt_structure_set_is_read(tmp_path):
    shutil.copy(pydicom_test_file("CT_small.dcm"), tmp_path / "ct.dcm")
    shutil.copy(pydicom_test_file("rtstruct.dcm"), tmp_path / "rtstruct.dcm")
    assert read_dicom(tmp_path).modality == "CT"


def test_series_uid_of_a_single_file_must_match():
    path = pydicom_test_file("CT_small.dcm")
    with pytest.raises(ScanReadError, match="belongs to series"):
        read_dicom(path, series_uid="1.2.3")


def test_a_series_without_uid_is_chosen_by_its_listed_number(tmp_path):
    """Files without a Series Instance UID make a series no UID can name: the listing
    numbers every series, and ``series_uid="N"`` reads the one shown as [N]."""
    import re

    ct = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    del ct.SeriesInstanceUID
    ct.save_as(tmp_path / "ct.dcm")
    shutil.copy(pydicom_test_file("MR_small.dcm"), tmp_path / "mr.dcm")
    with pytest.raises(ScanReadError) as exc:
        read_dicom(tmp_path)
    message = error_of(exc)
    assert "--series N for the series listed as [N]" in message
    number = re.search(r"\[(\d)\] \(no series UID\) \(CT", message)
    assert number is not None, message
    assert read_dicom(tmp_path, series_uid=number.group(1)).modality == "CT"
    other = "2" if number.group(1) == "1" else "1"
    assert read_dicom(tmp_path, series_uid=other).modality == "MR"
    with pytest.raises(ScanReadError, match=r"has no series 3; it holds 2 series: \[1\]"):
        read_dicom(tmp_path, series_uid="3")


# -- objects that are not images -------------------------------------------------------


def _non_image(tmp_path: Path, kind: str) -> Path:
    shipped = {
        "rtstruct": "rtstruct.dcm",
        "rtplan": "rtplan.dcm",
        "sr": "test-SR.dcm",
        "seg": "liver.dcm",
        "ecg": "waveform_ecg.dcm",
    }
    if kind in shipped:
        return pydicom_test_file(shipped[kind])
    sop_class, modality = {
        "pr": ("1.2.840.10008.5.1.4.1.1.11.1", "PR"),  # Grayscale Softcopy Presentation State
        "ko": ("1.2.840.10008.5.1.4.1.1.88.59", "KO"),  # Key Object Selection Document
        "dicomdir": ("1.2.840.10008.1.3.10", ""),
    }[kind]
    path = tmp_path / ("DICOMDIR" if kind == "dicomdir" else f"{kind}.dcm")
    dataset_with_meta(sop_class, modality).save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    "kind, words",
    [
        ("rtstruct", "is an RT Structure Set, not an image"),
        ("rtplan", "is an RT Plan, not an image"),
        ("sr", "is a Structured Report, not an image"),
        ("seg", "is a Segmentation, not an image"),
        ("ecg", "is a waveform, not an image"),
        ("pr", "is a Presentation State, not an image"),
        ("ko", "is a Key Object Selection document, not an image"),
        ("dicomdir", "is a DICOMDIR"),
    ],
)
def test_non_image_objects_are_named(tmp_path, kind, words):
    path = _non_image(tmp_path, kind)
    with pytest.raises(InvalidScanError) as exc:
        read_dicom(path)
    assert error_of(exc).startswith(f"{path}: {words}")


def test_folder_with_only_an_rt_structure_set(tmp_path):
    shutil.copy(pydicom_test_file("rtstruct.dcm"), tmp_path / "rs.dcm")
    with pytest.raises(InvalidScanError, match="holds an RT Structure Set, not an image"):
        read_dicom(tmp_path)


def test_rgb_is_refused():
    path = pydicom_test_file("SC_rgb.dcm")
    with pytest.raises(InvalidScanError) as exc:
        read_dicom(path)
    assert "colour RGB" in error_of(exc) and "3 samples per pixel" in error_of(exc)


# -- pixel padding ---------------------------------------------------------------------


def _pad_like_ge(ds: Dataset, pad: np.ndarray, padding: int | tuple[int, int]) -> None:
    """Store ``ds``'s pixels signed (as GE does), with the pixels where ``pad`` is True
    set to a padding value: ``padding`` itself, or values spread over a range."""
    pixels = ds.pixel_array.astype(np.int16)
    if isinstance(padding, tuple):
        low, high = sorted(padding)
        spread = np.random.default_rng(0).integers(low, high + 1, pixels.shape)
        pixels[pad] = spread[pad]
        ds.add_new(0x00280120, "SS", padding[0])  # Pixel Padding Value
        ds.add_new(0x00280121, "SS", padding[1])  # Pixel Padding Range Limit
    else:
        pixels[pad] = padding
        ds.add_new(0x00280120, "SS", padding)
    ds.set_pixel_data(pixels, "MONOCHROME2", 16, generate_instance_uid=False)


@pytest.mark.parametrize(
    "padding", [-2000, (-2000, -1500), (-1500, -2000)], ids=["value", "range", "range-reversed"]
)
def test_pixel_padding_of_a_real_series_becomes_air(ct_slices, real_volume, tmp_path, padding):
    """The real CT stores air outside its reconstruction circle as 0 (-1024 HU). Stored
    instead as GE's padding -2000 (-3024 HU), or anywhere in a padding range given in
    either order, those voxels read back as air: the very volume read from the source."""
    slices = copies(ct_slices)
    outside = [ds.pixel_array == 0 for ds in slices]
    for ds, pad in zip(slices, outside, strict=True):
        _pad_like_ge(ds, pad, padding)
    v = read_dicom(write_series(tmp_path / "padded", slices))
    np.testing.assert_array_equal(v.array, real_volume.array[:SUBSET])
    count = int(sum(pad.sum() for pad in outside))
    assert v.meta["padding_voxels"] == count and count > 0.15 * v.array.size
    assert "set to air (-1024 HU)" in v.meta["padding_note"]


def test_pixel_padding_of_a_single_file(tmp_path):
    """pydicom's CT_small declares padding -2000 but holds none; padded rows read as air,
    and a file whose padding is absent from its pixels says so."""
    path = pydicom_test_file("CT_small.dcm")
    v = read_dicom(path)
    assert v.meta["padding_voxels"] == 0 and "no voxel holds it" in v.meta["padding_note"]

    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.copy()
    pixels[:10] = -2000  # the first ten rows: anterior, row 0 stays row 0 in LPS
    ds.PixelData = pixels.tobytes()
    ds.save_as(tmp_path / "padded.dcm")
    padded = read_dicom(tmp_path / "padded.dcm")
    assert padded.meta["padding_voxels"] == 10 * pixels.shape[1]
    assert (padded.array == -1024).sum() == 10 * pixels.shape[1]
    np.testing.assert_array_equal(padded.array[0, 10:], v.array[0, 10:])


def test_padding_written_unsigned_for_signed_pixels_is_read_as_signed():
    """Some files write Pixel Padding Value as US even for signed pixels: 63536 then
    stands for -2000; an unreadable value means no padding rather than a failure."""
    ds = Dataset()
    ds.PixelRepresentation, ds.BitsAllocated = 1, 16
    ds.add_new(0x00280120, "US", 63536)
    assert padding_range(ds) == (-2000, -2000)
    ds.add_new(0x00280120, "US", [1, 2])
    assert padding_range(ds) is None


def test_pixel_padding_of_mr_becomes_zero(tmp_path):
    ds = pydicom.dcmread(pydicom_test_file("MR_small.dcm"))
    pixels = ds.pixel_array.copy()
    pixels[:, :5] = 4000  # a bright band no tissue of this scan has
    ds.PixelData = pixels.tobytes()
    ds.add_new(0x00280120, "SS", 4000)
    ds.save_as(tmp_path / "mr.dcm")
    v = read_dicom(tmp_path / "mr.dcm")
    assert v.meta["padding_voxels"] == 5 * pixels.shape[0]
    assert v.array.max() < 4000 and (v.array == 0).sum() == 5 * pixels.shape[0]
    assert "set to air (0 MR units)" in v.meta["padding_note"]


# -- slices that do not make one regular volume ---------------------------------------


def test_missing_slice_is_found(ct_slices, tmp_path):
    slices = copies(ct_slices)
    del slices[3]
    with pytest.raises(InvalidScanError) as exc:
        read_dicom(write_series(tmp_path / "s", slices))
    message = error_of(exc)
    z = [float(ds.ImagePositionPatient[2]) for ds in ct_slices]
    assert "gap of 4.00 mm" in message and "expected 2.00 mm" in message
    assert f"{z[2]:.2f} and {z[4]:.2f} mm" in message
    assert "1 slice missing" in message


def test_uneven_spacing_is_found(ct_slices, tmp_path):
    slices = copies(ct_slices)
    for ds in slices[4:]:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 0.5]
    with pytest.raises(InvalidScanError) as exc:
        read_dicom(write_series(tmp_path / "s", slices))
    message = error_of(exc)
    assert "unevenly spaced" in message and "gap of 2.50 mm" in message
    assert "expected 2.00 mm" in message and "missing" not in message


def test_duplicate_slice_positions(ct_slices, tmp_path):
    slices = copies(ct_slices)
    twin = copy.deepcopy(slices[2])
    twin.SOPInstanceUID = generate_uid()
    folder = write_series(tmp_path / "s", [*slices, twin])
    with pytest.raises(InvalidScanError) as exc:
        read_dicom(folder)
    z = float(slices[2].ImagePositionPatient[2])
    assert f"2 slices share slice position {z:.2f} mm" in error_of(exc)


def test_gantry_tilt_tag(ct_slices, tmp_path):
    slices = copies(ct_slices)
    for ds in slices:
        ds.GantryDetectorTilt = 15
    with pytest.raises(InvalidScanError, match="gantry tilt of 15 degrees"):
        read_dicom(write_series(tmp_path / "s", slices))


def test_slices_stacked_off_the_normal(ct_slices, tmp_path):
    """A tilt the scanner did not write into the tags: axial cosines, but each slice
    shifted in y as a 12-degree gantry tilt would."""
    slices = copies(ct_slices)
    z0 = float(slices[0].ImagePositionPatient[2])
    for ds in slices:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + (z - z0) * math.tan(math.radians(12)), z]
    with pytest.raises(InvalidScanError) as exc:
        read_dicom(write_series(tmp_path / "s", slices))
    assert "stacked at 12.0 degrees to their normal" in error_of(exc)


def test_slices_of_different_size(ct_slices, tmp_path):
    slices = copies(ct_slices)
    odd = slices[2]
    odd.PixelData = np.ascontiguousarray(odd.pixel_array[:256]).tobytes()
    odd.Rows = 256
    with pytest.raises(InvalidScanError) as exc:
        read_dicom(write_series(tmp_path / "s", slices))
    assert "differ in size: IM0002.dcm is 256 x 512 pixels" in error_of(exc)


def test_slices_of_different_orientation(ct_slices, tmp_path):
    slices = copies(ct_slices)
    slices[4].ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # a coronal slice
    with pytest.raises(InvalidScanError) as exc:
        read_dicom(write_series(tmp_path / "s", slices))
    assert "orientation changes within the series: IM0004.dcm" in error_of(exc)


# -- files that cannot be read ---------------------------------------------------------


def test_empty_file_in_a_series_is_named(ct_slices, tmp_path):
    folder = write_series(tmp_path / "s", copies(ct_slices))
    (folder / "IM0009.dcm").write_bytes(b"")
    with pytest.raises(ScanReadError) as exc:
        read_dicom(folder)
    assert error_of(exc) == f"{folder / 'IM0009.dcm'}: is empty (0 bytes)"


def test_truncated_pixel_data_is_named(ct_slices, tmp_path):
    folder = write_series(tmp_path / "s", copies(ct_slices))
    cut = folder / "IM0003.dcm"
    cut.write_bytes(cut.read_bytes()[:-1000])
    with pytest.raises(ScanReadError) as exc:
        read_dicom(folder)
    assert error_of(exc).startswith(f"{cut}: is truncated")


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")
@pytest.mark.parametrize("keep", [0.5, 0.003])
def test_truncated_compressed_file_is_named(real_ct_dicom, tmp_path, keep):
    """A JPEG 2000 file cut in its pixel data, and one cut inside its header."""
    data = sorted(real_ct_dicom.iterdir())[0].read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ScanReadError) as exc:
        read_dicom(cut)
    assert error_of(exc).startswith(f"{cut}: is truncated")


def test_file_cut_inside_its_header_is_named_in_a_folder(ct_slices, tmp_path):
    folder = write_series(tmp_path / "s", copies(ct_slices))
    cut = folder / "IM0002.dcm"
    cut.write_bytes(cut.read_bytes()[:600])  # before Series Instance UID
    with pytest.raises(ScanReadError) as exc:
        list_dicom_series(folder)
    assert (
        error_of(exc)
        == f"{cut}: is truncated: the file ends after 600 bytes, before its pixel data"
    )
    with pytest.raises(ScanReadError, match=r"IM0002\.dcm: is truncated"):
        read_dicom(folder)


def test_truncated_test_file_from_pydicom():
    path = pydicom_test_file("MR_truncated.dcm")
    with pytest.raises(ScanReadError, match="is truncated"):
        read_dicom(path)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "README.txt").write_text("no scans here\n")
    (tmp_path / "notes.md").write_text("# notes\n")
    with pytest.raises(ScanReadError) as exc:
        read_dicom(tmp_path)
    assert error_of(exc) == f"{tmp_path}: contains no DICOM files"
    with pytest.raises(ScanReadError, match="contains no DICOM files"):
        list_dicom_series(tmp_path)


def test_a_text_file_is_not_dicom(tmp_path):
    path = tmp_path / "scan.dcm"
    path.write_text("hello\n")
    with pytest.raises(ScanReadError, match="is not a DICOM file"):
        read_dicom(path)


def test_missing_path(tmp_path):
    with pytest.raises(ScanReadError, match="does not exist"):
        read_dicom(tmp_path / "nowhere")


def test_unreadable_folder(tmp_path, monkeypatch):
    """As root chmod does not stop reading, so the folder listing is made to fail."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ScanReadError) as exc:
        read_dicom(tmp_path)
    assert error_of(exc) == f"{locked}: cannot be read: permission denied"


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "ct.dcm"
    shutil.copy(pydicom_test_file("CT_small.dcm"), path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(args[0]))

    monkeypatch.setattr(dicom_read, "open", refuse, raising=False)
    with pytest.raises(ScanReadError) as exc:
        read_dicom(path)
    assert error_of(exc) == f"{path}: cannot be read: permission denied"


def test_nan_and_inf_in_float_pixel_data(tmp_path):
    ds = pydicom.dcmread(pydicom_test_file("MR_small.dcm"))
    values = ds.pixel_array.astype(np.float32)
    values[3, 4] = np.nan
    values[5, 5] = np.inf
    del ds.PixelData
    ds.FloatPixelData = values.tobytes()
    ds.BitsAllocated = 32
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation"):
        ds.pop(keyword, None)
    ds.save_as(tmp_path / "float.dcm")
    with pytest.raises(InvalidScanError) as exc:
        read_dicom(tmp_path / "float.dcm")
    assert "1 NaN and 1 infinite values" in error_of(exc)


def test_every_error_is_a_medstyle_error(tmp_path):
    """Garbage with a DICOM preamble still gives a project error, not a traceback."""
    path = tmp_path / "garbage.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)
    with pytest.raises(MedstyleError):
        read_dicom(path)
