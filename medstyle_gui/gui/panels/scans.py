"""Scans panel: open a scan (file, folder, DICOM series, paired CT + MR study), step
through its slices, and choose the display window.

Opening runs on the state's worker (reading, resampling to the model matrix,
encoding); the slider and spin box step slices (also the wheel and keys over the
images); the window combo holds the presets from ``resources/presets`` (in HU, for
CT) and "Auto" (percentiles of the scan's body values, the default for MR). The
window is a display setting: changing it never re-renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from medstyle_gui.core import windowing as wl
from medstyle_gui.gui.panels.dicom_browser import DicomBrowser

if TYPE_CHECKING:
    from medstyle_gui.gui.state import AppState

#: File dialog filter for scans.
SCAN_FILTER = (
    "Scans (*.nii *.nii.gz *.mha *.mhd *.nrrd *.nhdr *.h5 *.hdf5 *.dcm *.DCM *.ima *.IMA);;"
    "All files (*)"
)
AUTO = "Auto"
CUSTOM = "Custom"


def _icon(name: str):
    """A qtawesome icon, or an empty one when the icon font is unavailable."""
    from PySide6.QtGui import QIcon

    try:
        import qtawesome as qta

        return qta.icon(name)
    except Exception:  # icons are a nicety
        return QIcon()


class ScansPanel(QWidget):
    """Open scans, step slices, choose the window; talks only to ``state``'s setters."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.presets = wl.load_presets()
        self._browser: DicomBrowser | None = None
        self._auto_cache: tuple[object, tuple[float, float]] | None = None

        # -- opening
        self.open_file_button = _button("Open file\u2026", "fa5s.file-medical", self.open_file)
        self.open_file_button.setToolTip("Open a NIfTI, MHA, NRRD, HDF5 or DICOM file")
        self.open_folder_button = _button(
            "DICOM folder\u2026", "fa5s.folder-open", self.open_folder
        )
        self.open_folder_button.setToolTip(
            "Open a folder of DICOM files; with several series the DICOM browser lets you choose"
        )
        self.pair_button = QToolButton()
        self.pair_button.setText("Paired study")
        self.pair_button.setIcon(_icon("fa5s.link"))
        self.pair_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.pair_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.pair_button.setToolTip(
            "A CT and an MR of one patient: the CT is registered to the MR (rigid, after N4)"
        )
        menu = QMenu(self.pair_button)
        menu.addAction("CT and MR scans\u2026", self.open_pair_dialog)
        menu.addAction("Study folder\u2026", self.open_study_folder)
        self.pair_button.setMenu(menu)
        buttons = QHBoxLayout()
        for b in (self.open_file_button, self.open_folder_button, self.pair_button):
            buttons.addWidget(b)
        buttons.addStretch(1)

        self.scan_label = QLabel("No scan open")
        self.scan_label.setWordWrap(True)
        self.scan_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # -- slices
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Slice (also: wheel, Up/Down, PageUp/PageDown over the images)")
        self.slider.valueChanged.connect(self.state.set_slice)
        self.spin = QSpinBox()
        # 0-based like every other slice number in the app (the paper's slice index)
        self.spin.setToolTip("Slice index: 0 is the most inferior slice")
        self.spin.valueChanged.connect(self.state.set_slice)
        self.position_label = QLabel("")
        self.position_label.setMinimumWidth(90)

        # -- window
        self.preset_combo = QComboBox()
        self.preset_combo.addItem(AUTO)
        for name, window in self.presets.items():
            self.preset_combo.addItem(f"{name.capitalize()}  ({window.label()})", name)
        self.preset_combo.addItem(CUSTOM)
        self.preset_combo.setToolTip(
            "Window/level presets in HU (for CT); Auto spans the 1st to 99.5th percentile of "
            "the scan's body values (MR). Right-drag on an image to window by hand."
        )
        self.preset_combo.activated.connect(self._on_preset)
        self.width_spin = _window_spin("Window width (native units)", 1.0)
        self.level_spin = _window_spin("Window level / centre (native units)", -1e5)
        self.width_spin.editingFinished.connect(self._on_spins)
        self.level_spin.editingFinished.connect(self._on_spins)
        self.auto_button = _button("Auto", "fa5s.magic", self.auto_window)
        self.auto_button.setToolTip("Window from the scan's intensities (MR auto window)")

        grid = QGridLayout()
        grid.addWidget(QLabel("Slice"), 0, 0)
        grid.addWidget(self.slider, 0, 1, 1, 3)
        grid.addWidget(self.spin, 0, 4)
        grid.addWidget(self.position_label, 1, 1, 1, 4)
        grid.addWidget(QLabel("Window"), 2, 0)
        grid.addWidget(self.preset_combo, 2, 1, 1, 3)
        grid.addWidget(self.auto_button, 2, 4)
        grid.addWidget(QLabel("W"), 3, 0, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.width_spin, 3, 1)
        grid.addWidget(QLabel("L"), 3, 2, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.level_spin, 3, 3)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)

        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.scan_label)
        layout.addLayout(grid)
        layout.addStretch(1)

        state.scanChanged.connect(self._on_scan)
        state.sliceChanged.connect(self._on_slice)
        state.windowChanged.connect(self._on_window)
        state.modelChanged.connect(self._on_scan)
        self._on_scan()

    # -- opening ------------------------------------------------------------------------

    def open_path(self, path: str | Path, series_uid: str | None = None):
        """Open a scan file or DICOM folder (a folder with several series: the browser)."""
        path = Path(path)
        if path.is_dir() and series_uid is None:
            if _is_study_folder(path):
                return self.open_pair(path)
            return self.browse_dicom(path, open_single=True)
        return self.state.open_scan(path, series_uid)

    def open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open scan", "", SCAN_FILTER)
        if path:
            self.open_path(path)

    def open_folder(self) -> None:
        """Ask for a DICOM folder: one image series opens at once, several are listed in
        the DICOM browser (File > Open DICOM folder calls this too)."""
        folder = QFileDialog.getExistingDirectory(self, "Open DICOM folder")
        if folder:
            self.open_path(folder)

    open_dicom_browser = open_folder

    def browse_dicom(self, folder: str | Path | None = None, open_single: bool = False):
        """The DICOM browser on ``folder`` (returned). With ``open_single`` it is shown
        only when the folder holds more than one image series (or none, to say so);
        a single series opens at once."""
        browser = DicomBrowser(None, self, runner=self.state.tasks)
        browser.seriesChosen.connect(lambda f, uid: self.state.open_scan(f, uid))
        self._browser = browser
        if open_single and folder is not None:
            browser.indexed.connect(lambda _n: self._after_index(browser))
        else:
            browser.show()
        if folder is not None:
            browser.load(folder)
        return browser

    def open_pair(self, ct_path: str | Path, mr_path: str | Path | None = None):
        """Open a paired study: a CT and an MR, or one study folder (``mr_path`` None)."""
        return self.state.open_pair(ct_path, mr_path)

    def open_pair_dialog(self) -> None:
        ct, _ = QFileDialog.getOpenFileName(self, "Paired study: the CT", "", SCAN_FILTER)
        if not ct:
            return
        mr, _ = QFileDialog.getOpenFileName(self, "Paired study: the MR", "", SCAN_FILTER)
        if mr:
            self.open_pair(ct, mr)

    def open_study_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Paired study folder (CT + MR)")
        if folder:
            self.open_pair(folder)

    # -- window -------------------------------------------------------------------------

    def apply_preset(self, name: str) -> None:
        """Use the preset ``name`` (e.g. "soft tissue") or ``"Auto"``."""
        if name == AUTO:
            self.auto_window()
            return
        preset = self.presets[name]
        self.state.set_window(preset.level, preset.width)

    def auto_window(self) -> None:
        """Window from the percentiles of the scan's body values (MR auto window)."""
        auto = self._auto()
        if auto is not None:
            self.state.set_window(*auto)

    # -- state -> widgets -----------------------------------------------------------------

    def _on_scan(self) -> None:
        source = self.state.explore.source
        enabled = source is not None
        for w in (self.slider, self.spin, self.preset_combo, self.width_spin, self.level_spin):
            w.setEnabled(enabled)
        self.auto_button.setEnabled(enabled)
        if source is None:
            self.scan_label.setText(
                "No scan open" if self.state.model is not None else "Open a model first"
            )
            self.position_label.setText("")
            return
        n = source.num_slices
        with QSignalBlocker(self.slider), QSignalBlocker(self.spin):
            self.slider.setRange(0, n - 1)
            self.spin.setRange(0, n - 1)
            self.spin.setSuffix(f" / {n - 1}")
        self.scan_label.setText(_describe(self.state))
        self._on_slice(self.state.explore.index)
        if self.state.explore.window is None:
            # a new scan opens in its modality's usual window
            if source.modality == "CT":
                self.apply_preset(wl.DEFAULT_CT_PRESET)
            else:
                self.auto_window()

    def _on_slice(self, index: int) -> None:
        source = self.state.explore.source
        with QSignalBlocker(self.slider), QSignalBlocker(self.spin):
            self.slider.setValue(index)
            self.spin.setValue(index)
        if source is not None:
            z = float(source.volume.slice_positions_mm[index])
            self.position_label.setText(f"z {z:.1f} mm")

    def _on_window(self) -> None:
        window = self.state.explore.window
        if window is None:
            return
        level, width = window
        with QSignalBlocker(self.width_spin), QSignalBlocker(self.level_spin):
            self.width_spin.setValue(width)
            self.level_spin.setValue(level)
        with QSignalBlocker(self.preset_combo):
            self.preset_combo.setCurrentIndex(self.preset_combo.findText(self._window_name()))

    def _window_name(self) -> str:
        """The combo entry that names the current window: a preset, Auto or Custom."""
        window = self.state.explore.window
        if window is None:
            return CUSTOM
        for i in range(self.preset_combo.count()):
            name = self.preset_combo.itemData(i)
            if name in self.presets:
                preset = self.presets[name]
                if _close((preset.level, preset.width), window):
                    return self.preset_combo.itemText(i)
        auto = self._auto()
        return AUTO if auto is not None and _close(auto, window) else CUSTOM

    def _auto(self) -> tuple[float, float] | None:
        """The scan's auto window, computed once per scan (windowing while dragging
        asks for it at every mouse move)."""
        source = self.state.explore.source
        if source is None:
            return None
        if self._auto_cache is None or self._auto_cache[0] is not source:
            self._auto_cache = (source, wl.auto_window(source.volume.array))
        return self._auto_cache[1]

    # -- widgets -> state -------------------------------------------------------------------

    def _on_preset(self, row: int) -> None:
        text = self.preset_combo.itemText(row)
        if text == AUTO:
            self.auto_window()
        elif text != CUSTOM:
            self.apply_preset(self.preset_combo.itemData(row))

    def _on_spins(self) -> None:
        if self.state.explore.source is not None:
            self.state.set_window(self.level_spin.value(), self.width_spin.value())

    def _after_index(self, browser: DicomBrowser) -> None:
        images = [e for e in browser.series_entries() if e.openable]
        if len(images) == 1 and not browser.isVisible():
            # the only image series: open the folder as it is (no UID to remember)
            self.state.open_scan(images[0].folder)
            browser.close()
        else:
            browser.show()


def _describe(state: AppState) -> str:
    """``name: CT, 20 slices, 0.98 x 0.98 x 2.0 mm (shown on 128 px)``."""
    source = state.explore.source
    assert source is not None
    volume = source.volume
    dz, dy, dx = volume.spacing_mm
    text = (
        f"<b>{Path(source.path).name}</b>: {source.modality}, {source.num_slices} slices, "
        f"{dx:.2f} \u00d7 {dy:.2f} \u00d7 {dz:.1f} mm on the model's "
        f"{volume.shape[2]} px matrix"
    )
    paired = state.explore.paired
    if paired is not None:
        text += f"<br>paired with <b>{Path(paired.path).name}</b> ({paired.modality})"
    return text


def _close(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(abs(x - y) <= 1e-6 * max(1.0, abs(y)) for x, y in zip(a, b, strict=True))


def _is_study_folder(path: Path) -> bool:
    return (path / "study.json").is_file()


def _button(text: str, icon: str, slot) -> QPushButton:
    button = QPushButton(_icon(icon), text)
    button.clicked.connect(slot)
    return button


def _window_spin(tip: str, minimum: float) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(minimum, 1e5)
    spin.setDecimals(0)
    spin.setKeyboardTracking(False)
    spin.setToolTip(tip)
    return spin
