"""``python -m trainer.launch TORCHRUN_ARGS``: torchrun for ``train gan|encoder --gpus N``,
ending with one line instead of a traceback.

torchrun (``torch.distributed.run``) starts the N training processes and waits for
them. When one fails it has printed its own error already, and when Stop sends SIGTERM
the processes save their checkpoint and stop; torchrun then raises (``ChildFailedError``,
``SignalException``) and Python would print a traceback under the training log. Here
that is one line, and the exit status is the failing process's (128 + the signal's
number after a signal, as a shell reports it).

A frozen program has no interpreter to run ``-m trainer.launch`` with: its entry script
(``packaging/medstyle_entry.py``) calls :func:`main` when started as
``PROGRAM -m trainer.launch ...`` (:func:`trainer.train_cli.torchrun_command`).
"""

from __future__ import annotations

import sys

#: The module name ``torchrun_command`` starts (``python -m trainer.launch``).
MODULE = "trainer.launch"


def main(argv: list[str] | None = None) -> int:
    """Run torchrun with ``argv`` (its own options, then the worker command); return the
    exit status: 0, the first failed process's code, or 128 + signal."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    argv = sys.argv[1:] if argv is None else argv
    try:
        torchrun(argv)
    except ChildFailedError as err:
        rank, failure = min(err.failures.items())
        code = failure.exitcode
        print(f"medstyle: training process {rank} ended with exit code {code}", file=sys.stderr)
        return 128 - code if code < 0 else max(1, min(code, 255))  # -15: killed by SIGTERM
    except SignalException as err:
        print(f"medstyle: stopped by signal {err.sigval.name}", file=sys.stderr)
        return 128 + int(err.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
