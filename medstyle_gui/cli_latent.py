"""``medstyle`` subcommands of the latent space: train encoder, embed, directions,
evaluate, generate, and the embed / render benchmarks.

Kept apart from ``cli.py`` (scans, datasets, GAN training) so each file stays short;
``cli.build_parser`` registers these with :func:`add_latent_commands`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from medstyle_gui.core.model import Model

EXPERIMENTS = ("modality", "slice", "mixing", "curvature", "all")


def _load(args: argparse.Namespace):
    from medstyle_gui.core.model import load_model

    return load_model(args.model, device=args.device)


def _check_refine_flags(args: argparse.Namespace) -> None:
    """``--refine-lr``, ``--refine-steps`` and ``--batch``, checked before anything slow
    starts."""
    from medstyle_gui.core.embed import MAX_REFINE_STEPS

    lr, steps, batch = args.refine_lr, args.refine_steps, getattr(args, "batch", None)
    if lr is not None and not lr > 0:
        raise ConfigError(f"--refine-lr {lr:g}: the learning rate must be more than 0")
    if steps is not None and not 0 <= steps <= MAX_REFINE_STEPS:
        raise ConfigError(f"--refine-steps {steps}: must be from 0 to {MAX_REFINE_STEPS}")
    if batch is not None and batch < 1:
        raise ConfigError(f"--batch {batch}: refine at least one slice at a time")


def _progress_bar(total: int, unit: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=quiet, file=sys.stderr, dynamic_ncols=True)


# -- handlers ---------------------------------------------------------------------------


def _cmd_train_encoder(args: argparse.Namespace) -> int:
    from trainer.train_cli import run_train_encoder

    return run_train_encoder(args)


def _cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from medstyle_gui.core.embed import EmbedProgress, embed_images
    from medstyle_gui.core.latents import load_slices, parse_rows, write_latents
    from trainer.files import ensure_can_write

    ensure_can_write(args.out, args.overwrite)  # fail before the slow part
    _check_refine_flags(args)
    model = _load(args)
    steps, lr = _refinement(args, model)
    slices = load_slices(model, args.scan, series_uid=args.series, modality=args.modality)
    slices = slices.subset(parse_rows(args.slices, len(slices.images)))
    n = len(slices.images)
    bar = _progress_bar(n * (steps + 1), "step", args.quiet)

    def progress(p: EmbedProgress) -> None:
        bar.update(p.batch_slices)
        bar.set_postfix_str(
            f"slices {p.slices_done}-{p.slices_done + p.batch_slices}/{n} loss {p.loss:.3g}",
            refresh=False,
        )

    start = time.perf_counter()
    try:
        result = embed_images(
            model,
            slices.images,
            slices.modalities,
            steps=steps,
            batch=args.batch,
            lr=lr,
            progress=progress,
            bf16=args.bf16,
        )
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    write_latents(args.out, model, slices, result, overwrite=args.overwrite)
    print(
        f"embedded {n} slices of {slices.source} in {seconds:.1f} s "
        f"({n / seconds:.2f} slices/s, {steps} refinement steps at lr {lr:g})"
    )
    modalities = np.array(slices.modalities)
    for modality, measure in (("CT", "MAE HU"), ("MR", "RMSE")):
        rows = modalities == modality
        if rows.any():
            body_enc, body_ref = result.error_encoder_body[rows], result.error_refined_body[rows]
            inside = (  # a slice without a body has no body error (NaN)
                f"inside the body {np.nanmedian(body_enc):.3g} -> {np.nanmedian(body_ref):.3g}"
                if np.isfinite(body_enc).any()
                else "no slice shows a body"
            )
            print(
                f"  {modality} ({rows.sum()} slices) median {measure}: encoder "
                f"{np.median(result.error_encoder[rows]):.3g} -> refined "
                f"{np.median(result.error_refined[rows]):.3g}; {inside}"
            )
    _say_misread(model, result.w, slices.modalities)
    print(f"wrote {args.out}")
    return 0


def _say_misread(model: Model, ws: np.ndarray, modalities: list[str]) -> None:
    """One line when the model's modality direction reads refined latents ``ws [N, w_dim]``
    as the other modality than their slices (a scan unlike the training data)."""
    from medstyle_gui.core.explore import misread_rows

    wrong = misread_rows(model, ws, modalities)
    if wrong.any():
        kinds = " and ".join(sorted({m for m, w in zip(modalities, wrong, strict=True) if w}))
        print(
            f"  note: the model's modality direction reads {int(wrong.sum())} of "
            f"{len(wrong)} {kinds} slices as the other modality: the scan may lie outside "
            "what the model learned, and its directions may not carry over to it"
        )


def _cmd_session(args: argparse.Namespace) -> int:
    import numpy as np

    from medstyle_gui.core.session_build import build_session
    from trainer.files import ensure_can_write

    ensure_can_write(args.out, args.overwrite)  # fail before loading anything
    _check_refine_flags(args)
    model = _load(args)
    steps, lr = _refinement(args, model)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = _progress_bar(total, "slice", args.quiet)
        bar.update(done - bar.n)

    start = time.perf_counter()
    try:
        out, state = build_session(
            model,
            args.scans,
            args.out,
            steps=steps,
            lr=lr,
            batch=args.batch,
            progress=progress,
            overwrite=args.overwrite,
            bf16=args.bf16,
        )
    finally:
        if bar is not None:
            bar.close()
    n = len(state.latents) + len(state.paired_latents)
    seconds = time.perf_counter() - start
    print(f"embedded {n} slices in {seconds:.1f} s ({steps} steps at lr {lr:g})")
    errors = [e["refined"] for e in state.embed_errors.values()]
    if errors and state.source is not None:
        measure = "MAE HU" if state.source.modality == "CT" else "RMSE"
        print(f"  {state.source.modality} median refined {measure}: {np.median(errors):.3g}")
    print(f"wrote {out} (open it with 'medstyle gui {out}')")
    return 0


def _cmd_directions_fit(args: argparse.Namespace) -> int:
    from medstyle_gui.core.embed import REFINE_LR, REFINE_STEPS
    from medstyle_gui.core.latents import check_latents_model, read_latents
    from trainer.bundle import MANIFEST
    from trainer.directions import fit_directions, load_directions, save_directions
    from trainer.files import ensure_can_write

    model = _load(args)
    # the directions go into the bundle: a read-only one (an installed demo) fails here,
    # not after the fitting
    ensure_can_write(Path(args.model) / MANIFEST, overwrite=True)
    latents = read_latents(args.latents)
    check_latents_model(latents, model, args.latents)
    if load_directions(args.model) and not args.overwrite:
        raise ConfigError(
            f"{args.model}: the bundle already has directions (add --overwrite to replace them)"
        )
    directions = fit_directions(
        args.latents, extra_labels_csv=args.labels, trials=args.trials, seed=args.seed
    )
    embedding = {
        "refine_steps": int(latents.attrs.get("refine_steps", REFINE_STEPS)),
        "refine_lr": float(latents.attrs.get("refine_lr", REFINE_LR)),  # older files: the paper's
        "latents": Path(args.latents).name,
        "slices": len(latents.w),
    }
    save_directions(args.model, directions, overwrite=args.overwrite, embedding=embedding)
    print(_format_directions(directions))
    print(
        f"saved {len(directions)} directions in {args.model} (fitted on latents refined "
        f"{embedding['refine_steps']} steps at lr {embedding['refine_lr']:g}: embedding "
        "defaults to the same)"
    )
    return 0


def _format_directions(directions) -> str:
    lines = [
        f"{'direction':<18} {'classes':<20} {'chosen':<9} {'logistic':>8} {'dense':>7} "
        f"{'R2':>6}  calibration"
    ]
    for name, d in directions.items():
        m = d.metrics
        cal = d.calibration or {}
        cal_text = (
            f"{cal['units_per_slice']:.4g} units/slice, {cal['units_per_mm']:.4g} units/mm"
            if cal.get("units_per_slice")
            else ""
        )

        def num(key: str, m: dict = m) -> str:
            value = m.get(key)
            return f"{value:.3f}" if isinstance(value, int | float) else "-"

        lines.append(
            f"{name:<18} {' / '.join(d.classes):<20} {d.kind:<9} "
            f"{num('logistic_accuracy'):>8} {num('dense_accuracy'):>7} "
            f"{num('reverse_r2'):>6}  {cal_text}"
        )
    return "\n".join(lines)


def _cmd_directions_score(args: argparse.Namespace) -> int:
    from medstyle_gui.core.latents import check_latents_model, read_latents
    from trainer.directions import score_directions

    model = _load(args)
    check_latents_model(read_latents(args.latents), model, args.latents)
    if not model.directions:
        raise ConfigError(f"{args.model}: no directions to score (fit them first)")
    scores = score_directions(model.directions, args.latents, extra_labels_csv=args.labels)
    if not scores:
        raise ConfigError(f"{args.latents}: no labelled slices for any of the bundle's directions")
    if args.json:
        print(json.dumps(scores, indent=2))
        return 0
    print(f"{'direction':<18} {'kind':<9} {'accuracy':>8} {'slices':>7}  per class")
    for name, s in scores.items():
        per_class = ", ".join(f"{c} {a:.3f}" for c, a in s["per_class"].items())
        print(f"{name:<18} {s['kind']:<9} {s['accuracy']:>8.3f} {s['n']:>7}  {per_class}")
    return 0


def _cmd_directions_list(args: argparse.Namespace) -> int:
    from trainer.directions import load_directions

    directions = load_directions(args.model)
    if not directions:
        print(f"{args.model}: no directions (fit them with 'medstyle directions fit')")
        return 0
    print(_format_directions(directions))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from medstyle_gui.core.evaluate import SIZES, evaluate

    if args.quick and args.sizes not in (None, "quick"):
        raise ConfigError(f"--quick and --sizes {args.sizes} contradict each other")
    sizes = SIZES["quick" if args.quick else args.sizes or "full"]
    if args.data is None and args.latents is None:
        raise ConfigError("give --data DATA.h5|PHANTOM_DIR or --latents LATENTS.h5")
    _check_refine_flags(args)
    model = _load(args)
    experiments = list(EXPERIMENTS[:-1]) if args.experiment == "all" else [args.experiment]

    def progress(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    out = evaluate(
        model,
        experiments,
        data=args.data,
        latents=args.latents,
        out=args.out,
        quick=sizes.name == "quick",
        settings=sizes,
        bf16=args.bf16,
        seed=args.seed,
        refine_steps=args.refine_steps,
        refine_lr=args.refine_lr,
        progress=progress,
        overwrite=args.overwrite,
    )
    print(f"wrote {out / 'report.md'}")
    return 0


def _parse_from(text: str) -> tuple[Path, int]:
    path, sep, row = text.rpartition(":")
    if not sep or not path:
        raise ConfigError(f"--from {text!r}: use LATENTS.h5:ROW")
    try:
        return Path(path), int(row)
    except ValueError:
        raise ConfigError(f"--from {text!r}: ROW must be a whole number") from None


def _cmd_generate(args: argparse.Namespace) -> int:
    from medstyle_gui.core.generate import GenerateRequest, generate_volume
    from medstyle_gui.core.latents import check_latents_model, read_latents
    from trainer.data.write import format_from_path, write_volume
    from trainer.files import ensure_can_write, ensure_can_write_png

    if (args.seed is None) == (args.from_latent is None):
        raise ConfigError("give one of --seed S or --from LATENTS.h5:ROW")
    fmt = format_from_path(args.out)
    ensure_can_write(args.out, args.overwrite)
    if args.preview:
        ensure_can_write_png(args.preview, args.overwrite)
    model = _load(args)
    start_w, label = None, ""
    if args.from_latent:
        path, row = _parse_from(args.from_latent)
        latents = read_latents(path)
        check_latents_model(latents, model, path)
        if not -len(latents) <= row < len(latents):
            raise ConfigError(f"{path}: has {len(latents)} rows; row {row} does not exist")
        start_w, label = latents.w[row], f"{path.name}:{row % len(latents)}"
    request = GenerateRequest(
        slices=args.slices,
        seed=args.seed,
        start_w=start_w,
        start_label=label,
        modality=args.modality,
        sex=args.sex,
        truncation_psi=args.truncation,
    )
    bar = _progress_bar(args.slices, "slice", args.quiet)
    try:
        made = generate_volume(
            model,
            request,
            pixel_mm=args.pixel_mm,
            progress=lambda done, total: bar.update(done - bar.n),
        )
    finally:
        bar.close()
    out = write_volume(
        made.volume, args.out, fmt=fmt, overwrite=args.overwrite, provenance=made.provenance
    )
    v = made.volume
    print(
        f"wrote {out}: synthetic {v.modality}, {v.shape[0]} slices of {v.shape[1]} x "
        f"{v.shape[2]}, spacing {v.spacing_mm[0]:.3g} x {v.spacing_mm[1]:.3g} x "
        f"{v.spacing_mm[2]:.3g} mm"
    )
    if args.preview:
        from medstyle_gui.core.preview import write_preview

        print(f"wrote {write_preview(v, args.preview, overwrite=args.overwrite)}")
    return 0


def _cmd_bench_embed(args: argparse.Namespace) -> int:
    from medstyle_gui.core.bench_embed import bench_embed, format_bench_embed

    precisions = ("float32",) if args.precision == "float32" else ("float32", "bf16")
    rows = bench_embed(_load(args), batches=args.batches, steps=args.steps, precisions=precisions)
    print(json.dumps(rows, indent=2) if args.json else format_bench_embed(rows))
    return 0


def _cmd_bench_render(args: argparse.Namespace) -> int:
    from medstyle_gui.core.bench_render import bench_render, format_bench_render

    row = bench_render(_load(args), repeats=args.repeats)
    print(json.dumps(row, indent=2) if args.json else format_bench_render(row))
    return 0


# -- parsers ----------------------------------------------------------------------------


def _model_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", type=Path, required=required, help="model bundle folder")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")


def _refine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--refine-steps",
        type=int,
        metavar="N",
        help="refinement steps (default: those the model's directions were fitted with, "
        "else the paper's 350)",
    )
    _refine_lr_option(p, "those the model's directions were fitted with, else the paper's")


def _refine_lr_option(p: argparse.ArgumentParser, default: str = "the paper's") -> None:
    p.add_argument(
        "--refine-lr",
        type=float,
        metavar="LR",
        help=f"refinement learning rate (default: {default} 0.001; 0.03 with 500 steps runs "
        "the refinement to convergence: lower errors, further from the encoder's guess)",
    )


def _refinement(args: argparse.Namespace, model) -> tuple[int, float]:
    """``(steps, lr)``: the flags where given, else the model's defaults."""
    from medstyle_gui.core.embed import refinement_settings

    steps, lr = refinement_settings(model)
    if args.refine_steps is not None:
        steps = args.refine_steps
    return steps, lr if args.refine_lr is None else args.refine_lr


def add_latent_commands(sub, parser_class) -> None:
    """Register embed, directions, evaluate and generate on ``medstyle``'s subparsers."""
    p = sub.add_parser("embed", help="embed a scan or a slice dataset into W (LATENTS.h5)")
    p.add_argument("scan", type=Path, help="DICOM folder or file, NIfTI, MHA, NRRD, or DATA.h5")
    _model_options(p)
    p.add_argument("--out", type=Path, required=True, help="LATENTS.h5 to write")
    _refine_options(p)
    p.add_argument("--batch", type=int, default=16, help="slices refined together (16)")
    p.add_argument("--slices", metavar="A:B", help="only these rows: a:b, a:b:step or i,j,k")
    p.add_argument(
        "--series", metavar="UID|N", help="which DICOM series of a folder: UID, or N as listed [N]"
    )
    p.add_argument(  # ct or CT, as users type it
        "--modality",
        type=str.upper,
        choices=("CT", "MR"),
        help="modality of a NIfTI/MHA/NRRD scan",
    )
    p.add_argument(
        "--bf16", action="store_true", help="refine in bfloat16 (faster on CPUs/GPUs with bf16)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser(
        "session", help="embed a scan or paired study; save a session the explorer opens ready"
    )
    p.add_argument(
        "scans", nargs="+", type=Path, help="a scan, a paired study folder, or a CT and an MR"
    )
    _model_options(p)
    p.add_argument("--out", type=Path, required=True, help="SESSION.medstyle to write")
    _refine_options(p)
    p.add_argument("--batch", type=int, default=16, help="slices refined together (16)")
    p.add_argument(
        "--bf16", action="store_true", help="refine in bfloat16 (faster on CPUs/GPUs with bf16)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_session)

    p = sub.add_parser("directions", help="fit or list the latent directions of a bundle")
    dsub = p.add_subparsers(
        dest="directions_command", metavar="ACTION", required=True, parser_class=parser_class
    )
    f = dsub.add_parser("fit", help="fit modality, sex, slice (and CSV labels) directions")
    _model_options(f)
    f.add_argument("--latents", type=Path, required=True, help="LATENTS.h5 from 'medstyle embed'")
    f.add_argument("--labels", type=Path, help="CSV: a 'row' column, then 0/1 label columns")
    f.add_argument("--trials", type=int, default=20, help="random-search trials per model (20)")
    f.add_argument("--seed", type=int, default=0, help="random seed (0)")
    f.add_argument("--overwrite", action="store_true", help="replace the bundle's directions")
    f.set_defaults(func=_cmd_directions_fit)
    sc = dsub.add_parser("score", help="accuracy of the bundle's directions on other latents")
    _model_options(sc)
    sc.add_argument(
        "--latents", type=Path, required=True, help="LATENTS.h5 of other (held-out) slices"
    )
    sc.add_argument("--labels", type=Path, help="CSV: a 'row' column, then 0/1 label columns")
    sc.add_argument("--json", action="store_true", help="print JSON")
    sc.set_defaults(func=_cmd_directions_score)
    ls = dsub.add_parser("list", help="the bundle's directions and their accuracies")
    _model_options(ls)
    ls.set_defaults(func=_cmd_directions_list)

    p = sub.add_parser("evaluate", help="re-run the paper's experiments: report.md, CSV, PNG")
    p.add_argument("experiment", choices=EXPERIMENTS, help="one experiment, or all four")
    _model_options(p)
    p.add_argument(
        "--data",
        type=Path,
        help="DATA.h5 at the model's size, or a phantom folder (default with --latents: "
        "the dataset they were embedded from, if it is still there)",
    )
    p.add_argument("--latents", type=Path, help="embedded slices to use (skips embedding)")
    p.add_argument("--out", type=Path, required=True, help="report folder to create")
    p.add_argument("--quick", action="store_true", help="= --sizes quick (a smoke check)")
    # the numbers of medstyle_gui.core.evaluate.run's FULL, MEDIUM and QUICK (a test keeps
    # them equal; importing that module here would slow every 'medstyle --help')
    p.add_argument(
        "--sizes",
        choices=("quick", "medium", "full"),
        help="full (default; the paper's sizes: 1000 slices, 31 alphas, every volume x 51 "
        "central slices, 1000 points x 512 tangents), medium (100 slices, 31 alphas, 6 "
        "volumes x 31 central slices, 100 points x 64 tangents: tens of minutes on a CPU) "
        "or quick (12 slices, 7 alphas, 2 volumes x 9 central slices, 16 points x 16 "
        "tangents: a smoke check)",
    )
    p.add_argument("--seed", type=int, default=0, help="which slices are drawn (0)")
    p.add_argument(
        "--refine-steps",
        type=int,
        metavar="N",
        help="refinement steps when embedding here (default: 350, the paper's, with --sizes "
        "full; 100 with medium or quick)",
    )
    _refine_lr_option(p, "the rate the model's directions were fitted with, else the paper's")
    p.add_argument("--bf16", action="store_true", help="refine in bfloat16 when embedding")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("generate", help="a synthetic volume walked along the slice direction")
    _model_options(p)
    p.add_argument("--seed", type=int, help="start from a random latent with this seed")
    p.add_argument(
        "--from", dest="from_latent", metavar="LATENTS.h5:ROW", help="start from an embedded slice"
    )
    # ct or CT, f or F: as users type them
    p.add_argument(
        "--modality", type=str.upper, choices=("CT", "MR"), help="move the start to this modality"
    )
    p.add_argument("--sex", type=str.upper, choices=("F", "M"), help="move the start to this sex")
    p.add_argument("--slices", type=int, required=True, help="number of slices")
    p.add_argument("--truncation", type=float, default=0.7, help="psi of a random start (0.7)")
    p.add_argument("--pixel-mm", type=float, help="pixel size (default: the training data's)")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="OUT.nii.gz, OUT.mha, OUT.nrrd, OUT.h5 or a DICOM folder",
    )
    p.add_argument(
        "--preview", type=Path, metavar="PNG", help="also draw axial, coronal and sagittal views"
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_generate)


def add_train_encoder_command(tsub) -> None:
    """``medstyle train encoder``: the trainer's own options and runner."""
    from trainer.train_cli import add_train_encoder_arguments

    e = tsub.add_parser("encoder", help="the image -> w encoder of a model bundle")
    add_train_encoder_arguments(e)
    e.set_defaults(func=_cmd_train_encoder)


def add_latent_benchmarks(bsub) -> None:
    """``medstyle bench embed`` and ``medstyle bench render``."""
    b = bsub.add_parser("embed", help="refinement slices/s at batch 1 and 16")
    _model_options(b)
    b.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes (1 16)")
    b.add_argument("--steps", type=int, default=20, help="refinement steps timed (20)")
    b.add_argument(
        "--precision",
        choices=("float32", "both"),
        default="both",
        help="float32 only, or float32 and bf16 (default both)",
    )
    b.add_argument("--json", action="store_true", help="print JSON rows")
    b.set_defaults(func=_cmd_bench_embed)
    r = bsub.add_parser("render", help="full render vs a style-mix re-render from 32x32")
    _model_options(r)
    r.add_argument("--repeats", type=int, default=30, help="timed renders per case (30)")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.set_defaults(func=_cmd_bench_render)
