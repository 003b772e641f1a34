"""Entry script of the frozen (PyInstaller) ``medstyle`` program: the ``medstyle`` CLI.

The frozen program is both the desktop app (``medstyle gui``, or no arguments) and the
command line the app starts for training (``medstyle train gan ...``; see
``medstyle_gui.core.export.cli_command``), because a frozen build has no Python
interpreter to run ``python -m medstyle_gui``. For the same reason it stands in for
``python -m torch.distributed.run`` when ``--gpus N`` starts N training processes.
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


#: ``PROGRAM -m torch.distributed.run ...``: what ``train gan|encoder --gpus N`` starts
#: (``trainer.train_cli.torchrun_command``); torchrun then starts N copies of PROGRAM.
TORCHRUN = ["-m", "torch.distributed.run"]


def _run_torchrun(argv: list[str]) -> int:
    """Be ``python -m torch.distributed.run ARGV``: launch the workers, wait for them, and
    end with one line (not a traceback) when one of them failed or a signal stopped them."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    sys.argv = ["torchrun", *argv]
    try:
        torchrun(argv)
    except ChildFailedError as err:  # each worker has printed its own error already
        rank, failure = min(err.failures.items())
        print(f"medstyle: training process {rank} ended with exit code {failure.exitcode}",
              file=sys.stderr)  # fmt: skip
        return max(1, min(255, abs(failure.exitcode or 1)))
    except SignalException as err:  # Stop (SIGTERM): the workers have saved and stopped
        return 128 + int(err.sigval)
    return 0


if __name__ == "__main__":
    # a worker process started with the "spawn" method re-runs this program; this
    # turns such a start into the worker instead of a second copy of the app
    multiprocessing.freeze_support()
    _honour_unbuffered()
    if sys.argv[1:3] == TORCHRUN:
        sys.exit(_run_torchrun(sys.argv[3:]))

    from medstyle_gui.cli import main

    sys.exit(main())
