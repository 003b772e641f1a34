"""``medstyle gui``: the desktop application from the command line.

Kept apart from ``cli.py`` so the other subcommands never import Qt; the handler imports
the GUI only when it runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

#: What ``medstyle gui`` says after why no window can open.
NO_DISPLAY_ADVICE = "set DISPLAY to one that answers, run under xvfb-run, or use --screenshot PNG"
#: ``--series``: which series of a DICOM folder (the reader's messages list them as [N]).
SERIES_HELP = (
    "which series of a DICOM folder: its UID, or N for the one its listing shows as [N] "
    "(or PATIENT/MODALITY of a slice dataset)"
)


def can_open_a_window() -> bool:
    """True when Qt can show a window here: an X11 or Wayland display that answers, or a
    platform chosen in ``QT_QPA_PLATFORM`` that needs none (e.g. offscreen). Tries the
    display's socket, without Qt (see :mod:`medstyle_gui.display`)."""
    from medstyle_gui.display import window_problem

    return window_problem() is None


def choose_qt_platform(screenshot: bool) -> None:
    """Set ``QT_QPA_PLATFORM`` before the QApplication exists, where Qt's own choice
    would abort the process (SIGABRT) on a display that does not answer: with
    ``screenshot``, the displays that answered then offscreen (offscreen alone where
    none did); without, ConfigError naming the display when none answered."""
    from medstyle_gui.display import displays, qt_platforms, window_problem
    from trainer.errors import ConfigError

    found = displays()
    problem = window_problem(found=found)
    if problem is not None and not screenshot:
        raise ConfigError(f"{problem}; {NO_DISPLAY_ADVICE}")
    if problem is not None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        return
    platforms = qt_platforms(offscreen=screenshot, found=found)
    if platforms is not None:  # only where the user chose none
        os.environ["QT_QPA_PLATFORM"] = platforms


def _check_inputs(args: argparse.Namespace) -> None:
    """Refuse what cannot open before a window does: a session that is missing or
    unreadable, a session with other inputs, scans that are not one scan, a study or a
    CT and an MR, and ``--series`` for anything but one scan (ConfigError, SessionError)."""
    from medstyle_gui.core.session import SUFFIX, load_session
    from medstyle_gui.core.session_build import describe_inputs
    from trainer.errors import ConfigError

    sessions = [p for p in args.scans if p.suffix == SUFFIX]
    if sessions and (len(args.scans) > 1 or args.model is not None):
        raise ConfigError("a session opens alone: it names its own model and scans", sessions[0])
    if sessions and args.series is not None:
        raise ConfigError("--series is for one scan: a session names its own", sessions[0])
    if sessions:
        load_session(sessions[0])  # a missing, foreign or damaged file is one line here
    elif args.scans:
        describe_inputs(args.scans, series_uid=args.series)
    elif args.series is not None:
        raise ConfigError("--series chooses a series of a DICOM folder: give the folder too")


def _cmd_gui(args: argparse.Namespace) -> int:
    from trainer.errors import ScanWriteError
    from trainer.files import ensure_can_write_png

    if args.screenshot is not None:  # before the work, as every command that writes
        if args.screenshot.is_dir():
            raise ScanWriteError("is a folder, not a PNG file", args.screenshot)
        ensure_can_write_png(args.screenshot, args.overwrite)
    choose_qt_platform(screenshot=args.screenshot is not None)
    _check_inputs(args)
    from medstyle_gui.gui.app import run_gui

    return run_gui(
        args.model,
        args.scans,
        args.screenshot,
        args.device,
        series=args.series,
        overwrite=args.overwrite,
    )


def add_gui_command(sub) -> None:
    """Register ``medstyle gui [--model DIR] [SCAN ...] [--series UID|N] [--screenshot PNG]
    [--overwrite] [--device D]``."""
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
        help="load, wait for the first render, save a PNG of the window and exit (offscreen "
        "when there is no display; nothing is written when an input cannot be read)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the --screenshot PNG")
    p.add_argument("--series", metavar="UID|N", help=SERIES_HELP)
    p.add_argument(
        "--device", metavar="D", help="cpu, cuda or cuda:N (default: a GPU when there is one)"
    )
    p.set_defaults(func=_cmd_gui)
