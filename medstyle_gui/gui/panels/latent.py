"""Latent panel: one slider per direction of the model, truncation, reset, seeds and a walk.

Each slider moves the current latent along one learned direction (Fetty et al. 2020,
eq. 3) by alpha normal units. Ranges and labels mean something: the slice slider is in
mm from the direction's calibration ("+12 mm superior, slice 14"), the others say which
class the moved latent reads as ("CT, 97 %"). Their range is a few standard deviations
of where random latents lie along the direction, worked out on a worker when a model
is opened. "Walk" swings the last slider touched back and forth with a timer.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from medstyle_gui.core import explore, sweeps
from medstyle_gui.gui.panels._background import GREY, BipolarSlider, LatestJob

if TYPE_CHECKING:
    from medstyle_gui.core.model import Model
    from medstyle_gui.gui.state import AppState

#: Slider positions either side of 0 (QSlider holds integers).
STEPS = 500
#: Walk: timer interval (ms) and positions moved per tick (a full swing in about 4 s).
WALK_INTERVAL_MS = 40
WALK_STEP = 20
#: Friendly names of the built-in directions.
TITLES = {"modality": "Modality", "sex": "Sex", "slice": "Slice position"}


@dataclass
class Scale:
    """How one slider maps to alpha and how its value reads."""

    name: str
    half_range: float  # alpha at the slider's ends (normal units)
    units_per_mm: float | None = None  # slice directions with a calibration in mm
    units_per_slice: float | None = None
    is_slice: bool = False

    def alpha(self, position: int) -> float:
        return self.half_range * position / STEPS

    def position(self, alpha: float) -> int:
        if self.half_range <= 0 or not math.isfinite(alpha):
            return 0
        return round(max(-STEPS, min(STEPS, STEPS * alpha / self.half_range)))


def title(model: Model, name: str) -> str:
    """``"Modality"``, ``"Modality (slice kept)"``, or the name of a custom direction."""
    direction = model.directions[name]
    base = TITLES.get(name.split("|")[0], name.split("|")[0].replace("_", " ").capitalize())
    if direction.conditioned_on:
        base += f" ({', '.join(direction.conditioned_on)} kept)"
    return base


def slice_text(mm: float | None, slices: float | None, index: int | None = None) -> str:
    """``"+12 mm superior (slice 14)"`` / ``"0 mm"``: the slice slider's value in words."""
    if mm is None:
        if slices is None:
            return ""
        return f"{slices:+.1f} slices"
    text = "0 mm" if abs(mm) < 0.5 else f"{mm:+.0f} mm {'superior' if mm > 0 else 'inferior'}"
    if index is not None and slices is not None:
        text += f" → slice {index + round(slices)}"
    return text


def make_scales(model: Model, num_slices: int | None) -> dict[str, Scale]:
    """A scale per direction (slow part, on a worker: random latents are mapped)."""
    out = {}
    for name, direction in model.directions.items():
        is_slice = explore.is_slice_direction(direction)
        out[name] = Scale(
            name,
            sweeps.slider_half_range(model, name, num_slices),
            sweeps.slice_units_per_mm(model, name) if is_slice else None,
            explore.units_per_slice(model, name) if is_slice else None,
            is_slice,
        )
    return out


class DirectionRow:
    """The widgets of one direction, on two lines of the grid: the title with the value
    in words, then the low class, the slider and the high class (narrow enough for a dock)."""

    def __init__(self, model: Model, scale: Scale, grid: QGridLayout, row: int) -> None:
        direction = model.directions[scale.name]
        self.scale = scale
        self.title = QLabel(title(model, scale.name))
        self.title.setStyleSheet("font-weight: bold;")
        self.title.setToolTip(
            f"Direction {scale.name!r}: {direction.classes[0]} ↔ {direction.classes[1]} "
            f"({direction.kind}); the slider's ends are ±{scale.half_range:.3g} normal units"
        )
        self.low = QLabel(direction.classes[0])
        self.high = QLabel(direction.classes[1])
        for label in (self.low, self.high):
            label.setStyleSheet(f"color: {GREY};")
        self.slider = BipolarSlider()
        self.slider.setRange(-STEPS, STEPS)
        self.slider.setPageStep(STEPS // 10)
        self.slider.setMinimumWidth(120)
        self.slider.setToolTip(self.title.toolTip())
        self.value = QLabel("0")
        self.value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.header = QWidget()
        line = QHBoxLayout(self.header)
        line.setContentsMargins(0, 6, 0, 0)
        line.addWidget(self.title)
        line.addStretch(1)
        line.addWidget(self.value)
        grid.addWidget(self.header, 2 * row, 0, 1, 3)
        grid.addWidget(self.low, 2 * row + 1, 0, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.slider, 2 * row + 1, 1)
        grid.addWidget(self.high, 2 * row + 1, 2)

    def widgets(self) -> list[QWidget]:
        return [self.header, self.low, self.slider, self.high]


class LatentPanel(QWidget):
    """Sliders for the model's directions and tau; reset, random seed, walk.

    ``currentChanged(name)``: the slider touched last (the one "Walk" moves).
    """

    currentChanged = Signal(str)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.rows: dict[str, DirectionRow] = {}
        self.scales: dict[str, Scale] = {}
        self.current: str | None = None
        self._walk_dir = 1
        self.job = LatestJob(lambda: state.tasks, "slider ranges", self, disposable=True)

        self.grid = QGridLayout()
        self.grid.setColumnStretch(1, 1)
        self.grid.setVerticalSpacing(2)
        self.placeholder = QLabel("Open a model to get its direction sliders.")
        self.tau = QSlider(Qt.Orientation.Horizontal)
        self.tau.setRange(0, 100)
        self.tau.setValue(100)
        self.tau.setToolTip(
            "Truncation τ pulls the latent toward the average image: 1 leaves it, 0 gives "
            "the average"
        )
        self.tau_value = QLabel("1.00 (none)")
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("All sliders to 0 and τ to 1 (Ctrl+0)")
        self.reset_button.setShortcut("Ctrl+0")
        self.walk_button = QPushButton("Walk")
        self.walk_button.setCheckable(True)
        self.walk_button.setToolTip("Swing the last slider you touched back and forth")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setPrefix("seed ")
        self.random_button = QPushButton("Random")
        self.random_button.setToolTip("Draw a new random latent (shown when no scan is open)")
        self.walk_timer = QTimer(self)
        self.walk_timer.setInterval(WALK_INTERVAL_MS)

        tau_grid = QGridLayout()
        tau_grid.setColumnStretch(1, 1)
        tau_grid.setVerticalSpacing(2)
        tau_label = QLabel("Truncation τ")
        tau_label.setStyleSheet("font-weight: bold;")
        tau_label.setToolTip(self.tau.toolTip())
        self.tau_value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        tau_grid.addWidget(tau_label, 0, 0, 1, 2)
        tau_grid.addWidget(self.tau_value, 0, 1, 1, 2)
        for col, text in ((0, "average"), (2, "none")):
            end = QLabel(text)
            end.setStyleSheet(f"color: {GREY};")
            tau_grid.addWidget(
                end, 1, col, Qt.AlignmentFlag.AlignRight if col == 0 else Qt.AlignmentFlag.AlignLeft
            )
        tau_grid.addWidget(self.tau, 1, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.reset_button)
        buttons.addWidget(self.walk_button)
        buttons.addStretch(1)
        seeds = QHBoxLayout()
        seed_label = QLabel("Random latent")
        seed_label.setToolTip(self.random_button.toolTip())
        seeds.addWidget(seed_label)
        seeds.addStretch(1)
        seeds.addWidget(self.seed)
        seeds.addWidget(self.random_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.placeholder)
        layout.addLayout(self.grid)
        layout.addSpacing(6)
        layout.addLayout(tau_grid)
        layout.addSpacing(6)
        layout.addLayout(buttons)
        layout.addLayout(seeds)
        layout.addStretch(1)

        self.tau.valueChanged.connect(lambda v: self.state.set_tau(v / 100.0))
        self.reset_button.clicked.connect(self.reset)
        self.walk_button.toggled.connect(self.walk)
        self.walk_timer.timeout.connect(self._walk_tick)
        self.random_button.clicked.connect(self.random_seed)
        self.seed.editingFinished.connect(lambda: self.state.sample_seed(self.seed.value()))
        state.modelChanged.connect(self.rebuild)
        state.scanChanged.connect(self.rebuild)
        state.controlsChanged.connect(self.sync)
        state.sliceChanged.connect(lambda _: self._update_labels())
        state.rendered.connect(lambda _: self._update_labels())
        self.rebuild()

    # -- building ----------------------------------------------------------------------------

    def rebuild(self) -> None:
        """Make the rows for the state's model; ranges are worked out on a worker (the old
        rows stay until the new ones are ready, so opening a scan does not flicker)."""
        self.walk(False)
        model = self.state.model
        if model is None or not model.directions:
            self.job.invalidate()
            self._clear_rows()
            self.placeholder.setText(
                "Open a model to get its direction sliders."
                if model is None
                else "This model has no directions; fit them to get sliders."
            )
            self.placeholder.setVisible(True)
            return
        if not self.rows:
            self.placeholder.setText("Working out the slider ranges…")
            self.placeholder.setVisible(True)
        source = self.state.explore.source
        n = None if source is None else source.num_slices
        self.job.run(
            lambda progress, cancel: make_scales(model, n),
            lambda scales: self._build(model, scales),
            on_failed=self.state.report_error,
        )

    def _clear_rows(self) -> None:
        for row in self.rows.values():
            for widget in row.widgets():
                self.grid.removeWidget(widget)
                widget.deleteLater()
        self.rows, self.scales = {}, {}

    def _build(self, model: Model, scales: dict[str, Scale]) -> None:
        if model is not self.state.model:
            return
        self._clear_rows()
        self.placeholder.setVisible(False)
        self.scales = scales
        # modality first, then sex, slice, then the rest by name: the paper's order
        order = [n for n in TITLES if n in scales] + sorted(n for n in scales if n not in TITLES)
        for r, name in enumerate(order):
            row = DirectionRow(model, scales[name], self.grid, r)
            row.slider.valueChanged.connect(lambda v, n=name: self._moved(n, v))
            row.slider.sliderPressed.connect(lambda n=name: self._touch(n))
            self.rows[name] = row
        if self.current not in self.rows:
            self.current = order[0] if order else None
        self.sync()

    # -- user actions ------------------------------------------------------------------------

    def _touch(self, name: str) -> None:
        if name != self.current:
            self.current = name
            self.currentChanged.emit(name)

    def _moved(self, name: str, position: int) -> None:
        self._touch(name)
        self.state.set_move(name, self.scales[name].alpha(position))
        self._update_labels()

    def set_alpha(self, name: str, alpha: float) -> None:
        """Move slider ``name`` to ``alpha`` (normal units, rounded to a slider step)."""
        self.rows[name].slider.setValue(self.scales[name].position(alpha))

    def reset(self) -> None:
        """Every slider to 0, τ to 1."""
        self.walk(False)
        self.state.reset_moves()

    def random_seed(self) -> None:
        """Draw a new seed and show its latent."""
        seed = random.randrange(2**31 - 1)
        self.seed.blockSignals(True)
        self.seed.setValue(seed)
        self.seed.blockSignals(False)
        self.state.sample_seed(seed)

    def walk(self, on: bool) -> None:
        """Start or stop swinging the current slider between its ends."""
        on = bool(on) and self.current in self.rows
        if self.walk_button.isChecked() != on:
            self.walk_button.blockSignals(True)
            self.walk_button.setChecked(on)
            self.walk_button.blockSignals(False)
        self.walk_button.setText("Stop walk" if on else "Walk")
        if on:
            self.walk_timer.start()
        else:
            self.walk_timer.stop()

    def _walk_tick(self) -> None:
        row = self.rows.get(self.current or "")
        if row is None:
            self.walk(False)
            return
        value = row.slider.value() + self._walk_dir * WALK_STEP
        if abs(value) >= STEPS:
            value = max(-STEPS, min(STEPS, value))
            self._walk_dir = -self._walk_dir
        row.slider.setValue(value)

    # -- from the state ----------------------------------------------------------------------

    def sync(self) -> None:
        """Put the sliders where the state's moves and τ are, without echoing back."""
        moves = self.state.explore.moves
        for name, row in self.rows.items():
            row.slider.blockSignals(True)
            row.slider.setValue(self.scales[name].position(moves.get(name, 0.0)))
            row.slider.blockSignals(False)
        self.tau.blockSignals(True)
        self.tau.setValue(round(100 * self.state.explore.tau))
        self.tau.blockSignals(False)
        has_scan = self.state.explore.source is not None
        for widget in (self.seed, self.random_button):
            widget.setEnabled(self.state.model is not None and not has_scan)
        self.seed.blockSignals(True)
        self.seed.setValue(self.state.explore.seed)
        self.seed.blockSignals(False)
        self._update_labels()

    def _update_labels(self) -> None:
        tau = self.state.explore.tau
        self.tau_value.setText(f"{tau:.2f}" + (" (none)" if tau >= 1.0 else ""))
        model = self.state.model
        if model is None:
            return
        moves = self.state.explore.moves
        w_final = self._final_w()
        source = self.state.explore.source
        for name, row in self.rows.items():
            scale = self.scales[name]
            alpha = moves.get(name, 0.0)
            if scale.is_slice and scale.units_per_slice:
                mm = alpha / scale.units_per_mm if scale.units_per_mm else None
                index = self.state.explore.index if source is not None else None
                row.value.setText(slice_text(mm, alpha / scale.units_per_slice, index))
            else:
                row.value.setText(f"α {alpha:+.2f}" + self._reads_as(model, name, w_final))

    def _final_w(self) -> Any:
        result = self.state.last_result
        return None if result is None else result.w_final

    @staticmethod
    def _reads_as(model: Model, name: str, w_final: Any) -> str:
        """``"  → CT 97 %"``: which class the last rendered latent falls in, and how sure."""
        if w_final is None:
            return ""
        label, sure = explore.reading(model.directions[name], w_final)
        return f"  → {label} {100 * sure:.0f} %"
