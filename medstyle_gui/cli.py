"""The ``medstyle`` command.

Subcommands call ``medstyle_gui.core`` and ``trainer`` only (never the GUI, except
``gui``). Every user error is one line on stderr naming the file and the problem,
and a non-zero exit; tracebacks are for bugs (and for ``--debug``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import trainer
from medstyle_gui.cli_gui import SERIES_HELP, add_gui_command, can_open_a_window
from medstyle_gui.cli_latent import (
    add_latent_benchmarks,
    add_latent_commands,
    add_train_encoder_command,
)
from trainer.errors import MedstyleError

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130


# -- subcommand handlers (imports are local so `medstyle --help` stays fast) -------------


def _cmd_info(args: argparse.Namespace) -> int:
    from medstyle_gui.core.scans import describe_scan

    facts = describe_scan(args.scan, series_uid=args.series, modality=args.modality)
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        width = max(len(k) for k in facts)
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from medstyle_gui.core.scans import convert_scan

    out = convert_scan(
        args.src,
        args.dst,
        fmt=args.format,
        overwrite=args.overwrite,
        series_uid=args.series,
        modality=args.modality,
    )
    print(f"wrote {out}")
    return 0


def _cmd_pair(args: argparse.Namespace) -> int:
    from medstyle_gui.core.pairing import pair_scans

    result = pair_scans(
        args.ct,
        args.mr,
        args.out,
        size=args.size,
        register=not args.no_register,
        n4=not args.no_n4,
        overwrite=args.overwrite,
        ct_series=args.ct_series,
        mr_series=args.mr_series,
        patient=args.patient,
        force=args.force,
    )
    registration = result.pair.registration
    if args.json:
        print(json.dumps(result.manifest, indent=2))
    else:
        print(f"wrote {result.folder} ({' x '.join(map(str, result.pair.mr.shape))} voxels, z y x)")
        if registration is not None:
            print(f"CT registered to MR: {registration.describe()}")
        print(f"pairing check: {result.pair.check.describe()}")
    return 0


def _cmd_dataset_build(args: argparse.Namespace) -> int:
    from trainer.data.dataset import build_dataset

    out = build_dataset(
        args.sources,
        args.out,
        size=args.size,
        overwrite=args.overwrite,
        register=not args.no_register,
        n4=not args.no_n4,
        progress=not args.quiet,
    )
    print(f"wrote {out}")
    return 0


def _cmd_dataset_info(args: argparse.Namespace) -> int:
    from trainer.data.dataset_info import dataset_info, format_dataset_info

    info = dataset_info(args.dataset)
    print(json.dumps(info, indent=2) if args.json else format_dataset_info(info))
    return 0


def _cmd_phantom(args: argparse.Namespace) -> int:
    from trainer.data.phantom import CohortOptions, render_montage, write_cohort

    options = CohortOptions(
        patients=args.patients,
        seed=args.seed,
        size=args.size,
        slices=args.slices,
        slice_mm=args.slice_mm,
        female_fraction=args.female_fraction,
        fmt=args.format,
        misalign_mm=args.misalign_mm,
    )
    if args.montage:  # checked before the cohort is drawn, not after
        from trainer.files import ensure_can_write_png

        inside = args.out_dir.resolve() in args.montage.resolve().parents  # made with it
        ensure_can_write_png(args.montage, args.overwrite, make_parents=inside)
    out = write_cohort(
        args.out_dir,
        options,
        overwrite=args.overwrite,
        workers=args.workers,
        progress=not args.quiet,
    )
    studies = "study" if options.patients == 1 else "studies"
    print(f"wrote {out} ({options.patients} phantom {studies})")
    if args.montage:
        print(f"wrote {render_montage(out, args.montage, overwrite=args.overwrite)}")
    return 0


def _cmd_phantom_montage(args: argparse.Namespace) -> int:
    from trainer.data.phantom import render_montage

    png = render_montage(args.cohort, args.png, per_sex=args.per_sex, overwrite=args.overwrite)
    print(f"wrote {png}")
    return 0


def _cmd_train_gan(args: argparse.Namespace) -> int:
    from trainer.train_cli import run_train_gan

    return run_train_gan(args)


def _cmd_bench_generator(args: argparse.Namespace) -> int:
    from trainer.bench import bench_generator, format_rows, tune_cpu_allocator
    from trainer.errors import ConfigError

    counts = {"--batches": args.batches, "--gemm-sizes": args.gemm_sizes}
    counts.update({"--repeats": [args.repeats], "--threads": [args.threads or 1]})
    for flag, values in counts.items():
        if min(values) < 1:
            raise ConfigError(f"{flag} {min(values)}: must be 1 or more")
    if not args.default_malloc:
        tune_cpu_allocator()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    def progress(what: str) -> None:
        print(f"timing {what} ...", file=sys.stderr, flush=True)

    result = bench_generator(
        batches=args.batches,
        precisions=["float32", "bf16"] if args.precision == "both" else [args.precision],
        repeats=args.repeats,
        gemm_sizes=args.gemm_sizes,
        progress=None if args.quiet else progress,
    )
    print(json.dumps(result, indent=2) if args.json else format_rows(result))
    return 0


def _cmd_bench_train(args: argparse.Namespace) -> int:
    import tempfile

    from trainer.loops.gan import measure_training_speed
    from trainer.train_cli import resolve_config

    with tempfile.TemporaryDirectory(prefix="medstyle-bench-") as scratch:
        args.out, args.resume = str(Path(scratch) / "run"), False
        row = measure_training_speed(resolve_config(args), steps=args.steps, warmup=args.warmup)
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        print(
            f"{row['network']} {row['resolution']} px, batch {row['batch']} on {row['device']}"
            f" (bf16 {row['bf16']}, channels_last {row['channels_last']}): "
            f"{row['ms_per_step']:.1f} ms per step, {row['images_per_s']:.1f} images/s"
        )
    return 0


# -- parser -----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), like every other medstyle error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _matrix_size(text: str) -> int:
    """``--size``: checked by the same rule the resampler applies (one place for it)."""
    from trainer.data.resample import check_matrix_size
    from trainer.errors import ConfigError

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    try:
        check_matrix_size(value)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


def _scan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--series", metavar="UID|N", help=SERIES_HELP)
    p.add_argument(
        "--modality",
        type=str.upper,  # ct or CT, as users type it
        choices=("CT", "MR"),
        help="modality of a NIfTI/MHA/NRRD scan (overrides a sidecar)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="medstyle",
        description="Explore the latent style space of a StyleGAN trained on pelvic CT and T2 MR.",
    )
    parser.add_argument("--version", action="version", version=f"medstyle {trainer.__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "info", help="describe a scan (DICOM folder or file, NIfTI, MHA, NRRD, HDF5)"
    )
    p.add_argument("scan", type=Path)
    _scan_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("convert", help="convert a scan to NIfTI, a DICOM series or HDF5")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument(
        "--format",
        choices=("nifti", "dicom", "h5", "mha", "nrrd"),
        help="default: from DST's extension",
    )
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    _scan_options(p)
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("pair", help="register a CT to an MR of one patient: a study folder")
    p.add_argument("ct", type=Path, help="the CT (DICOM folder or file, NIfTI, ...)")
    p.add_argument("mr", type=Path, help="the T2 MR")
    p.add_argument("--out", type=Path, required=True, help="study folder to create")
    p.add_argument("--size", type=_matrix_size, default=256, help="model matrix N")
    p.add_argument("--no-register", action="store_true", help="trust the scans' coordinates")
    p.add_argument("--no-n4", action="store_true", help="skip N4 bias-field correction of MR")
    p.add_argument(
        "--ct-series", metavar="UID|N", help="the CT series of a folder: UID, or N as listed [N]"
    )
    p.add_argument(
        "--mr-series", metavar="UID|N", help="the MR series of a folder: UID, or N as listed [N]"
    )
    p.add_argument("--patient", help="label for the manifest (default: the folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument(
        "--force",
        action="store_true",
        help="keep a pair that fails the plausibility check (marked not aligned)",
    )
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=_cmd_pair)

    p = sub.add_parser("dataset", help="build or describe an HDF5 slice dataset")
    dsub = p.add_subparsers(
        dest="dataset_command", metavar="ACTION", required=True, parser_class=_Parser
    )
    b = dsub.add_parser("build", help="paired studies -> HDF5 slices with labels")
    b.add_argument("sources", type=Path, nargs="+", help="study folders or folders of studies")
    b.add_argument("--out", type=Path, required=True, help="DATA.h5 to write")
    b.add_argument("--size", type=_matrix_size, default=256, help="model matrix N (N x N)")
    b.add_argument("--no-register", action="store_true", help="trust that CT and MR are aligned")
    b.add_argument("--no-n4", action="store_true", help="skip N4 bias-field correction of MR")
    b.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_dataset_build)
    i = dsub.add_parser("info", help="counts by modality, sex and patient")
    i.add_argument("dataset", type=Path)
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=_cmd_dataset_info)

    p = sub.add_parser(
        "phantom", help="write procedural paired pelvic CT/T2 MR phantom studies with labels"
    )
    p.add_argument("out_dir", type=Path, help="folder to create (or an empty one)")
    p.add_argument("--patients", type=int, default=100, help="number of patients (default 100)")
    p.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    p.add_argument("--size", type=int, default=256, help="pixels per row and column")
    p.add_argument("--slices", type=int, default=88, help="axial slices per study")
    p.add_argument("--slice-mm", type=float, default=3.0, help="slice spacing in mm")
    p.add_argument("--female-fraction", type=float, default=0.5, help="share of women")
    p.add_argument("--format", choices=("nifti", "dicom"), default="nifti", help="scan files")
    p.add_argument(
        "--misalign-mm", type=float, default=0.0, help="random rigid CT misalignment (mm)"
    )
    p.add_argument("--workers", type=int, help="processes (default: one per CPU)")
    p.add_argument("--montage", type=Path, metavar="PNG", help="also draw a montage PNG")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser("phantom-montage", help="draw a PNG of slices of a phantom cohort")
    p.add_argument("cohort", type=Path, help="folder written by 'medstyle phantom'")
    p.add_argument("png", type=Path, help="PNG file to write")
    p.add_argument("--per-sex", type=int, default=2, help="patients of each sex shown")
    p.add_argument("--overwrite", action="store_true", help="replace PNG if it exists")
    p.set_defaults(func=_cmd_phantom_montage)

    p = sub.add_parser("train", help="train the StyleGAN (one GPU, many GPUs, many machines)")
    tsub = p.add_subparsers(
        dest="train_command", metavar="MODEL", required=True, parser_class=_Parser
    )
    g = tsub.add_parser("gan", help="the StyleGAN with progressive growing (torchrun for --gpus N)")
    from trainer.train_cli import add_train_gan_arguments

    add_train_gan_arguments(g)
    g.set_defaults(func=_cmd_train_gan)
    add_train_encoder_command(tsub)
    from trainer.train_cli import add_train_bundle_arguments, run_train_bundle

    tb = tsub.add_parser("bundle", help="the model bundle of any snapshot of a GAN run")
    add_train_bundle_arguments(tb)
    tb.set_defaults(func=run_train_bundle)

    p = sub.add_parser("bench", help="time the networks on this machine")
    bsub = p.add_subparsers(
        dest="bench_command", metavar="WHAT", required=True, parser_class=_Parser
    )
    b = bsub.add_parser(
        "generator",
        help="ms per image and GFLOP/s of G's forward pass (paper and demo configs) against "
        "this machine's float32 and bf16 GEMM peaks",
    )
    b.add_argument("--json", action="store_true", help="print JSON (peaks and rows)")
    b.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes (1 8)")
    b.add_argument(
        "--precision",
        choices=("float32", "bf16", "both"),
        default="float32",
        help="time G in float32 (default), bfloat16 autocast, or both",
    )
    b.add_argument("--repeats", type=int, default=7, help="timed calls per row (median; 7)")
    b.add_argument(
        "--gemm-sizes",
        type=int,
        nargs="+",
        default=[1024, 2048, 4096],
        metavar="N",
        help="N x N matrices the GEMM peaks are the best torch.mm rate on (1024 2048 4096)",
    )
    b.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    b.add_argument("--default-malloc", action="store_true", help="leave glibc's allocator untuned")
    b.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    b.set_defaults(func=_cmd_bench_generator)
    t = bsub.add_parser("train", help="training images/s of a config on a dataset (D + G steps)")
    add_train_gan_arguments(t)
    t.add_argument("--steps", type=int, default=10, help="timed steps (median; 10)")
    t.add_argument("--warmup", type=int, default=3, help="untimed steps first (3)")
    t.add_argument("--json", action="store_true", help="print JSON")
    t.set_defaults(func=_cmd_bench_train)
    add_latent_benchmarks(bsub)

    add_latent_commands(sub, _Parser)
    add_gui_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        if not can_open_a_window():
            parser.print_help()
            print("\n(no display: 'medstyle' alone opens the explorer on a desktop)")
            return 0
        args = parser.parse_args(["gui"])  # no command: the explorer on the demo
        func = args.func
    try:
        return func(args)
    except MedstyleError as err:
        print(f"medstyle: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # output piped into `head` and cut short: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("medstyle: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # a bug: say so in one line unless asked for the traceback
        if args.debug:
            raise
        print(
            f"medstyle: internal error: {type(err).__name__}: {err} (run with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
