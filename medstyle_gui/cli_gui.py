"""``medstyle gui``: the desktop application from the command line.

Kept apart from ``cli.py`` so the other subcommands never import Qt; the handler imports
the GUI only when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_gui(args: argparse.Namespace) -> int:
    from medstyle_gui.gui.app import run_gui
    from trainer.errors import ConfigError

    if args.screenshot is not None:
        parent = args.screenshot.parent if str(args.screenshot.parent) else Path(".")
        if not parent.is_dir():
            raise ConfigError(f"folder {parent} does not exist", args.screenshot)
    from medstyle_gui.core.session import SUFFIX
    from medstyle_gui.core.session_build import describe_inputs

    sessions = [p for p in args.scans if p.suffix == SUFFIX]
    if sessions and (len(args.scans) > 1 or args.model is not None):
        raise ConfigError("a session opens alone: it names its own model and scans", sessions[0])
    if sessions and not sessions[0].is_file():
        raise ConfigError("does not exist", sessions[0])
    if args.scans and not sessions:
        describe_inputs(args.scans)  # one scan, a study folder, or a CT and an MR
    return run_gui(args.model, args.scans, args.screenshot, args.device)


def add_gui_command(sub) -> None:
    """Register ``medstyle gui [--model DIR] [SCAN ...] [--screenshot PNG] [--device D]``."""
    p = sub.add_parser(
        "gui",
        help="the desktop application: embed, slide, mix and compare live",
        description=(
            "Open the explorer. SCAN is a scan (DICOM folder or file, NIfTI, MHA, NRRD), a "
            "paired study folder, a CT and an MR (in that order) to register as a pair, or "
            "a session (.medstyle, e.g. from 'medstyle session'). With none, the demo opens."
        ),
    )
    p.add_argument("scans", type=Path, nargs="*", metavar="SCAN", help="scans to open")
    p.add_argument(
        "--model", type=Path, metavar="DIR", help="model bundle folder (default: the demo model)"
    )
    p.add_argument(
        "--screenshot",
        type=Path,
        metavar="PNG",
        help="load, wait for the first render, save a PNG of the window and exit",
    )
    p.add_argument(
        "--device", metavar="D", help="cpu, cuda or cuda:N (default: a GPU when there is one)"
    )
    p.set_defaults(func=_cmd_gui)
