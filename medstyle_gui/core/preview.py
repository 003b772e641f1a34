"""A PNG of a volume's three orthogonal views (axial, coronal, sagittal) in mm scale.

The coronal and sagittal reformats show at a glance whether consecutive slices of a
generated volume fit together: a smooth anatomy from bottom to top, or a stack of
unrelated slices.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from trainer.data.volume import Volume
from trainer.files import atomic_file

#: Display windows (centre, width) per modality: soft tissue for CT, robust range for MR.
CT_WINDOW = (40.0, 400.0)


def _window(volume: Volume) -> tuple[float, float]:
    if volume.modality == "CT":
        c, w = CT_WINDOW
        return c - w / 2, c + w / 2
    lo, hi = np.percentile(volume.array, [1, 99.5])
    return float(lo), float(hi)


def write_preview(
    volume: Volume, path: str | PathLike[str], *, title: str | None = None, overwrite: bool = False
) -> Path:
    """Draw the middle axial slice and the middle coronal and sagittal reformats of
    ``volume`` ([z, y, x], LPS: row 0 anterior, column 0 the patient's right) with true
    aspect ratios from ``spacing_mm``, and write them as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = volume.array
    nz, ny, nx = a.shape
    sz, sy, sx = volume.spacing_mm
    lo, hi = _window(volume)
    views = [
        ("axial (middle slice)", a[nz // 2], sy / sx),
        ("coronal (superior up)", a[:, ny // 2, :][::-1], sz / sx),
        ("sagittal (superior up, anterior left)", a[:, :, nx // 2][::-1], sz / sy),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6), facecolor="black")
    for ax, (name, image, aspect) in zip(axes, views, strict=True):
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        ax.set_title(name, color="white", fontsize=10)
        ax.axis("off")
    fig.suptitle(
        title
        or f"{volume.modality or ''} {volume.source}: {nz} x {ny} x {nx}, "
        f"{sz:.2g} x {sy:.2g} x {sx:.2g} mm",
        color="white",
        fontsize=11,
    )
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=110, facecolor="black")
    plt.close(fig)
    return path
