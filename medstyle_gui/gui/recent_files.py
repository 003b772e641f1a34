"""The File > Recent files menu: the last files opened, remembered in QSettings.

An entry is ``"kind|path"`` with kind scan, pair, model or session (a pair's path is
``"ct::mr"``); the window decides what opening an entry means.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

#: Recent files remembered (newest first).
RECENT_MAX = 10
#: The QSettings key of the list.
SETTINGS_KEY = "recent"


class RecentFiles:
    """Keeps the list in ``settings`` and ``menu`` in step with it; choosing an entry calls
    ``open_entry(entry)``."""

    def __init__(self, menu: QMenu, settings: QSettings, open_entry: Callable[[str], None]) -> None:
        self.menu = menu
        self.settings = settings
        self.open_entry = open_entry
        self._fill_menu()

    def entries(self) -> list[str]:
        """The remembered entries, newest first."""
        value = self.settings.value(SETTINGS_KEY, [])
        if isinstance(value, str):  # QSettings gives a one-element list back as a string
            value = [value]
        return [str(v) for v in (value or [])]

    def add(self, entry: str) -> None:
        """Put ``entry`` first (once), keeping at most :data:`RECENT_MAX`."""
        rest = [e for e in self.entries() if e != entry]
        self.settings.setValue(SETTINGS_KEY, [entry, *rest][:RECENT_MAX])
        self._fill_menu()

    def clear(self) -> None:
        self.settings.setValue(SETTINGS_KEY, [])
        self._fill_menu()

    def _fill_menu(self) -> None:
        self.menu.clear()
        entries = self.entries()
        for entry in entries:
            kind, _, path = entry.partition("|")
            action = QAction(f"{kind}: {path.replace('::', ' + ')}", self.menu)
            action.triggered.connect(lambda *_, e=entry: self.open_entry(e))
            self.menu.addAction(action)
        if entries:
            self.menu.addSeparator()
            clear = QAction("Clear", self.menu)
            clear.triggered.connect(lambda *_: self.clear())
            self.menu.addAction(clear)
        self.menu.setEnabled(bool(entries))
