"""The project's one exception family.

Every failure a user can cause (a bad file, a bad option, a target that already
exists) raises a subclass of :class:`MedstyleError` whose message names the file and
the problem in plain words. The command line prints that one line and exits
non-zero; the GUI shows it in a dialog. Anything else that escapes is a bug.
"""

from __future__ import annotations

from os import PathLike


class MedstyleError(Exception):
    """A user-facing failure. ``str(err)`` is the one line to show."""

    def __init__(self, reason: str, path: str | PathLike[str] | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class ScanReadError(MedstyleError):
    """A scan could not be read: missing, empty, truncated, unknown format."""


class InvalidScanError(MedstyleError):
    """A scan was read but is not something we can use (4-D, RGB, NaN, gaps, tilt...)."""


class ScanWriteError(MedstyleError):
    """An output could not be written (exists, unknown format, disk error)."""


class RegistrationError(MedstyleError):
    """CT-to-MR registration or resampling failed."""


class DatasetError(MedstyleError):
    """An HDF5 slice dataset could not be built or read."""


class ConfigError(MedstyleError):
    """An option or configuration value is out of range."""
