"""The trainer's own command line: ``python -m trainer train gan|encoder ...``.

This is what ``torchrun ... -m trainer train gan ...`` (or ``... train encoder ...``) runs
in every process; the ``medstyle train gan`` and ``medstyle train encoder`` subcommands
build their options with the same :func:`add_train_gan_arguments` /
:func:`add_train_encoder_arguments` and call :func:`run_train_gan` /
:func:`run_train_encoder`. Every option defaults to ``None`` so that only the flags a user
gives override ``--config file.json`` (see :meth:`GANTrainConfig.resolve`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from trainer.errors import ConfigError, MedstyleError
from trainer.launch import MODULE as LAUNCH_MODULE

#: Options that may change when a run is resumed (the rest must match the saved run): how
#: long, where and how the arithmetic runs (a run may move to a machine with or without
#: bf16 units), never what is trained.
RESUME_OVERRIDES = (
    "kimg",
    "workers",
    "device",
    "tick_kimg",
    "snapshot_kimg",
    "checkpoint_kimg",
    "bf16",
    "channels_last",
)

#: Flags that map one-to-one onto GANTrainConfig fields: (flag, type, help).
_FIELDS: list[tuple[str, Any, str]] = [
    ("--data", str, "HDF5 slice dataset (medstyle dataset build)"),
    ("--out", str, "run folder to create (or, with --resume, to continue)"),
    ("--modality", str.upper, "train on CT or MR slices only (default both)"),
    ("--resolution", int, "final resolution in px: 32, 64, ... 512 (default: the dataset's)"),
    ("--start-resolution", int, "progressive growing starts here: 4, 8, ... (default 8)"),
    ("--kimg", float, "thousands of real images to show in all (default 12000)"),
    ("--fade-kimg", float, "kimg per fade-in phase (default 600)"),
    ("--stabilise-kimg", float, "kimg per stabilise phase (default 600)"),
    ("--lr", float, "Adam learning rate (default 1e-3)"),
    ("--ema-decay", float, "EMA decay of G_ema per step (default 0.999)"),
    ("--style-mixing-prob", float, "style-mixing probability (default 0.9)"),
    ("--loss", str, "wgan-gp (default, the paper's) or r1"),
    ("--gp-lambda", float, "WGAN-GP penalty weight (default 10)"),
    ("--r1-gamma", float, "R1 penalty weight (default 10)"),
    ("--metric", str, "swd (default) or fid"),
    ("--metric-images", int, "images per metric evaluation (default 10000)"),
    ("--inception-weights", str, "Inception-v3 state_dict file for FID"),
    ("--tick-kimg", float, "log every this many kimg (default 4)"),
    ("--snapshot-kimg", float, "samples, metric and checkpoint every this many kimg (100)"),
    ("--checkpoint-kimg", float, "latest.pt every this many kimg (default: snapshot-kimg)"),
    ("--network", str, "paper (full width, default) or slim (small, for CPU)"),
    ("--seed", int, "random seed (default 0)"),
    ("--workers", int, "data loader processes per GPU (default 2)"),
    ("--device", str, "cpu or cuda (default: cuda when available)"),
    ("--init-from", str, "model bundle to start G and D from (fresh optimisers)"),
]
_SWITCHES = [
    ("--channels-last", "channels_last memory format (GPU)"),
    ("--bf16", "bfloat16 autocast (GPUs, and CPUs with AVX512-BF16 or AMX)"),
]


def add_train_gan_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``train gan`` (shared by ``medstyle`` and ``python -m trainer``)."""
    for flag, kind, text in _FIELDS:
        p.add_argument(flag, type=kind, default=None, help=text)
    p.add_argument("--batch", metavar="N|RES:N,...", help="global batch size(s) per resolution")
    for flag, text in _SWITCHES:
        p.add_argument(flag, action="store_true", default=None, help=text)
    p.add_argument("--config", type=Path, metavar="JSON", help="options file; flags win")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--gpus", type=int, default=1, help="processes on this machine (torchrun)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The GANTrainConfig fields set on the command line."""
    from trainer.loops.gan_config import parse_batch_sizes

    names = [f[0] for f in _FIELDS] + [s[0] for s in _SWITCHES]
    d = {n[2:].replace("-", "_"): getattr(args, n[2:].replace("-", "_")) for n in names}
    if args.batch is not None:
        d["batch_sizes"] = parse_batch_sizes(args.batch)
    return {k: v for k, v in d.items() if v is not None}


def resolve_config(args: argparse.Namespace):
    """The run's GANTrainConfig: defaults < --config < flags; with --resume the saved
    config of the run, where only :data:`RESUME_OVERRIDES` may change."""
    from trainer.loops.gan_config import GANTrainConfig

    cfg = _resolve_run_config(
        GANTrainConfig, _overrides(args), args, RESUME_OVERRIDES, derived=("network_config",)
    )
    return _keep_saved_network(cfg) if args.resume else cfg


def _keep_saved_network(cfg: Any) -> Any:
    """A resumed GAN run trains the network it started with, also where its preset has
    changed since (the "paper" preset once had half the paper's feature maps): fields of
    the run's saved ``network_config`` that the preset now sets otherwise become
    ``network_overrides``."""
    import dataclasses

    from trainer.loops.gan import network_config
    from trainer.loops.gan_config import read_config_file

    saved = read_config_file(Path(cfg.out) / "config.json").get("network_config")
    if not isinstance(saved, dict) or "img_resolution" not in saved:
        return cfg  # the checkpoint's own check names a mismatch
    now = network_config(cfg, int(saved["img_resolution"])).to_dict()
    kept = {k: v for k, v in saved.items() if k in now and now[k] != v}
    if not kept:
        return cfg
    return dataclasses.replace(cfg, network_overrides={**cfg.network_overrides, **kept})


def _resolve_run_config(
    cls: Any,
    overrides: dict[str, Any],
    args: argparse.Namespace,
    resume_overrides: Sequence[str],
    derived: Sequence[str],
    flags: Mapping[str, str] | None = None,
):
    """A training config of class ``cls`` (GANTrainConfig, EncoderTrainConfig): defaults <
    ``args.config`` < ``overrides``; with ``args.resume`` the saved ``config.json`` of the
    run (less the ``derived`` entries written beside the options), where only
    ``resume_overrides`` may change. ``flags``: option name -> its flag where they differ."""
    from trainer.loops.gan_config import read_config_file

    if not args.resume:
        cfg = cls.resolve(overrides, args.config)
        out = Path(cfg.out)
        # under torchrun rank 0 alone checks: it may already have started the folder
        if (
            os.environ.get("RANK", "0") == "0"
            and out.exists()
            and (not out.is_dir() or any(out.iterdir()))
        ):
            raise ConfigError(_taken_run_folder(out), out)
        _check_run_folder_writable(out)
        return cfg
    if "out" not in overrides:
        raise ConfigError("--resume needs --out RUN_DIR")
    saved_file = Path(overrides["out"]) / "config.json"
    if not saved_file.exists():
        raise ConfigError("has no config.json: not a run folder to resume", overrides["out"])
    _check_run_folder_writable(Path(overrides["out"]))
    saved = read_config_file(saved_file)
    for key in derived:
        saved.pop(key, None)
    for key, value in overrides.items():
        if key in resume_overrides:
            saved[key] = value
        elif key not in ("out",) and cls.from_dict({key: value}).to_dict()[key] != saved.get(key):
            flags = flags or {}
            raise ConfigError(
                f"{flags.get(key, '--' + key.replace('_', '-'))} differs from the saved run's; "
                "on resume only "
                + ", ".join(flags.get(k, "--" + k.replace("_", "-")) for k in resume_overrides)
                + " may change",
                saved_file,
            )
    saved["out"] = overrides["out"]
    return cls.from_dict(saved, saved_file).validate()


def _taken_run_folder(out: Path) -> str:
    """Why ``out``, which exists, cannot be a new run folder."""
    if not out.is_dir():
        return "is a file, not a run folder"
    if (out / "config.json").is_file():
        return "already holds a run (pass --resume to continue it)"
    return "is a folder that is not empty and holds no run; give a new folder"


def _check_run_folder_writable(out: Path) -> None:
    """Before training starts: a run folder that exists must take new files (its
    ``config.json`` is rewritten); one to create, the nearest folder above it."""
    from trainer.files import ensure_can_write

    if out.is_dir():
        ensure_can_write(out / "config.json", overwrite=True)
    else:
        ensure_can_write(out, overwrite=False, make_parents=True)


def train_gan_argv(args: argparse.Namespace) -> list[str]:
    """The ``train gan`` options of ``args`` as command-line words (for torchrun)."""
    argv: list[str] = []
    for flag, _kind, _text in _FIELDS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            argv += [flag, str(value)]
    for flag, _text in _SWITCHES:
        if getattr(args, flag[2:].replace("-", "_")):
            argv.append(flag)
    if args.batch is not None:
        argv += ["--batch", args.batch]
    if args.config is not None:
        argv += ["--config", str(args.config)]
    argv += ["--resume"] * bool(args.resume) + ["--quiet"] * bool(args.quiet)
    return argv


def torchrun_command(gpus: int, train_argv: list[str]) -> list[str]:
    """The command that starts ``gpus`` processes of ``train_argv`` (``["train", "gan",
    OPTIONS]``) on this machine: ``python -m trainer.launch --standalone --nproc_per_node N
    -m trainer train gan OPTIONS`` (torchrun, :mod:`trainer.launch`).

    A frozen (PyInstaller) program has no interpreter to run ``-m`` with: there the
    program itself stands in for ``python -m trainer.launch`` (its entry script,
    ``packaging/medstyle_entry.py``) and torchrun starts the program
    (``--no-python PROGRAM train gan OPTIONS``), whose CLI takes the same words."""
    worker = ["--no-python", sys.executable] if getattr(sys, "frozen", False) else ["-m", "trainer"]
    return [
        sys.executable, "-m", LAUNCH_MODULE, "--standalone", "--nproc_per_node", str(gpus),
        *worker, *train_argv,
    ]  # fmt: skip


def _train_here(
    train: Any,
    cfg: Any,
    args: argparse.Namespace,
    note: Callable[[Path], str | None] | None = None,
) -> int:
    """Run a training loop (``train_gan`` / ``train_encoder``) in this process, stopping
    cleanly on SIGTERM; rank 0 says where the run is, and ``note(run folder)``'s line
    about a run that ended, if it has one."""
    from trainer.distributed import env_world_size

    with StopOnTerm() as stop:
        out = train(cfg, resume=args.resume, progress=not args.quiet, stop=stop)
    if env_world_size() == 1 or os.environ.get("RANK", "0") == "0":
        if stop.requested:
            print(f"stopped: {out} saved where it was (continue with --resume)")
        else:
            print(f"wrote {out}")
            text = note(Path(out)) if note is not None else None
            if text:
                print(f"note: {text}")
    return 0


def ended_early_note(out: Path) -> str | None:
    """A line for a GAN run in ``out`` whose ``--kimg`` ended it before its final
    resolution was fully faded in (None otherwise): such a run never took a snapshot
    that counts as its result, so it has no ``bundle/``; the line says where it ended,
    how to pack what it has and how to train on. Reads the run's ``config.json`` and the
    last ``images_seen`` of its ``log.jsonl``."""
    import json

    from trainer.loops.gan_config import GANTrainConfig, read_config_file

    try:
        saved = read_config_file(out / "config.json")
        final = int(saved.pop("network_config")["img_resolution"])
        cfg = GANTrainConfig.from_dict(saved)
        lines = (out / "log.jsonl").read_text().splitlines()
        images_seen = max(int(json.loads(line).get("images_seen", 0)) for line in lines)
    except (MedstyleError, OSError, KeyError, TypeError, ValueError):
        return None  # not a run this can read: say nothing rather than guess
    phase = cfg.phase_at(max(images_seen - 1, 0), final)  # the phase of the last step
    if phase.resolution == final and phase.alpha >= 1.0:
        return None
    # the schedule: the first resolution stabilises, each later one fades in, stabilises
    faded_in_kimg = (len(cfg.resolutions(final)) - 1) * (cfg.fade_kimg + cfg.stabilise_kimg)
    where = f"{phase.resolution} px" + (
        f" (fading in, alpha {phase.alpha:.2f})" if phase.alpha < 1.0 else ""
    )
    untrained = f" (its layers above {phase.resolution} px untrained)"
    return (
        f"--kimg {cfg.kimg:g} ended the run at {where}, before its final {final} px was "
        f"fully faded in (at {faded_in_kimg:g} kimg), so it wrote no bundle/: pack it with "
        f"'medstyle train bundle {out / 'checkpoints' / 'latest.pt'} --out BUNDLE'"
        f"{untrained if phase.resolution < final else ''}, or train on with "
        f"'medstyle train gan --out {out} --resume --kimg K' (K above {faded_in_kimg:g})"
    )


def run_train_gan(args: argparse.Namespace) -> int:
    """Run ``train gan``: in this process, or with ``--gpus N > 1`` (and not already under
    torchrun) as N processes started by torchrun (on CPU: N processes with gloo)."""
    from trainer.distributed import env_world_size
    from trainer.loops.gan import train_gan

    if args.gpus < 1:
        raise ConfigError(f"--gpus {args.gpus}: need at least 1")
    cfg = resolve_config(args)  # errors show here, once, before any process starts
    if args.gpus > 1 and env_world_size() == 1:
        import torch

        from trainer.loops.gan import check_run

        check_run(cfg, args.gpus, resume=args.resume)

        if torch.cuda.is_available() and torch.cuda.device_count() < args.gpus:
            raise ConfigError(f"--gpus {args.gpus}: this machine has {torch.cuda.device_count()}")
        return subprocess.call(torchrun_command(args.gpus, ["train", "gan", *train_gan_argv(args)]))
    return _train_here(train_gan, cfg, args, note=ended_early_note)


# -- train encoder ----------------------------------------------------------------------

#: Options of an encoder run that may change when it is resumed.
ENCODER_RESUME_OVERRIDES = ("kimg", "device", "tick_kimg", "snapshot_kimg", "replace_encoder")

#: ``train encoder`` flags onto EncoderTrainConfig fields: (flag, field, type, help).
_ENCODER_FIELDS: list[tuple[str, str, Any, str]] = [
    ("--model", "model", str, "model bundle folder: its generator decodes; encoder.pt goes in"),
    ("--out", "out", str, "run folder to create (or, with --resume, to continue)"),
    ("--kimg", "kimg", float, "thousands of generated images to train on (default 224)"),
    ("--batch", "batch", int, "global batch size (default 8)"),
    ("--lr", "lr", float, "RAdam learning rate (default 1e-4)"),
    ("--backbone", "backbone", str, "mirror (the paper's, default) or resnet"),
    ("--truncation", "truncation_psi", float, "truncation of the training latents (0.7)"),
    ("--tick-kimg", "tick_kimg", float, "log and validate every this many kimg (default 4)"),
    ("--snapshot-kimg", "snapshot_kimg", float, "latest.pt every this many kimg (default 16)"),
    ("--seed", "seed", int, "random seed (default 0)"),
    ("--device", "device", str, "cpu or cuda (default: cuda when available)"),
]
_ENCODER_FLAGS = {field: flag for flag, field, _kind, _text in _ENCODER_FIELDS}
_ENCODER_FLAGS["replace_encoder"] = "--replace"


def add_train_encoder_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``train encoder`` (shared by ``medstyle`` and ``python -m trainer``)."""
    for flag, field, kind, text in _ENCODER_FIELDS:
        p.add_argument(flag, dest=field, type=kind, default=None, help=text)
    p.add_argument(
        "--replace",
        dest="replace_encoder",
        action="store_true",
        default=None,
        help="replace an encoder.pt the bundle already has",
    )
    p.add_argument("--config", type=Path, metavar="JSON", help="options file; flags win")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--gpus", type=int, default=1, help="processes on this machine (torchrun)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def resolve_encoder_config(args: argparse.Namespace):
    """The run's EncoderTrainConfig: defaults < --config < flags; with --resume the saved
    config of the run, where only :data:`ENCODER_RESUME_OVERRIDES` may change."""
    from trainer.loops.encoder_config import EncoderTrainConfig

    fields = [field for _flag, field, _kind, _text in _ENCODER_FIELDS] + ["replace_encoder"]
    overrides = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    return _resolve_run_config(
        EncoderTrainConfig,
        overrides,
        args,
        ENCODER_RESUME_OVERRIDES,
        derived=("encoder_config", "generator_sha256"),
        flags=_ENCODER_FLAGS,
    )


def train_encoder_argv(args: argparse.Namespace) -> list[str]:
    """The ``train encoder`` options of ``args`` as command-line words (for torchrun)."""
    argv: list[str] = []
    for flag, field, _kind, _text in _ENCODER_FIELDS:
        if getattr(args, field) is not None:
            argv += [flag, str(getattr(args, field))]
    argv += ["--replace"] * bool(args.replace_encoder)
    if args.config is not None:
        argv += ["--config", str(args.config)]
    argv += ["--resume"] * bool(args.resume) + ["--quiet"] * bool(args.quiet)
    return argv


def run_train_encoder(args: argparse.Namespace) -> int:
    """Run ``train encoder``: in this process, or with ``--gpus N > 1`` (and not already
    under torchrun) as N processes started by torchrun (on CPU: N processes with gloo)."""
    from trainer.distributed import env_world_size
    from trainer.loops.encoder import check_run, train_encoder

    if args.gpus < 1:
        raise ConfigError(f"--gpus {args.gpus}: need at least 1")
    cfg = resolve_encoder_config(args)  # errors show here, once, before any process starts
    if args.gpus > 1 and env_world_size() == 1:
        import torch

        check_run(cfg, args.gpus)
        if torch.cuda.is_available() and torch.cuda.device_count() < args.gpus:
            raise ConfigError(f"--gpus {args.gpus}: this machine has {torch.cuda.device_count()}")
        argv = ["train", "encoder", *train_encoder_argv(args)]
        return subprocess.call(torchrun_command(args.gpus, argv))
    return _train_here(train_encoder, cfg, args)


def add_train_bundle_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``train bundle`` (shared by ``medstyle`` and ``python -m trainer``)."""
    p.add_argument(
        "checkpoint",
        type=Path,
        help="GAN run folder (its best snapshot) or checkpoint file (checkpoints/images-*.pt)",
    )
    p.add_argument("--out", type=Path, required=True, help="model bundle folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run_train_bundle(args: argparse.Namespace) -> int:
    """Run ``train bundle``: the model bundle of one snapshot of a GAN run."""
    from trainer.loops.gan_bundle import bundle_from_checkpoint

    out = bundle_from_checkpoint(args.checkpoint, args.out, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


# -- the parser -------------------------------------------------------------------------


class StopOnTerm:
    """A stop flag raised by SIGTERM (what a GUI's Stop button or a job scheduler sends),
    so a training loop can save ``latest.pt`` and end cleanly instead of dying mid-step.
    A second SIGTERM, or SIGINT, still ends the process at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:  # asked twice: do not wait for the step to end
            raise SystemExit(128 + signum)
        self.requested = True

    def __enter__(self) -> StopOnTerm:
        import signal

        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. inside a GUI worker): no handler
            self._previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m trainer", description="medstyle's training package.")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    train = sub.add_parser("train", help="train a model")
    # not dest="model": that is the encoder's --model (the bundle folder)
    tsub = train.add_subparsers(
        dest="train_command", metavar="MODEL", required=True, parser_class=_Parser
    )
    gan = tsub.add_parser("gan", help="the StyleGAN (progressive growing)")
    add_train_gan_arguments(gan)
    gan.set_defaults(run=run_train_gan)
    encoder = tsub.add_parser("encoder", help="the image -> w encoder of a model bundle")
    add_train_encoder_arguments(encoder)
    encoder.set_defaults(run=run_train_encoder)
    bundle = tsub.add_parser("bundle", help="the model bundle of any snapshot of a GAN run")
    add_train_bundle_arguments(bundle)
    bundle.set_defaults(run=run_train_bundle)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except MedstyleError as err:
        print(f"trainer: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trainer: interrupted", file=sys.stderr)
        return 130
