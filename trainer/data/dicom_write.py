"""Write a :class:`Volume` as a DICOM series: one CT Image or MR Image file per slice.

Everything is built from scratch with pydicom (Explicit VR Little Endian, uncompressed)
so that no attribute of a source scan can leak into the output: the identity written
is only what the caller passes (empty by default), UIDs are fresh, dates are the time
of writing. The output says what it is: ``ImageType`` DERIVED\\SECONDARY, a
SeriesDescription and a DerivationDescription built from the :class:`Provenance`,
and, for synthetic images, an ImageComments line that says so.

Geometry comes straight from the Volume (LPS, ``array[z, y, x]``, possibly oblique
``direction``): slice ``k`` is ``array[k]``, its rows run along ``direction[:, 1]``
and its columns along ``direction[:, 0]``, its first voxel sits at
``origin_lps_mm + k * spacing_mm[0] * direction[:, 2]``. Reading the folder back
(SimpleITK's ImageSeriesReader, pydicom) gives the same array and geometry.
"""

from __future__ import annotations

import copy
import datetime as _dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import DSfloat

import trainer
from trainer.data.provenance import Provenance
from trainer.data.volume import Volume
from trainer.errors import ScanWriteError
from trainer.files import atomic_folder

log = logging.getLogger(__name__)

SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}

#: CT window written into every slice (pelvic soft tissue, in HU).
CT_WINDOW_HU = (40.0, 400.0)

#: Usual CT rescale: stored value = HU + 1024, so air (-1024 HU) is stored as 0.
CT_INTERCEPT_HU = -1024.0

INT16_MIN, INT16_MAX = -32768, 32767
UINT16_MAX = 65535

#: A written value may differ from the volume's by at most this fraction of the
#: central 99 % of the values (0.5th to 99.5th percentile) without a warning.
PRECISION = 1e-3

# The longest values DICOM allows for the text attributes we fill (VR LO, PN, ST).
_LO_MAX, _PN_MAX, _ST_MAX = 64, 64, 1024


def write_dicom_series(
    volume: Volume,
    folder: str | os.PathLike[str],
    *,
    provenance: Provenance,
    overwrite: bool = False,
    patient_name: str = "",
    patient_id: str = "",
    series_description: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``volume`` into ``folder`` as one DICOM file per slice; returns ``folder``.

    The folder is written next to its final place and moved in only when every slice
    is written: a failure leaves nothing behind, and an existing ``folder`` is
    replaced only with ``overwrite=True`` (and only once the new one is complete).

    Pixel values (16 bits stored; native value = stored * RescaleSlope +
    RescaleIntercept; no value is ever clipped):

    * Whole numbers are kept exactly: CT (signed) with intercept -1024 and slope 1
      whenever the data lie in [-33792, 31743] HU (every real CT), the intercept moved
      to the middle of a wider range, and a slope above 1 only for a range wider than
      65534 HU; MR as plain unsigned values (signed if any is negative), without
      rescale attributes, whenever they fit.
    * Anything else (fractional values, such as a synthetic CT or an MR normalised to
      [0, 1], or MR wider than 16 bits) is spread over all 65536 stored values with a
      RescaleSlope of about (max - min) / 65533, so every value comes back within half
      a step: 1/131066 of the value range. When that step is coarser than
      ``PRECISION`` of the central 99 % of the values (one outlier stretching the
      range), a warning is logged and ImageComments says so.

    Identity: nothing is copied from the source scan; ``volume.patient_id`` is NOT
    written. PatientName / PatientID are ``patient_name`` / ``patient_id`` (empty by
    default), PatientSex is ``volume.sex``; with no name or ID given the files also
    carry PatientIdentityRemoved YES.

    Args:
        volume: the scan; ``volume.modality`` must be "CT" or "MR".
        folder: the series folder to create (files ``slice_0001.dcm``, ... inferior
            to superior, InstanceNumber 1, 2, ...).
        provenance: what made the data (synthetic or a conversion); written into
            SeriesDescription, DerivationDescription and, if synthetic, ImageComments.
        overwrite: replace an existing ``folder``.
        patient_name, patient_id: identity to write (each at most 64 characters).
        series_description: SeriesDescription (default built from ``provenance``;
            cut to 64 characters).
        progress: called as ``progress(done, total)`` after each slice.

    Raises:
        ScanWriteError: modality unknown, values not finite, a bad name or ID, the
            folder exists (without ``overwrite``), or the disk refused a write.
    """
    folder = Path(folder)
    if volume.modality not in SOP_CLASSES:
        raise ScanWriteError(
            "cannot write DICOM without knowing whether the scan is CT or MR "
            "(say which with --modality CT or --modality MR)",
            folder,
        )
    if 0 in volume.shape:
        raise ScanWriteError(f"the volume is empty (shape {volume.shape})", folder)
    if not np.isfinite(volume.array).all():
        raise ScanWriteError("the volume holds NaN or infinite values; DICOM cannot", folder)
    _check_text("patient name", patient_name, _PN_MAX, folder)
    _check_text("patient ID", patient_id, _LO_MAX, folder)

    encoding = _encoding(volume)
    if encoding.note:
        log.warning("%s: %s", folder, encoding.note)
    series = _series_dataset(
        volume, provenance, encoding, patient_name, patient_id, series_description
    )
    row_dir, col_dir = volume.direction[:, 0], volume.direction[:, 1]
    normal = np.cross(row_dir, col_dir)  # the normal readers derive from the orientation
    origins = volume.slice_origins_lps_mm
    total = volume.num_slices
    width = max(4, len(str(total)))

    try:
        with atomic_folder(folder, overwrite=overwrite) as tmp:
            for k in range(total):
                ds = copy.deepcopy(series)
                ds.SOPInstanceUID = generate_uid()
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                ds.InstanceNumber = k + 1
                ds.ImagePositionPatient = _ds(origins[k])
                ds.SliceLocation = _ds([float(origins[k] @ normal)])[0]
                pixels = encoding.encode(volume.array[k])
                ds.set_pixel_data(pixels, "MONOCHROME2", 16, generate_instance_uid=False)
                ds.save_as(tmp / f"slice_{k + 1:0{width}d}.dcm", enforce_file_format=True)
                if progress is not None:
                    progress(k + 1, total)
    except OSError as exc:
        raise ScanWriteError(
            f"could not write the DICOM series ({exc.strerror or exc})", folder
        ) from None
    return folder


# -- pixel representation --------------------------------------------------------------


@dataclass(frozen=True)
class _Encoding:
    """How native values become 16-bit stored values: ``stored = round((v - intercept)
    / slope)`` clipped to ``[low, high]``; ``window`` (centre, width) is in native units;
    ``rescale``: whether RescaleSlope/Intercept are written (an MR of whole numbers
    needs none)."""

    dtype: type
    low: int
    high: int
    window: tuple[float, float]
    intercept: float = 0.0
    slope: float = 1.0
    rescale: bool = True
    note: str = ""

    def encode(self, values: np.ndarray) -> np.ndarray:
        """``[y, x]`` native values -> ``[y, x]`` stored values (one slice at a time, so a
        large volume never needs a second full-size copy)."""
        scaled = (values.astype(np.float64) - self.intercept) / self.slope
        return np.clip(np.rint(scaled), self.low, self.high).astype(self.dtype)


def _encoding(volume: Volume) -> _Encoding:
    """The stored representation for the whole volume (see :func:`write_dicom_series`)."""
    array = volume.array
    lo, hi = float(array.min()), float(array.max())
    whole = all(np.array_equal(plane, np.rint(plane)) for plane in array)  # slice by slice
    p_lo, p_hi = _central_range(array)
    if volume.modality == "CT":
        low, high, dtype = INT16_MIN, INT16_MAX, np.int16
        rescale = True
        intercept, slope = ct_rescale(lo, hi) if whole else fine_rescale(lo, hi, low, high)
        window = CT_WINDOW_HU
    else:
        low, high, dtype = (
            (0, UINT16_MAX, np.uint16) if lo >= 0 else (INT16_MIN, INT16_MAX, np.int16)
        )
        rescale = not (whole and low <= lo and hi <= high)
        intercept, slope = fine_rescale(lo, hi, low, high) if rescale else (0.0, 1.0)
        window = ((p_lo + p_hi) / 2.0, max(p_hi - p_lo, 1.0))
    exact = whole and slope == 1.0 and intercept.is_integer()
    note = ""
    if not exact and slope / 2.0 > PRECISION * ((p_hi - p_lo) or (hi - lo)):
        note = (
            f"{volume.modality} values rounded to steps of {slope:g} {volume.units} (up to "
            f"{slope / 2.0:.3g} off): 16 bits must span {lo:g} to {hi:g}, while 99 % of the "
            f"values lie in {p_lo:.4g} to {p_hi:.4g} (outliers?)"
        )
    return _Encoding(dtype, low, high, window, intercept, slope, rescale, note)


def _central_range(array: np.ndarray) -> tuple[float, float]:
    """The 0.5th and 99.5th percentiles of ``array``, from at most ~1M of its values."""
    step = max(1, array.size // 1_000_000)
    p_lo, p_hi = np.percentile(array.ravel()[::step], [0.5, 99.5])
    return float(p_lo), float(p_hi)


def fine_rescale(lo: float, hi: float, low: int, high: int) -> tuple[float, float]:
    """``(intercept, slope)`` that spread values in ``[lo, hi]`` over the stored values
    ``low..high`` (value = stored * slope + intercept), keeping one stored value spare
    at either end for rounding. Both are exactly what their DS text says, so a reader
    decodes with the very numbers the writer encoded with."""
    slope = _ds_up((hi - lo) / (high - low - 2)) or 1.0
    return _ds_exact(lo - (low + 1) * slope), slope


def ct_rescale(lo_hu: float, hi_hu: float) -> tuple[float, float]:
    """``(intercept, slope)`` so that HU values in ``[lo_hu, hi_hu]`` fit signed 16 bits
    (HU = stored * slope + intercept): -1024 and 1 whenever they do, as scanners write."""
    if lo_hu - CT_INTERCEPT_HU >= INT16_MIN and hi_hu - CT_INTERCEPT_HU <= INT16_MAX:
        return CT_INTERCEPT_HU, 1.0
    centre = float(np.round((lo_hu + hi_hu) / 2.0))
    if hi_hu - lo_hu <= 2 * INT16_MAX - 2:
        return centre, 1.0
    # Rare (corrupt or non-HU data): a coarser step.
    return centre, _ds_up((hi_hu - lo_hu) / (2 * INT16_MAX - 2))


# -- the attributes shared by every slice ----------------------------------------------


def _series_dataset(
    volume: Volume,
    provenance: Provenance,
    encoding: _Encoding,
    patient_name: str,
    patient_id: str,
    series_description: str | None,
) -> Dataset:
    """Every attribute but the per-slice ones (SOP instance, position, pixels)."""
    modality = volume.modality
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    marker = "SYNTHETIC " if provenance.synthetic else ""

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SOP_CLASSES[modality]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = f"MEDSTYLE_{trainer.__version__}"[:16]

    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names and descriptions may need it
    ds.SOPClassUID = SOP_CLASSES[modality]
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time

    # Patient: only what the caller gives; nothing from the source scan.
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = volume.sex or ""
    if not patient_name and not patient_id:
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "medstyle export: no attribute copied from any source"

    # General Study: a new study made now.
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"  # Type 2, but a DICOMDIR needs a value
    ds.AccessionNumber = ""
    ds.StudyDescription = f"{marker}medstyle"

    # General Series
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = series_text(volume, provenance, series_description)
    # Type 2C, empty meaning "unknown": the position on the table is not known, nor
    # whether the volume shows a paired body part (dciodvfy warns about the empty
    # Laterality, which is the honest value for a volume of unknown extent).
    ds.PatientPosition = ""
    ds.Laterality = ""

    # Frame of Reference: fresh, so the output never registers onto the source.
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""

    # General Equipment
    ds.Manufacturer = "medstyle"
    ds.ManufacturerModelName = "medstyle"
    ds.SoftwareVersions = provenance.software[:_LO_MAX]

    # General Image
    ds.ContentDate, ds.ContentTime = date, time
    # Value 3: AXIAL (a cross-section) is the CT term; the MR IOD wants a value and
    # OTHER is its defined term for anything that is not a known kind of image.
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if modality == "CT" else "OTHER"]
    ds.DerivationDescription = provenance.one_line(_ST_MAX)
    comments = []
    if provenance.synthetic:
        comments.append(f"SYNTHETIC image, not acquired from a patient: {provenance.description}")
    if encoding.note:
        comments.append(encoding.note)
    if comments:
        ds.ImageComments = "; ".join(comments)
    ds.BurnedInAnnotation = "NO"

    # Image Plane: PixelSpacing is (between rows, between columns) = (y, x).
    ds.PixelSpacing = _ds([volume.spacing_mm[1], volume.spacing_mm[2]])
    ds.ImageOrientationPatient = _ds([*volume.direction[:, 0], *volume.direction[:, 1]])
    ds.SliceThickness = _ds_short(slice_thickness_mm(volume))
    ds.SpacingBetweenSlices = _ds_short(volume.spacing_mm[0])

    # VOI LUT: a window in output units (HU for CT).
    centre, width = encoding.window
    ds.WindowCenter = _ds([centre])[0]
    ds.WindowWidth = _ds([width])[0]

    if encoding.rescale:
        ds.RescaleIntercept = _ds([encoding.intercept])[0]
        ds.RescaleSlope = _ds([encoding.slope])[0]
    if modality == "CT":
        _ct_image(ds)
    else:
        _mr_image(ds)
    return ds


def _ct_image(ds: Dataset) -> None:
    """CT Image module: rescale to HU; acquisition facts unknown (Type 2, empty)."""
    ds.RescaleType = "HU"
    ds.KVP = ""
    ds.AcquisitionNumber = ""


def _mr_image(ds: Dataset) -> None:
    """MR Image module. ScanningSequence is Type 1: "RM" (research mode) is the one
    honest value for images not acquired by a known sequence; the rest is Type 2 and
    left empty because the acquisition is not known."""
    ds.ScanningSequence = "RM"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = ""
    ds.RepetitionTime = ""
    ds.EchoTime = ""
    ds.EchoTrainLength = ""
    ds.AcquisitionNumber = ""


def slice_thickness_mm(volume: Volume) -> float:
    """Slice Thickness to write (mm): the source's, which a DICOM reader keeps in
    ``meta["slice_thickness_mm"]`` (slices may be thicker or thinner than their spacing)
    and which resampling onto another grid drops; else the slice spacing."""
    thickness = volume.meta.get("slice_thickness_mm")
    if isinstance(thickness, int | float) and thickness > 0:
        return float(thickness)
    return volume.spacing_mm[0]


def series_text(volume: Volume, provenance: Provenance, chosen: str | None = None) -> str:
    """The SeriesDescription (at most 64 characters): ``chosen`` if given, else
    "SYNTHETIC CT medstyle" (or MR) for synthetic data and "medstyle conversion"
    otherwise. A chosen text for synthetic data that does not say so gets a
    "SYNTHETIC " prefix: synthetic output is always marked."""
    if chosen:
        text = chosen
        if provenance.synthetic and "synthetic" not in chosen.lower():
            text = f"SYNTHETIC {chosen}"
    elif provenance.synthetic:
        text = f"SYNTHETIC {volume.modality} medstyle"
    else:
        text = "medstyle conversion"
    return text[:_LO_MAX]


# -- helpers ---------------------------------------------------------------------------


def _ds(values) -> list[DSfloat]:
    """Decimal strings DICOM accepts (at most 16 characters each)."""
    return [DSfloat(float(v), auto_format=True) for v in values]


def _ds_exact(value: float) -> float:
    """The number the DS text written for ``value`` holds (up to 16 characters)."""
    return float(str(_ds([value])[0]))


def _ds_up(value: float) -> float:
    """``value`` rounded up to 6 significant digits: a DS text holds it exactly, and a
    range divided by it still fits the stored values."""
    return float(f"{value * 1.00001:.6g}")


def _ds_short(value: float) -> DSfloat:
    """A length or spacing in mm to 8 significant digits: 1 mm reads "1", not the
    0.99999999999999 that averaging slice positions gives."""
    return DSfloat(f"{float(value):.8g}")


def _check_text(what: str, value: str, limit: int, folder: Path) -> None:
    if len(value) > limit:
        raise ScanWriteError(f"the {what} is longer than {limit} characters", folder)
    if "\\" in value or any(ord(c) < 32 for c in value):
        raise ScanWriteError(f"the {what} may not hold a backslash or control characters", folder)
