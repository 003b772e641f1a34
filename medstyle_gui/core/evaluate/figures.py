"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no display, no Qt).

Each function draws one figure into a PNG of a fixed size (``SIZES`` at ``DPI``) and
returns its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medstyle_gui.core.evaluate.curvature import CurvatureResult
from medstyle_gui.core.evaluate.mixing import MixingResult
from medstyle_gui.core.evaluate.modality import PAPER_BEST, ModalityResult
from medstyle_gui.core.evaluate.slice_walk import THRESHOLD, SliceWalkResult

DPI = 100
#: Figure sizes in inches (pixels = inches x DPI).
SIZES = {
    "modality": (10.0, 4.0),
    "slice_walk": (10.0, 8.0),
    "slice_distance": (10.0, 4.0),
    "mixing": (10.0, 4.0),
    "curvature": (10.0, 4.0),
}
#: Panel order of the paper's Fig. 3: CT->MR on the left, MR->CT on the right.
TRANSLATIONS = ("CT->MR", "MR->CT")


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))
    return path


def _figure(name: str) -> Figure:
    return Figure(figsize=SIZES[name], dpi=DPI)


def modality_figure(result: ModalityResult, path: Path) -> Path:
    """Mean error against alpha with 95 % CI bars, per translation (Fig. 3's plots)."""
    fig = _figure("modality")
    for k, translation in enumerate(TRANSLATIONS):
        ax = fig.add_subplot(1, 2, k + 1)
        rows = [r for r in result.rows if r["direction"] == translation and r["n"] > 0]
        unit = "RMSE ([-1, 1])" if translation == "CT->MR" else "MAE (HU)"
        if rows:
            a = np.array([r["alpha"] for r in rows])
            m = np.array([r["mean"] for r in rows])
            err = np.array(
                [[r["mean"] - r["ci_low"] for r in rows], [r["ci_high"] - r["mean"] for r in rows]]
            )
            ax.errorbar(a, m, yerr=err, fmt="o-", ms=3, capsize=2, label=f"ours (n={rows[0]['n']})")
        ax.axhline(PAPER_BEST[translation], ls="--", c="k", lw=1, label="paper's least mean")
        ax.set_xscale("log")
        ax.set_xlabel("alpha (normal units toward the other modality)")
        ax.set_ylabel(unit)
        ax.set_title(f"{translation} by manipulation")
        ax.legend(fontsize=8)
    return _save(fig, path)


def slice_walk_figure(result: SliceWalkResult, path: Path) -> Path:
    """Per modality: the main x sought error matrix (left) and the factor sweep's error
    against factor for each sought slice, minima dotted (right): Fig. 4's layout."""
    fig = _figure("slice_walk")
    mods = [m for m in ("MR", "CT") if m in result.matrix] or ["MR"]
    half = result.k // 2
    rel = np.arange(result.k) - half
    for row, m in enumerate(mods):
        ax = fig.add_subplot(len(mods), 2, 2 * row + 1)
        ax2 = fig.add_subplot(len(mods), 2, 2 * row + 2)
        if m not in result.matrix:
            continue
        ext = (rel[0] - 0.5, rel[-1] + 0.5, rel[-1] + 0.5, rel[0] - 0.5)
        im = ax.imshow(result.matrix[m], cmap="viridis", extent=ext, aspect="auto")
        fig.colorbar(im, ax=ax, label="RMSE" if m == "MR" else "MAE (HU)")
        ax.set_xlabel("sought slice (relative to centre)")
        ax.set_ylabel("main slice (relative to centre)")
        ax.set_title(f"{m}: main slice moved to the sought slice")
        fac = result.factor_errors[m]
        colours = [(0.1, 0.3 + 0.6 * abs(r) / max(half, 1), 0.8) for r in rel]
        for j in range(result.k):
            ax2.plot(result.factors, fac[:, j], c=colours[j], lw=0.8)
        best = [
            (r["best_factor"], r["error_at_best"]) for r in result.factor_rows if r["modality"] == m
        ]
        if best:
            bx, by = zip(*best, strict=True)
            ax2.plot(bx, by, "k:", lw=1.2, label="minima")
            ax2.legend(fontsize=8)
        ax2.axhline(THRESHOLD[m], ls="--", c="grey", lw=0.8)
        ax2.set_xlabel("factor (normal units) applied to the centre slice")
        ax2.set_ylabel("RMSE" if m == "MR" else "MAE (HU)")
        ax2.set_title(f"{m}: centre slice against each sought slice")
    return _save(fig, path)


def slice_distance_figure(result: SliceWalkResult, path: Path) -> Path:
    """Mean error (95 % CI) against the signed distance moved, cm, per modality."""
    fig = _figure("slice_distance")
    for k, m in enumerate(("MR", "CT")):
        ax = fig.add_subplot(1, 2, k + 1)
        rows = [r for r in result.distance_rows if r["modality"] == m]
        if rows:
            x = np.array([r["distance_cm"] for r in rows])
            y = np.array([r["mean"] for r in rows])
            lo = y - np.array([r["ci_low"] for r in rows])
            hi = np.array([r["ci_high"] for r in rows]) - y
            ax.errorbar(x, y, yerr=[lo, hi], fmt="o-", ms=3, capsize=2)
        ax.axhline(THRESHOLD[m], ls="--", c="k", lw=1, label="paper's threshold")
        for s in (-4.0, 4.0):
            ax.axvline(s, ls=":", c="grey", lw=1)
        ax.set_xlabel("distance from the main slice (cm, + superior)")
        ax.set_ylabel("RMSE ([-1, 1])" if m == "MR" else "MAE (HU)")
        ax.set_title(f"{m}: error against distance moved")
        ax.legend(fontsize=8)
    return _save(fig, path)


def mixing_figure(result: MixingResult, path: Path) -> Path:
    """Mean error (95 % CI) per injection layer, both modes, with the paper's values."""
    fig = _figure("mixing")
    x = np.arange(len(result.layers))
    for k, translation in enumerate(TRANSLATIONS):
        ax = fig.add_subplot(1, 2, k + 1)
        for mode, style in (("from", "o-"), ("only", "s--")):
            rows = [
                r
                for r in result.rows
                if r["direction"] == translation and r["mode"] == mode and r["n"] > 0
            ]
            if rows:
                y = np.array([r["mean"] for r in rows])
                err = [y - [r["ci_low"] for r in rows], [r["ci_high"] for r in rows] - y]
                ax.errorbar(x[: len(rows)], y, yerr=err, fmt=style, ms=4, capsize=2, label=mode)
        paper = [
            r["paper"] for r in result.rows if r["direction"] == translation and r["mode"] == "from"
        ]
        if any(p != "" for p in paper):
            px = [i for i, p in enumerate(paper) if p != ""]
            ax.plot(px, [paper[i] for i in px], "k^", ms=5, label="paper")
        none = [r for r in result.rows if r["direction"] == translation and r["mode"] == "none"]
        if none and none[0]["n"] > 0:
            ax.axhline(none[0]["mean"], ls=":", c="grey", lw=1, label="no injection")
        ax.set_xticks(x, result.layers)
        ax.set_xlabel("injection layer")
        ax.set_ylabel("RMSE ([-1, 1])" if translation == "CT->MR" else "MAE (HU)")
        ax.set_title(f"{translation} by style transfer")
        ax.legend(fontsize=8)
    return _save(fig, path)


def curvature_figure(result: CurvatureResult, path: Path) -> Path:
    """Histogram of the mean curvature at the surface points, per measured direction."""
    fig = _figure("curvature")
    ax = fig.add_subplot(1, 1, 1)
    for name, v in result.values.items():
        ax.hist(v, bins=min(50, max(5, v.size // 5)), alpha=0.5, label=f"{name} (n={v.size})")
    if not result.values:
        ax.text(0.5, 0.5, "no dense decision surface measured", ha="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=8)
    ax.axvline(0.0, c="k", lw=0.8)
    ax.set_xlabel("mean curvature at a surface point (1 / W units)")
    ax.set_ylabel("points")
    ax.set_title("Curvature of the decision surfaces")
    return _save(fig, path)
