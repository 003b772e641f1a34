"""A header that declares more voxels than its file holds is refused from the header
alone, before anything allocates the declared size (NIfTI, MetaImage, NRRD; inline,
compressed and detached data); valid files, however well they compress, still read."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from trainer.data.read import read_volume
from trainer.errors import ScanReadError

TINY = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)


def _write(path: Path, array: np.ndarray = TINY, compress: bool = False) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), useCompression=compress)
    return path


def _declare_nifti(path: Path, n: int) -> Path:
    """Make the NIfTI header of ``path`` declare ``n`` x ``n`` x ``n`` voxels."""
    gz = path.name.endswith(".gz")
    data = bytearray(gzip.decompress(path.read_bytes()) if gz else path.read_bytes())
    data[40:56] = struct.pack("<8h", 3, n, n, n, 1, 1, 1, 1)  # dim[0..7]
    path.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
    return path


def _declare_text(path: Path, old: bytes, new: bytes) -> Path:
    """Rewrite one line of a MetaImage or NRRD text header."""
    data = path.read_bytes()
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))
    return path


@pytest.mark.parametrize("name", ["scan.nii", "scan.nii.gz"])
@pytest.mark.parametrize("n", [1024, 30000])
def test_nifti_declaring_more_than_its_file_is_refused(tmp_path, name, n):
    path = _declare_nifti(_write(tmp_path / name), n)
    with pytest.raises(ScanReadError, match=rf"declares {n} x {n} x {n} voxels") as err:
        read_volume(path)
    assert str(err.value).startswith(str(path))


@pytest.mark.parametrize(
    "name, compress, old",
    [
        ("scan.mha", False, b"DimSize = 6 5 4"),
        ("scan.mha", True, b"DimSize = 6 5 4"),  # zlib data: ITK zero-fills what is missing
        ("scan.mhd", False, b"DimSize = 6 5 4"),  # data in scan.raw
        ("scan.nrrd", False, b"sizes: 6 5 4"),
        ("scan.nrrd", True, b"sizes: 6 5 4"),  # gzip encoding
        ("scan.nhdr", False, b"sizes: 6 5 4"),  # data in scan.raw
    ],
)
def test_metaimage_and_nrrd_declaring_more_than_their_data_are_refused(
    tmp_path, name, compress, old
):
    path = _write(tmp_path / name, compress=compress)
    new = old.replace(b"6 5 4", b"1024 1024 1024")
    _declare_text(path, old, new)
    with pytest.raises(ScanReadError, match=r"declares 1024 x 1024 x 1024 voxels \(2\.15 GB\)"):
        read_volume(path)


@pytest.mark.parametrize("name", ["z.nii.gz", "z.mha", "z.nrrd"])
def test_data_compressed_a_thousand_fold_still_reads(tmp_path, name):
    """All-zero data compresses about 1028:1, close to deflate's limit of 1032:1."""
    zeros = np.zeros((32, 512, 512), np.int16)
    path = _write(tmp_path / name, zeros, compress=True)
    assert zeros.nbytes / path.stat().st_size > 1000
    assert read_volume(path, modality="CT").shape == zeros.shape


@pytest.mark.parametrize("name", ["s.nii", "s.nii.gz", "s.mha", "s.mhd", "s.nrrd", "s.nhdr"])
def test_valid_files_read_whatever_the_layout(tmp_path, name):
    path = _write(tmp_path / name, compress=name.endswith((".gz", ".mha", ".nrrd")))
    np.testing.assert_array_equal(read_volume(path, modality="CT").array, TINY)


def test_detached_header_without_a_final_newline_reads(tmp_path):
    path = _write(tmp_path / "s.mhd")
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # "ElementDataFile = s.raw" ends it
    np.testing.assert_array_equal(read_volume(path, modality="CT").array, TINY)


def test_real_t2_nifti_is_not_refused(real_t2_nifti):
    assert read_volume(real_t2_nifti).shape == (19, 384, 384)
