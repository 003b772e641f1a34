"""The trainer's own command line: ``python -m trainer train gan ...``.

This is what ``torchrun ... -m trainer train gan ...`` runs in every process; the
``medstyle train gan`` subcommand builds its options with the same
:func:`add_train_gan_arguments` and calls :func:`run_train_gan`. Every option defaults
to ``None`` so that only the flags a user gives override ``--config file.json`` (see
:meth:`GANTrainConfig.resolve`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from trainer.errors import ConfigError, MedstyleError

#: Options that may change when a run is resumed (the rest must match the saved run).
RESUME_OVERRIDES = ("kimg", "workers", "device", "tick_kimg", "snapshot_kimg", "checkpoint_kimg")

#: Flags that map one-to-one onto GANTrainConfig fields: (flag, type, help).
_FIELDS: list[tuple[str, Any, str]] = [
    ("--data", str, "HDF5 slice dataset (medstyle dataset build)"),
    ("--out", str, "run folder to create (or, with --resume, to continue)"),
    ("--modality", str, "train on CT or MR slices only (default both)"),
    ("--resolution", int, "final resolution in px (default: the dataset's)"),
    ("--start-resolution", int, "progressive growing starts here (default 8)"),
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
]
_SWITCHES = [
    ("--channels-last", "channels_last memory format (GPU)"),
    ("--bf16", "bfloat16 autocast (GPU)"),
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
    from trainer.loops.gan_config import GANTrainConfig, read_config_file

    overrides = _overrides(args)
    if not args.resume:
        cfg = GANTrainConfig.resolve(overrides, args.config)
        out = Path(cfg.out)
        # under torchrun rank 0 alone checks: it may already have started the folder
        if (
            os.environ.get("RANK", "0") == "0"
            and out.exists()
            and (not out.is_dir() or any(out.iterdir()))
        ):
            raise ConfigError("already holds a run (pass --resume to continue it)", out)
        return cfg
    if "out" not in overrides:
        raise ConfigError("--resume needs --out RUN_DIR")
    saved_file = Path(overrides["out"]) / "config.json"
    if not saved_file.exists():
        raise ConfigError("has no config.json: not a run folder to resume", overrides["out"])
    saved = read_config_file(saved_file)
    saved.pop("network_config", None)
    for key, value in overrides.items():
        if key in RESUME_OVERRIDES:
            saved[key] = value
        elif key not in ("out",) and GANTrainConfig.from_dict({key: value}).to_dict()[
            key
        ] != saved.get(key):
            raise ConfigError(
                f"--{key.replace('_', '-')} differs from the saved run's; on resume only "
                + ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDES)
                + " may change",
                saved_file,
            )
    saved["out"] = overrides["out"]
    return GANTrainConfig.from_dict(saved, saved_file).validate()


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


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m trainer train
    gan OPTIONS`` for ``--gpus N`` on this machine."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(args.gpus), "-m", "trainer", "train", "gan",
        *train_gan_argv(args),
    ]  # fmt: skip


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

        check_run(cfg, args.gpus)

        if torch.cuda.is_available() and torch.cuda.device_count() < args.gpus:
            raise ConfigError(f"--gpus {args.gpus}: this machine has {torch.cuda.device_count()}")
        return subprocess.call(torchrun_command(args))
    out = train_gan(cfg, resume=args.resume, progress=not args.quiet)
    if env_world_size() == 1 or os.environ.get("RANK", "0") == "0":
        print(f"wrote {out}")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m trainer", description="medstyle's training package.")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    train = sub.add_parser("train", help="train a model")
    tsub = train.add_subparsers(dest="model", metavar="MODEL", required=True, parser_class=_Parser)
    gan = tsub.add_parser("gan", help="the StyleGAN (progressive growing)")
    add_train_gan_arguments(gan)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return run_train_gan(args)
    except MedstyleError as err:
        print(f"trainer: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trainer: interrupted", file=sys.stderr)
        return 130
