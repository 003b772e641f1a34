"""The report folder's text: CSV tables (csv module) and report.md.

report.md has a short header (model, data, sizes, mode, date, software), what cannot be
compared with the paper, then one section per experiment with an "ours | paper" table
and its figure. Numbers are written with 4 significant digits (CSVs keep full precision).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medstyle_gui.core.evaluate.curvature import CurvatureResult
from medstyle_gui.core.evaluate.mixing import LAYERS, PAPER, MixingResult
from medstyle_gui.core.evaluate.modality import PAPER_BEST, ModalityResult
from medstyle_gui.core.evaluate.slice_walk import SliceWalkResult


def write_csv(
    path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str] | None = None
) -> Path:
    """Rows (dicts) as a CSV with a header (``fields``, else the rows' keys in order of
    appearance); floats in full precision, NaN as an empty cell."""
    fields = list(fields or [])
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return path


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def fmt(v: Any, digits: int = 4) -> str:
    """A number for a Markdown table (4 significant digits; blank for missing)."""
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return str(v).replace("|", "\\|")  # a bare | would end the table cell


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def header_section(info: dict[str, Any]) -> str:
    """Title, the run's facts and what is not comparable with the paper."""
    facts = table(["", ""], [(k, v) for k, v in info["facts"].items()])
    notes = "\n".join(f"- {n}" for n in info["not_comparable"]) or "- nothing noted"
    return (
        f"# Evaluation of {info['model']}: Fetty et al. 2020's experiments\n\n"
        f"{facts}\n\n## Not comparable with the paper\n\n{notes}\n"
    )


def modality_section(result: ModalityResult, figure: str) -> str:
    rows = []
    for translation in ("MR->CT", "CT->MR"):
        best = result.best(translation)
        if best is None:
            rows.append((translation, "-", "-", "-", "-", "-", 0, PAPER_BEST[translation]))
            continue
        ci = f"{fmt(best['ci_low'])} - {fmt(best['ci_high'])}"
        rows.append(
            (
                translation,
                best["unit"],
                best["alpha"],
                best["distance"],
                best["mean"],
                ci,
                best["n"],
                PAPER_BEST[translation],
            )
        )
    head = ["translation", "error", "best alpha", "signed distance reached", "ours: least mean"]
    head += ["95 % CI", "n", "paper"]
    return (
        "## Modality by manipulation (Fig. 3)\n\n"
        f"Paired slices moved along the {result.direction!r} direction ({result.kind}) toward "
        f"the other modality with eq. 3 (tau 1), alpha in {fmt(float(result.alphas[0]))}.."
        f"{fmt(float(result.alphas[-1]))} normal units ({len(result.alphas)} steps, log "
        "scale), scored against the paired slice of the other modality. All alphas: "
        "`modality.csv`.\n\n"
        f"{table(head, rows)}\n\n![modality]({figure})\n"
    )


def slice_section(result: SliceWalkResult, figures: Sequence[str]) -> str:
    rows = []
    for s in result.summary_rows:
        rows.append(
            (
                s["modality"],
                s["volumes"],
                s["units_per_slice_used"],
                s["units_per_slice_measured"],
                s["units_per_slice_factor_fit"],
                s["paper_units_per_slice"],
                s["reconstruction_error"],
                f"{fmt(s['threshold'])} {s['unit']}",
                s["max_distance_cm_below_threshold"],
                s["paper_distance_cm"],
            )
        )
    head = ["modality", "volumes", "units/slice used", "measured (signed distance slope)"]
    head += ["fitted (factor sweep)", "paper", "error at distance 0", "threshold"]
    head += ["ours: cm below threshold", "paper: cm"]
    reach = float(result.factors[-1])
    note = ""
    if result.widened:
        note = (
            f" The factor range was widened to +-{fmt(reach)} so that it reaches the outer "
            f"sought slices at {fmt(result.units_per_slice)} units per slice."
        )
    step = float(result.factors[1] - result.factors[0])
    if step > abs(result.units_per_slice):
        note += (
            f" The factor step ({fmt(step)}) is wider than one slice "
            f"({fmt(abs(result.units_per_slice))} units), so the best factors, and the units "
            "per slice fitted to them, are coarse."
        )
    pics = "\n\n".join(f"![slice walk]({f})" for f in figures)
    return (
        "## Slice position by manipulation (Fig. 4)\n\n"
        f"The central {result.k} slices of each volume; main slice i moved by (j - i) x "
        f"{fmt(result.units_per_slice)} normal units ({result.calibration_source}) and "
        "compared with slice j (`slice_matrix.csv`, `slice_distance.csv`); the centre "
        f"slice moved by {len(result.factors)} factors in +-{fmt(reach)} and compared with "
        f"every sought slice (`slice_factors.csv`, `slice_best_factors.csv`).{note} "
        "'Measured' is the mean over volumes of the slope of the signed distance against "
        "the slice index; 'fitted' the slope of the best factor against the offset.\n\n"
        f"{table(head, rows)}\n\n{pics}\n"
    )


def mixing_section(result: MixingResult, figure: str) -> str:
    blocks = []
    for translation in ("MR->CT", "CT->MR"):
        rows = []
        names = list(result.layers) + [n for n in LAYERS if n not in result.layers]
        for name in names:
            cells: list[Any] = [name]
            for mode in ("from", "only"):
                try:
                    r = result.row(translation, mode, name)
                    cells += [r["mean"], f"{fmt(r['ci_low'])} - {fmt(r['ci_high'])}"]
                except KeyError:
                    cells += ["-", "-"]
            cells.append(PAPER[translation].get(name, ""))
            rows.append(cells)
        none = [r for r in result.rows if r["direction"] == translation and r["mode"] == "none"]
        n = none[0]["n"] if none else 0
        base = f" No injection (the source itself): {fmt(none[0]['mean'])}." if none else ""
        head = ["layer", "from: mean", "from: 95 % CI", "only: mean", "only: 95 % CI"]
        head.append("paper (from)")
        unit = none[0]["unit"] if none else ""
        blocks.append(f"### {translation} ({unit}, n = {n}){base}\n\n{table(head, rows)}")
    return (
        "## Modality by style transfer, per injection layer (the paper's table, Fig. 5)\n\n"
        "The paired slice's w injected into the source's styles, scored against the paired "
        "slice. *from*: the target's w drives the named layer and every finer one (a "
        "crossover point, as in StyleGAN's style mixing; from 4x4 the image is the "
        "target's own reconstruction). *only*: the target's w drives the named layer "
        "alone. The paper does not say which it did; its numbers are set beside *from*. "
        "Layers the model does not have are '-'.\n\n"
        + "\n\n".join(blocks)
        + f"\n\n![mixing]({figure})\n"
    )


def curvature_section(result: CurvatureResult, figure: str | None) -> str:
    rows = [
        (
            r["direction"],
            r["selected"],
            r["surface"],
            r["points"],
            r["tangents"],
            r["mean"],
            r["std"],
            r["p"],
            r["paper_mean"],
            r["paper_std"],
            f"< {fmt(r['paper_p'])}" if r["paper_p"] != "" else "",
            r["note"],
        )
        for r in result.rows
    ]
    head = ["direction", "selected", "surface", "points", "tangents", "ours: mean", "sd"]
    head += ["p (normality)", "paper: mean", "sd", "p", "note"]
    pic = f"\n\n![curvature]({figure})" if figure else ""
    return (
        "## Curvature of the decision surfaces\n\n"
        f"Mean curvature at random points of each dense prediction net's decision surface "
        f"(points found between {result.samples} embedded slices), the D'Agostino-Pearson "
        "test of normality on them (`curvature.csv`).\n\n"
        f"{table(head, rows)}{pic}\n"
    )
