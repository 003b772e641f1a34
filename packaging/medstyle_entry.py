"""Entry script of the frozen (PyInstaller) ``medstyle`` program: the ``medstyle`` CLI.

The frozen program is both the desktop app (``medstyle gui``, or no arguments) and the
command line the app starts for training (``medstyle train gan ...``; see
``medstyle_gui.core.export.cli_command``), because a frozen build has no Python
interpreter to run ``python -m medstyle_gui``. For the same reason it stands in for
``python -m trainer.launch`` (torchrun) when ``--gpus N`` starts N training processes.
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def _honour_unbuffered() -> None:
    """Line-buffer stdout/stderr when ``PYTHONUNBUFFERED`` is set.

    The GUI's process runner sets it so that training progress arrives line by line
    through the pipe; a frozen interpreter may not read PYTHON* variables, so the
    streams are reconfigured here instead."""
    if not os.environ.get("PYTHONUNBUFFERED"):
        return
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:  # None when there is no console (windowed builds)
            reconfigure(line_buffering=True, write_through=True)


if __name__ == "__main__":
    # a worker process started with the "spawn" method re-runs this program; this
    # turns such a start into the worker instead of a second copy of the app
    multiprocessing.freeze_support()
    _honour_unbuffered()

    from trainer import launch

    if sys.argv[1:3] == ["-m", launch.MODULE]:  # `--gpus N` starts torchrun this way
        sys.exit(launch.main(sys.argv[3:]))

    from medstyle_gui.cli import main

    sys.exit(main())
