"""A montage PNG of a phantom cohort: a few axial slices per patient, CT over MR,
women and men, inferior to superior, for a quick look at what the phantom draws.

CT is shown at a soft-tissue window (level 40, width 400 HU); MR from 0 to 1.3 times
the 85th percentile of the body's signal, so that fat is light grey and fluid white,
as a T2 TSE is usually windowed.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.data.volume import Volume
from trainer.errors import ConfigError, DatasetError
from trainer.files import atomic_file, ensure_can_write_png

CT_WINDOW = (40.0, 400.0)  # level, width (HU)
LEVELS = (0.06, 0.3, 0.5, 0.7, 0.94)  # normalised slice positions shown


def _studies(cohort: Path) -> list[Path]:
    folders = sorted(p.parent for p in cohort.glob("*/study.json"))
    if not folders:
        raise DatasetError("holds no phantom studies (no */study.json)", cohort)
    return folders


def pick_studies(cohort: Path, per_sex: int = 2) -> list[Path]:
    """The first ``per_sex`` women and men of the cohort (fewer if it has fewer)."""
    chosen: dict[str, list[Path]] = {"F": [], "M": []}
    for folder in _studies(cohort):
        sex = json.loads((folder / "study.json").read_text(encoding="utf-8")).get("sex")
        if sex in chosen and len(chosen[sex]) < per_sex:
            chosen[sex].append(folder)
    return chosen["F"] + chosen["M"]


def _load(folder: Path) -> tuple[dict, Volume, Volume]:
    from trainer.data.read import read_volume

    manifest = json.loads((folder / "study.json").read_text(encoding="utf-8"))
    ct = read_volume(folder / manifest["ct"], modality="CT")
    mr = read_volume(folder / manifest["mr"], modality="MR")
    return manifest, ct, mr


def render_montage(
    cohort: str | os.PathLike[str],
    png: str | os.PathLike[str],
    *,
    per_sex: int = 2,
    levels: Sequence[float] = LEVELS,
    overwrite: bool = False,
    dpi: int = 100,
) -> Path:
    """Draw the montage of ``cohort`` (a folder written by ``medstyle phantom``) into
    ``png``: one CT row and one MR row per chosen patient, one column per level.

    Raises:
        ConfigError: ``per_sex`` is below 1.
        DatasetError: the folder holds no phantom studies.
        ScanWriteError: ``png`` exists and ``overwrite`` is false, or its folder cannot
            be written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cohort, png = Path(cohort), Path(png)
    if per_sex < 1:
        raise ConfigError(f"--per-sex {per_sex}: show at least one patient of each sex")
    ensure_can_write_png(png, overwrite)  # before reading and drawing the cohort
    folders = pick_studies(cohort, per_sex)
    rows = 2 * len(folders)
    panel_in = 2.56
    fig = Figure(figsize=(panel_in * len(levels), panel_in * rows + 0.4), dpi=dpi)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        rows,
        len(levels),
        left=0.02,
        right=0.98,
        bottom=0.005,
        top=1 - 0.5 / (panel_in * rows + 0.4),
        wspace=0.02,
        hspace=0.08,
    )
    level_hu, width_hu = CT_WINDOW
    for i, folder in enumerate(folders):
        manifest, ct, mr = _load(folder)
        body = mr.array[mr.array > 0.1 * float(np.percentile(mr.array, 99.5))]
        mr_max = 1.3 * float(np.percentile(body, 85))
        for j, level in enumerate(levels):
            k = round(level * (ct.num_slices - 1))
            for r, (vol, lo, hi) in enumerate(
                ((ct, level_hu - width_hu / 2, level_hu + width_hu / 2), (mr, 0.0, mr_max))
            ):
                ax = fig.add_subplot(grid[2 * i + r, j])
                ax.imshow(vol.array[k], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                name = "CT W400/L40" if r == 0 else "T2 MR"
                who = f"{manifest['patient_id']} {manifest['sex']} {name}"
                ax.set_title(
                    f"{who}  z={vol.slice_positions_mm[k]:.0f} mm ({level:.2f})",
                    fontsize=6.5,
                    pad=2,
                )
    fig.suptitle(
        "medstyle pelvic phantom (synthetic, not patients): axial slices, inferior to superior",
        fontsize=9,
        y=1 - 0.1 / (panel_in * rows + 0.4),
    )
    with atomic_file(png, overwrite=overwrite) as tmp:
        # Grey levels only: a one-channel PNG is a quarter of matplotlib's RGBA one.
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        buffer.seek(0)
        Image.open(buffer).convert("L").save(tmp, format="PNG", optimize=True)
    return png
