"""Read DICOM: list the series in a folder, and read one series (or one file) into a Volume.

Headers are read with pydicom (without pixel data while scanning a folder); pixels are
decoded by pydicom with its plugins (pylibjpeg for JPEG, JPEG-LS, JPEG 2000 and RLE) and
mapped to native units (HU for CT) by pydicom's ``apply_modality_lut``. Slices are
ordered by their position along the slice normal, the geometry is checked (see
:mod:`trainer.data.dicom_checks`), and the stack becomes a SimpleITK image that
:meth:`Volume.from_sitk` turns to the project's LPS orientation.

Multi-frame files work too: enhanced objects (Enhanced CT/MR, legacy converted) take
each frame's geometry and rescale from the per-frame or shared functional groups; older
multi-frame objects (e.g. RT Dose) use the plain attributes, with the frames stacked
along the normal by Grid Frame Offset Vector or the slice spacing.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from trainer.data import dicom_checks as checks
from trainer.data.dicom_checks import Frame
from trainer.data.dicom_padding import fill_padding, padding_facts, padding_range
from trainer.data.volume import MODALITIES, SEXES, Volume
from trainer.errors import InvalidScanError, ScanReadError

# First bytes of a DICOM file written without the 128-byte preamble: a group 0002 or
# 0008 element tag, little or big endian.
_NO_PREAMBLE_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
#: How listings name a series without a UID, and how ``series_uid`` chooses it.
NO_UID = "(no series UID)"
#: How messages tell the user to choose a series: by UID, or by its [N] in the listing
#: (a series without a UID has only that).
CHOOSE_SERIES = "--series UID, or --series N for the series listed as [N]"


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a folder.

    Attributes:
        uid: Series Instance UID (``""`` when the files carry none).
        modality: the Modality tag as written ("CT", "MR", "RTSTRUCT", ...).
        description: Series Description.
        series_number: Series Number, ``None`` when absent.
        num_files: number of files in the series.
        rows, columns: matrix size of the first image (``None`` for non-image objects).
        study_uid: Study Instance UID.
        sop_class_name: readable SOP class of the first file, e.g. "CT Image Storage".
        num_images: number of 2-D images: slices, or frames of multi-frame files.
        not_image: what the series is when it holds no image volume (e.g. "an RT
            Structure Set"), ``None`` for an image series.
    """

    uid: str
    modality: str
    description: str
    series_number: int | None
    num_files: int
    rows: int | None
    columns: int | None
    study_uid: str
    sop_class_name: str
    num_images: int = 0
    not_image: str | None = None

    @property
    def is_image(self) -> bool:
        return self.not_image is None

    def label(self) -> str:
        """One line for lists and messages: ``UID (CT, "abdomen", 20 slices)``."""
        parts = [self.modality or "no modality"]
        if self.description:
            parts.append(f'"{self.description}"')
        if self.not_image is not None:
            parts.append(self.not_image.split(" ", 1)[1])  # "an RT Plan" -> "RT Plan"
        elif self.num_images > self.num_files:
            parts.append(
                f"{self.num_files} file{'s' * (self.num_files > 1)}, {self.num_images} frames"
            )
        else:
            parts.append(f"{self.num_images} slice{'s' * (self.num_images != 1)}")
        return f"{self.uid or NO_UID} ({', '.join(parts)})"


@dataclass
class _Header:
    """A DICOM file's header (no pixel data) and facts needed before decoding."""

    path: Path
    ds: Dataset
    has_pixels: bool
    size_bytes: int


# -- public API ------------------------------------------------------------------------


def list_dicom_series(folder: Path) -> list[SeriesInfo]:
    """The series in ``folder`` and its sub-folders, grouped by Series Instance UID,
    ordered by study, series number and UID.

    Files that are not DICOM (README, .txt, images, hidden files) and DICOMDIR indexes are
    skipped silently. Empty or damaged DICOM files raise :class:`ScanReadError`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ScanReadError("is not a folder" if folder.exists() else "does not exist", folder)
    return [_series_info(uid, headers) for uid, headers in _scan_folder(folder).items()]


def read_dicom(path: Path, series_uid: str | None = None) -> Volume:
    """Read a DICOM series folder or a single DICOM file into a :class:`Volume`.

    Args:
        path: a folder (searched recursively) or one file: a single slice gives a
            1-slice volume, a multi-frame file a volume of its frames.
        series_uid: the Series Instance UID to read when the folder holds several image
            series (``NO_UID`` for the files without one, or N for the series listed
            as [N]; non-image objects such as RT Structure Sets are ignored when
            choosing).

    Returns:
        The volume in LPS orientation (``array[z, y, x]``, slice 0 the most inferior,
        row 0 anterior, column 0 the patient's right), in HU for CT (Rescale
        Slope/Intercept or Modality LUT applied) and scanner units for MR;
        ``spacing_mm`` in ``(z, y, x)`` order.

    Raises:
        ScanReadError: missing, unreadable, empty or truncated files; no DICOM in a
            folder; several series and no (or an unknown) ``series_uid``.
        InvalidScanError: a non-image object, colour data, slices that do not make one
            regular volume (differing size or orientation, gaps, duplicates, gantry
            tilt), NaN or infinite pixel values.
    """
    path = Path(path)
    if not path.exists():
        raise ScanReadError("does not exist", path)
    if path.is_dir():
        headers = _choose_series(path, _scan_folder(path), series_uid)
    else:
        header = _read_header(path)
        if header is None:
            raise ScanReadError("is not a DICOM file", path)
        uid = str(header.ds.get("SeriesInstanceUID", "") or "")
        if series_uid is not None and series_uid not in (uid, uid or NO_UID):
            raise ScanReadError(f"belongs to series {uid or NO_UID}, not {series_uid}", path)
        headers = [header]
    for h in headers:
        checks.check_is_image(h.ds, h.has_pixels, h.path, h.size_bytes)
        checks.check_greyscale(h.ds, h.path)
    return _read_series(path, headers)


# -- finding files and series ----------------------------------------------------------


def _scan_folder(folder: Path) -> dict[str, list[_Header]]:
    """Headers of the DICOM files under ``folder``, by Series Instance UID (DICOMDIRs
    left out), series ordered by study, series number and UID."""
    headers = [h for h in map(_read_header, _files_under(folder)) if h is not None]
    headers = [h for h in headers if not _is_dicomdir(h)]
    if not headers:
        raise ScanReadError("contains no DICOM files", folder)
    for h in headers:  # a cut file has no series UID left: name it rather than list it
        checks.check_not_truncated(h.ds, h.has_pixels, h.path, h.size_bytes)
    groups: dict[str, list[_Header]] = defaultdict(list)
    for h in headers:
        groups[str(h.ds.get("SeriesInstanceUID", "") or "")].append(h)

    def key(item: tuple[str, list[_Header]]) -> tuple[str, int, str]:
        ds = item[1][0].ds
        return (
            str(ds.get("StudyInstanceUID", "") or ""),
            _int(ds.get("SeriesNumber")) or 0,
            item[0],
        )

    return dict(sorted(groups.items(), key=key))


def _files_under(folder: Path) -> list[Path]:
    """Every file below ``folder`` (hidden files and folders left out), in name order."""

    def fail(err: OSError) -> None:
        reason = (err.strerror or str(err)).lower()
        raise ScanReadError(f"cannot be read: {reason}", err.filename or folder)

    files: list[Path] = []
    for root, dirs, names in os.walk(folder, onerror=fail):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files.extend(Path(root) / n for n in sorted(names) if not n.startswith("."))
    return files


def _read_header(path: Path) -> _Header | None:
    """The header of a DICOM file, ``None`` for a file that is not DICOM.

    Raises :class:`ScanReadError` for an empty file, a file that cannot be opened, and a
    file that starts like DICOM but cannot be parsed.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fp:
            start = fp.read(132)
            if size == 0:
                raise ScanReadError("is empty (0 bytes)", path)
            with_preamble = start[128:132] == b"DICM"
            if not with_preamble and start[:2] not in _NO_PREAMBLE_STARTS:
                return None
            fp.seek(0)
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True, force=not with_preamble)
            except Exception as err:  # pydicom raises many types for damaged files
                if not with_preamble:
                    return None
                raise ScanReadError(f"is a damaged DICOM file ({_one_line(err)})", path) from err
            # Reading stops at the pixel data element, so a file with pixels has bytes left.
            has_pixels = fp.tell() < size
    except OSError as err:
        raise ScanReadError(f"cannot be read: {(err.strerror or str(err)).lower()}", path) from err
    if not with_preamble and not any(
        k in ds for k in ("SOPClassUID", "Modality", "SeriesInstanceUID")
    ):
        return None  # bytes that happen to parse, not a DICOM object
    return _Header(path, ds, has_pixels, size)


def _is_dicomdir(header: _Header) -> bool:
    return header.path.name.upper() == "DICOMDIR" or checks.sop_class(header.ds) == _DICOMDIR_CLASS


def _series_info(uid: str, headers: Sequence[_Header]) -> SeriesInfo:
    ds = headers[0].ds
    rows = _int(ds.get("Rows"))
    columns = _int(ds.get("Columns"))
    return SeriesInfo(
        uid=uid,
        modality=str(ds.get("Modality", "") or ""),
        description=str(ds.get("SeriesDescription", "") or ""),
        series_number=_int(ds.get("SeriesNumber")),
        num_files=len(headers),
        rows=rows,
        columns=columns,
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        sop_class_name=checks.sop_class_name(ds),
        num_images=sum(_int(h.ds.get("NumberOfFrames")) or 1 for h in headers),
        not_image=checks.not_an_image(ds, headers[0].has_pixels),
    )


def _choose_series(
    folder: Path, groups: dict[str, list[_Header]], series_uid: str | None
) -> list[_Header]:
    """The headers of the series to read: the one asked for (by its UID, or by its number
    N in the folder's listing, 1 first: the only way to name a series without a UID), or
    the only image series."""
    infos = [_series_info(uid, hs) for uid, hs in groups.items()]
    numbered = {info.uid: n for n, info in enumerate(infos, start=1)}

    def listing(shown: Sequence[SeriesInfo]) -> str:
        return "; ".join(f"[{numbered[info.uid]}] {info.label()}" for info in shown)

    if series_uid is not None:
        key = "" if series_uid == NO_UID else series_uid  # files without a UID group as ""
        if key in groups:  # a UID first: a UID made of digits alone is still a UID
            return groups[key]
        if series_uid.isdigit() and 1 <= int(series_uid) <= len(infos):
            return groups[infos[int(series_uid) - 1].uid]
        raise ScanReadError(
            f"has no series {series_uid}; it holds {len(infos)} series: {listing(infos)}. "
            f"Choose one with {CHOOSE_SERIES}",
            folder,
        )
    images = [info for info in infos if info.is_image]
    if len(images) == 1:
        return groups[images[0].uid]
    if not images:
        if len(infos) == 1:
            raise InvalidScanError(f"holds {infos[0].not_image}, not an image", folder)
        raise InvalidScanError(f"holds no image series, only: {listing(infos)}", folder)
    raise ScanReadError(
        f"holds {len(images)} image series: {listing(images)}. Choose one with {CHOOSE_SERIES}",
        folder,
    )


# -- frames and geometry ---------------------------------------------------------------


def _frames_of(header: _Header, notes: list[str], assume_geometry: bool) -> list[Frame]:
    """The 2-D frames of one file with their geometry.

    Args:
        assume_geometry: for a series of one file, fill in missing geometry (identity
            orientation, origin 0, 1 mm spacing) and say so in ``notes`` rather than fail.
    """
    ds, path = header.ds, header.path
    n = _int(ds.get("NumberOfFrames")) or 1
    rows, columns = _int(ds.get("Rows")) or 0, _int(ds.get("Columns")) or 0
    samples = _int(ds.get("SamplesPerPixel")) or 1
    spacing = _floats(ds.get("PixelSpacing"), 2)

    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        frames = []
        for k in range(n):
            position = _group_item(ds, k, "PlanePositionSequence")
            orientation = _group_item(ds, k, "PlaneOrientationSequence")
            measures = _group_item(ds, k, "PixelMeasuresSequence")
            rescale = _group_item(ds, k, "PixelValueTransformationSequence")
            frames.append(
                Frame(
                    path=path,
                    index=k,
                    position=_array(position, "ImagePositionPatient", 3),
                    orientation=_array(orientation, "ImageOrientationPatient", 6),
                    pixel_spacing_mm=(
                        _floats(measures.get("PixelSpacing"), 2) if measures else None
                    )
                    or spacing,
                    rows=rows,
                    columns=columns,
                    samples_per_pixel=samples,
                    rescale=rescale if rescale is not None else ds,
                )
            )
        if all(f.position is not None and f.orientation is not None for f in frames):
            return frames
        # Functional groups without plane geometry: use the plain attributes below.

    position = _array(ds, "ImagePositionPatient", 3)
    orientation = _array(ds, "ImageOrientationPatient", 6)
    if assume_geometry:
        if orientation is None:
            orientation = np.array([1.0, 0, 0, 0, 1, 0])
            notes.append("no Image Orientation (Patient): axial assumed")
        if position is None:
            position = np.zeros(3)
            notes.append("no Image Position (Patient): origin 0 assumed")
    if n == 1 and "NumberOfFrames" not in ds:
        return [Frame(path, None, position, orientation, spacing, rows, columns, samples, ds)]

    # Older multi-frame objects: frames stacked along the normal from the first position.
    offsets = _frame_offsets_mm(ds, n, notes)
    if position is not None and orientation is not None:
        normal = checks.axes(orientation, path)[:, 2]
        positions: list[np.ndarray | None] = [position + d * normal for d in offsets]
    else:
        positions = [None] * n
    return [
        Frame(path, k, positions[k], orientation, spacing, rows, columns, samples, ds)
        for k in range(n)
    ]


def _frame_offsets_mm(ds: Dataset, n: int, notes: list[str]) -> np.ndarray:
    """``[n]`` distances (mm) of each frame from the first along the normal."""
    grid = ds.get("GridFrameOffsetVector")  # RT Dose
    if grid is not None and len(grid) == n:
        offsets = np.asarray([float(g) for g in grid])
        return offsets - offsets[0]  # absolute z values and relative offsets alike
    step = _spacing_between_slices(ds)
    if step is None:
        step = 1.0
        if n > 1:
            notes.append("no spacing between frames: 1 mm assumed")
    return np.arange(n) * step


def _spacing_between_slices(ds: Dataset) -> float | None:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _floats(ds.get(keyword), 1)
        if value is not None and value[0] > 0:
            return value[0]
    return None


def _slice_thickness_mm(ds: Dataset) -> float | None:
    """Slice Thickness (mm) as the file states it (plain attribute, else the first
    frame's Pixel Measures), ``None`` when absent or not positive."""
    measures = _group_item(ds, 0, "PixelMeasuresSequence")
    for source in (ds, measures):
        value = _floats(source.get("SliceThickness"), 1) if source is not None else None
        if value is not None and value[0] > 0:
            return value[0]
    return None


def _group_item(ds: Dataset, frame: int, keyword: str) -> Dataset | None:
    """The first item of a functional group macro for ``frame``: per-frame if present,
    otherwise shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame) and per_frame[frame].get(keyword):
        return per_frame[frame].get(keyword)[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and shared[0].get(keyword):
        return shared[0].get(keyword)[0]
    return None


# -- reading a series ------------------------------------------------------------------


def _read_series(path: Path, headers: Sequence[_Header]) -> Volume:
    """Check the geometry of a chosen series, decode its pixels, build the volume."""
    notes: list[str] = []
    frames = [f for h in headers for f in _frames_of(h, notes, assume_geometry=len(headers) == 1)]
    checks.check_consistent(frames, path)
    if frames[0].orientation is None:
        raise InvalidScanError(
            f"{frames[0].name} has no Image Orientation (Patient), so the slices cannot be placed",
            path,
        )
    directions = checks.axes(frames[0].orientation, path)
    normal = directions[:, 2]
    if len(frames) > 1:
        checks.check_gantry_tilt_tag(headers[0].ds, path)
        frames = checks.sort_along_normal(frames, normal, path)
        checks.check_stacked_along_normal(frames, normal, path)
        spacing_z = checks.slice_spacing_mm(frames, normal, path)
    else:
        spacing_z = _single_slice_thickness(headers[0].ds, frames[0], notes)
    row_spacing, column_spacing = frames[0].pixel_spacing_mm or (1.0, 1.0)
    if frames[0].pixel_spacing_mm is None:
        if len(headers) > 1:
            raise InvalidScanError(f"{frames[0].name} has no Pixel Spacing", path)
        notes.append("no Pixel Spacing: 1 mm assumed")

    array, padding = _decode(frames)
    checks.check_finite(array, path)
    fields = _fields(path, headers, notes)
    if padding is not None:  # padding is "no data", never tissue: make it air
        padded, bounds = padding
        air = fill_padding(array, padded, fields["modality"])

    image = sitk.GetImageFromArray(array)  # [slice, row, column] -> SimpleITK (x, y, z)
    image.SetSpacing((column_spacing, row_spacing, spacing_z))
    image.SetOrigin(tuple(float(v) for v in frames[0].position))  # type: ignore[union-attr]
    image.SetDirection(tuple(directions.ravel()))
    volume = Volume.from_sitk(image, **fields)
    if padding is not None:
        volume.meta.update(padding_facts(int(padded.sum()), padded.size, bounds, air, volume.units))
    return volume


def _single_slice_thickness(ds: Dataset, frame: Frame, notes: list[str]) -> float:
    """Slice spacing (mm) for a 1-slice volume, from the functional groups or plain tags."""
    if frame.index is not None:
        measures = _group_item(ds, frame.index, "PixelMeasuresSequence")
        if measures is not None:
            value = _spacing_between_slices(measures)
            if value is not None:
                return value
    value = _spacing_between_slices(ds)
    if value is None:
        notes.append("no slice thickness: 1 mm assumed")
    return value or 1.0


def _decode(
    frames: Sequence[Frame],
) -> tuple[np.ndarray, tuple[np.ndarray, tuple[int, int]] | None]:
    """``[n, rows, columns]`` float32 pixel values in native units, in ``frames`` order,
    and, when a file declares pixel padding, the ``[n, rows, columns]`` mask of padded
    pixels (stored values in its Pixel Padding Value / Range Limit) with the first
    declared range (stored values); ``None`` when no file does."""
    out = np.empty((len(frames), frames[0].rows, frames[0].columns), dtype=np.float32)
    padded: np.ndarray | None = None
    first_bounds = (0, 0)
    by_file: dict[Path, list[int]] = defaultdict(list)
    for i, f in enumerate(frames):
        by_file[f.path].append(i)
    for file, slots in by_file.items():
        ds, pixels = _pixels_of(file)
        bounds = padding_range(ds)
        if bounds is not None and padded is None:
            padded = np.zeros(out.shape, dtype=bool)
            first_bounds = bounds
        for i in slots:
            f = frames[i]
            raw = pixels if f.index is None or pixels.ndim == 2 else pixels[f.index]
            if raw.shape != (f.rows, f.columns):
                raise InvalidScanError(
                    f"pixel data is {raw.shape} but Rows x Columns says {f.rows} x {f.columns}",
                    file,
                )
            values = apply_modality_lut(raw, f.rescale)
            if "DoseGridScaling" in ds:  # RT Dose: stored integers -> Gy
                values = values * float(ds.DoseGridScaling)
            out[i] = values
            if bounds is not None and padded is not None:  # stored values, before rescale
                padded[i] = (raw >= bounds[0]) & (raw <= bounds[1])
    return out, None if padded is None else (padded, first_bounds)


def _pixels_of(file: Path) -> tuple[Dataset, np.ndarray]:
    """The dataset and decoded (stored) pixel values of one file: ``[rows, columns]``, or
    ``[frames, rows, columns]`` for a multi-frame file."""
    try:
        ds = pydicom.dcmread(file)
    except OSError as err:
        raise ScanReadError(f"cannot be read: {(err.strerror or str(err)).lower()}", file) from err
    except Exception as err:
        raise ScanReadError(f"is a damaged DICOM file ({_one_line(err)})", file) from err
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        # The header promised pixel data (checked before), so the data was cut short.
        raise ScanReadError("is truncated: its pixel data is cut short", file)
    try:
        return ds, ds.pixel_array
    except Exception as err:
        reason = _one_line(err)
        if "less than expected" in reason or "truncated" in reason.lower():
            raise ScanReadError(f"is truncated: {reason}", file) from err
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        syntax = ts.name if ts else "unknown transfer syntax"
        raise ScanReadError(f"pixel data ({syntax}) cannot be decoded: {reason}", file) from err


def _fields(path: Path, headers: Sequence[_Header], notes: list[str]) -> dict:
    """The Volume's non-geometry fields and meta from the first header."""
    ds = headers[0].ds
    dicom_modality = str(ds.get("Modality", "") or "")
    modality = dicom_modality if dicom_modality in MODALITIES else None
    sex = str(ds.get("PatientSex", "") or "").upper()
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    info: dict = {
        "series_uid": str(ds.get("SeriesInstanceUID", "") or ""),
        "series_description": str(ds.get("SeriesDescription", "") or ""),
        "series_number": _int(ds.get("SeriesNumber")),
        "transfer_syntax": ts.name if ts else "unknown (no file meta)",
        "manufacturer": str(ds.get("Manufacturer", "") or ""),
        "sop_class": checks.sop_class_name(ds),
        "files": len(headers),
        "dicom_modality": dicom_modality,
    }
    if modality is None:
        info["modality_note"] = f"DICOM Modality is {dicom_modality or 'empty'}, neither CT nor MR"
    thickness = _slice_thickness_mm(ds)
    if thickness is not None:  # the acquired thickness, which the spacing need not be
        info["slice_thickness_mm"] = thickness
    if "DoseGridScaling" in ds:
        info["units"] = str(ds.get("DoseUnits", "GY")).replace("GY", "Gy")
    if notes:
        info["geometry_note"] = "; ".join(dict.fromkeys(notes))
    return {
        "modality": modality,
        "modality_source": "dicom" if modality else "unknown",
        "sex": sex if sex in SEXES else None,
        "patient_id": str(ds.get("PatientID", "") or "") or None,
        "source": str(path),
        "meta": info,
    }


# -- small helpers ---------------------------------------------------------------------


def _floats(value: object, n: int) -> tuple[float, ...] | None:
    """``n`` floats from a DICOM value (DS, FD, multi-valued or single), else ``None``."""
    if value is None or value == "":
        return None
    try:
        single = isinstance(value, str | bytes | int | float)
        items = [value] if single else list(value)  # type: ignore[call-overload]
        floats = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None
    return floats if len(floats) == n and all(np.isfinite(floats)) else None


def _array(ds: Dataset | None, keyword: str, n: int) -> np.ndarray | None:
    values = _floats(ds.get(keyword), n) if ds is not None else None
    return None if values is None else np.asarray(values, dtype=np.float64)


def _int(value: object) -> int | None:
    try:
        return int(value) if value not in (None, "") else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _one_line(err: BaseException) -> str:
    """An exception's message on one line, without a trailing full stop."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text.rstrip(".")
