"""Run ``medstyle`` commands in a QProcess and watch the run folder they write.

:class:`ProcessRunner` starts ``python -m medstyle_gui ARGS`` (the CLI of this very
install, so a GUI started from a virtual environment trains with it), one command after
the other, and streams their output line by line. tqdm's carriage-return updates are not
lines: the newest one comes out as :attr:`ProcessRunner.progressText`, so the log view
holds real lines only. Each command runs in a session of its own, so Stop reaches every
process of it (``--gpus N`` starts torchrun, which starts N workers): SIGTERM to the
whole group, and SIGKILL after a grace period if anything is left.

:class:`RunWatcher` polls ``log.jsonl`` of the run folder (a stat per tick of a timer, so
a run on a network file system, where file watchers stay silent, is followed too) and
says when records arrived or a new sample grid appeared.
"""

from __future__ import annotations

import codecs
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from medstyle_gui.core.export import cli_command
from medstyle_gui.core.run_log import RunLog

#: Seconds between SIGTERM and SIGKILL when stopping.
STOP_GRACE_S = 5.0
#: How often the run folder is looked at, ms.
POLL_MS = 400


@dataclass
class RunSpec:
    """What a dialog asks to run.

    Attributes:
        title: the monitor's heading ("Train StyleGAN: run1").
        commands: CLI word lists after ``medstyle``, run one after the other.
        run_folder: the training run folder whose log.jsonl and samples are shown.
        resume: makes the commands that continue the run (None: cannot be resumed).
        result: the model bundle to offer when all commands succeeded (for a GAN run the
            run folder's ``bundle/`` is found on its own).
    """

    title: str
    commands: list[list[str]]
    run_folder: Path | None = None
    resume: Callable[[], list[list[str]]] | None = field(default=None, repr=False)
    result: Path | None = None


def shell_line(words: list[str]) -> str:
    """The command as one line a user could paste into a shell."""
    import shlex

    return " ".join(shlex.quote(w) for w in ["medstyle", *words])


class ProcessRunner(QObject):
    """Runs a queue of ``medstyle`` commands; one QProcess at a time.

    Signals: ``lineReceived(str)`` each output line (stdout and stderr merged, in order),
    ``progressText(str)`` the newest progress-bar text, ``commandStarted(str)`` the shell
    line of each command, ``finished(int, str)`` once at the end: the exit code and
    ``"done"`` / ``"failed"`` / ``"stopped"``.
    """

    lineReceived = Signal(str)
    progressText = Signal(str)
    commandStarted = Signal(str)
    finished = Signal(int, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._queue: list[list[str]] = []
        self._process: QProcess | None = None
        self._stopping = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)

    @property
    def running(self) -> bool:
        return self._process is not None

    @property
    def stopping(self) -> bool:
        """True between Stop and the end of the command."""
        return self._stopping and self.running

    def start(self, commands: list[list[str]]) -> None:
        """Run ``commands`` (CLI words after ``medstyle``) one after the other."""
        if self.running:
            raise RuntimeError("a command is still running")
        self._queue = [list(c) for c in commands]
        self._stopping = False
        self._next()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the running command's processes; SIGKILL after ``grace_s``."""
        if self._process is None:
            return
        self._stopping = True
        self._queue.clear()
        self._signal(signal.SIGTERM if hasattr(signal, "SIGTERM") else None)
        self._kill_timer.start(int(grace_s * 1000))

    def stop_now(self, grace_s: float = 3.0) -> None:
        """Stop and wait (the application is quitting): SIGTERM to the whole process
        group, SIGKILL after ``grace_s``, so no torchrun worker is left behind."""
        process = self._process
        if process is None:
            return
        self._stopping = True
        self._queue.clear()
        self._signal(signal.SIGTERM if hasattr(signal, "SIGTERM") else None)
        if not process.waitForFinished(int(grace_s * 1000)):
            self._signal(getattr(signal, "SIGKILL", None))
            process.waitForFinished(1000)

    # -- the process ----------------------------------------------------------------------

    def _next(self) -> None:
        words = self._queue.pop(0)
        program, *args = cli_command(words)
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")  # lines as they happen, not in 8 kB blocks
        env.insert("PYTHONIOENCODING", "utf-8")
        process.setProcessEnvironment(env)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        if hasattr(QProcess, "setUnixProcessParameters") and os.name == "posix":
            # its own session: Stop signals the whole group (torchrun and its workers)
            process.setUnixProcessParameters(QProcess.UnixProcessFlag.CreateNewSession)
        process.readyReadStandardOutput.connect(self._read)
        process.finished.connect(self._ended)
        process.errorOccurred.connect(self._error)
        self._process = process
        self._decoder.reset()
        self._partial = ""
        self.commandStarted.emit(shell_line(words))
        process.start(program, args)

    def _read(self) -> None:
        if self._process is None:
            return
        text = self._decoder.decode(bytes(self._process.readAllStandardOutput()))
        self._feed(text)

    def _feed(self, text: str) -> None:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            line = line.rstrip("\r").rsplit("\r", 1)[-1]  # a bar's final state, not its history
            if line.strip():
                self.lineReceived.emit(line)
        if self._partial:
            current = self._partial.rstrip("\r").rsplit("\r", 1)[-1]
            if current.strip():
                self.progressText.emit(current.strip())

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self._process is not None:
            self.lineReceived.emit(f"could not start {self._process.program()}")
            self._finish(127, "failed")

    def _ended(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read()
        self._feed(self._decoder.decode(b"", final=True) + "\n")
        crashed = status == QProcess.ExitStatus.CrashExit
        if self._stopping:
            self._finish(code, "stopped")
        elif crashed or code != 0:
            self._finish(code if not crashed else -1, "failed")
        elif self._queue:
            self._drop_process()
            self._next()
        else:
            self._finish(0, "done")

    def _finish(self, code: int, how: str) -> None:
        self._kill_timer.stop()
        self._queue.clear()
        self._drop_process()
        self.finished.emit(code, how)

    def _drop_process(self) -> None:
        if self._process is not None:
            self._process.deleteLater()
            self._process = None

    def _kill(self) -> None:
        if self._process is not None:
            self.lineReceived.emit(f"still running after {STOP_GRACE_S:g} s: killing it")
            self._signal(getattr(signal, "SIGKILL", None))

    def _signal(self, sig: int | None) -> None:
        """Send ``sig`` to the command's process group (Unix), else QProcess's own."""
        process = self._process
        if process is None:
            return
        pid = int(process.processId())
        if sig is not None and pid > 0 and hasattr(os, "killpg"):
            try:
                os.killpg(pid, sig)
                return
            except (ProcessLookupError, PermissionError):
                pass  # already gone, or not our group: fall back to the one process
        if sig == getattr(signal, "SIGKILL", None):
            process.kill()
        else:
            process.terminate()


class RunWatcher(QObject):
    """Follows a run folder: ``updated()`` when log records arrived (``record(dict)`` for
    each one not seen before), ``sampleChanged(str)`` when a newer sample grid appeared."""

    updated = Signal()
    record = Signal(object)  # a log record (dict)
    sampleChanged = Signal(str)

    def __init__(self, folder: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.log = RunLog(folder)
        self._sample: Path | None = None
        self._seen: set[tuple[str, int]] = set()  # a replaced log is read again: no repeats
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)

    def start(self) -> None:
        self.poll()
        self._timer.start()

    def stop(self) -> None:
        """Stop polling (after one last look, so the final records show)."""
        self._timer.stop()
        self.poll()

    def poll(self) -> None:
        if self.log.poll():
            for r in self.log.fresh:
                key = (str(r.get("event")), int(r.get("images_seen", 0)))
                if key not in self._seen:
                    self._seen.add(key)
                    self.record.emit(r)
            self.updated.emit()
        sample = self.log.newest_sample()
        if sample is not None and sample != self._sample:
            self._sample = sample
            self.sampleChanged.emit(str(sample))
