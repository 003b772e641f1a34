"""Mixing panel: take some resolution layers' styles from a second latent (style mixing).

The second style comes from the paired slice of the other modality (the paper's modality
translation by style transfer), another embedded slice of this scan, or a random seed.
Each resolution layer of the model is a checkbox; presets tick the coarse (4-8 px),
middle (16-32 px) or fine (64 px and up) layers, as Karras et al. and Cohen et al. group
them. Below, a bar chart of this slice's error when the second style is injected at each
layer in turn (the paper's style-transfer table, for this slice), computed on a worker.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from medstyle_gui.core import explore, sweeps
from medstyle_gui.core.latent import PRESETS, layer_names, mask_layer_names, parse_layers
from medstyle_gui.gui.panels._background import BLUE, GREY, ORANGE, LatestJob, plot_widget
from trainer.errors import MedstyleError

if TYPE_CHECKING:
    from medstyle_gui.gui.state import AppState

#: Preset buttons: (text, preset name in core.latent.PRESETS, tooltip).
PRESET_BUTTONS = (
    ("Coarse 4–8", "coarse", "4×4 and 8×8: position, outline and size"),
    ("Middle 16–32", "middle", "16×16 and 32×32: anatomy and tissue layout"),
    ("Fine 64+", "fine", "64×64 and finer: texture, contrast and noise"),
)
#: Injection modes of the bar chart, as in core.evaluate.style_transfer.
MODES = (("this layer only", "only"), ("this layer and finer", "from"))


def layer_label(name: str) -> str:
    """``"16x16"`` -> ``"16×16"`` (what a user reads)."""
    return name.replace("x", "×")


def preset_layers(cfg, preset: str) -> list[str]:
    """The model's layers in a preset (empty when the model has none, e.g. "fine" at 32 px)."""
    return mask_layer_names(cfg, parse_layers(cfg, preset))


class MixingPanel(QWidget):
    """Second style source, layer checkboxes with presets, error-per-layer bar chart."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.boxes: dict[str, QCheckBox] = {}
        self.curve: sweeps.ErrorCurve | None = None  # the bar chart's numbers
        self.job = LatestJob(lambda: state.tasks, "error per layer", self, disposable=True)
        self._key: tuple | None = None

        # -- where the second style comes from
        self.sources = QButtonGroup(self)
        self.paired_radio = QRadioButton("Paired slice (other modality)")
        self.slice_radio = QRadioButton("Another slice of this scan:")
        self.seed_radio = QRadioButton("Random seed:")
        for i, button in enumerate((self.paired_radio, self.slice_radio, self.seed_radio)):
            self.sources.addButton(button, i)
        self.mix_slice = QSpinBox()
        self.mix_slice.setPrefix("slice ")
        self.mix_seed = QSpinBox()
        self.mix_seed.setRange(0, 2**31 - 1)
        self.source_note = QLabel()
        self.source_note.setWordWrap(True)
        self.source_note.setStyleSheet(f"color: {GREY};")
        source_grid = QGridLayout()
        source_grid.addWidget(self.paired_radio, 0, 0, 1, 2)
        source_grid.addWidget(self.slice_radio, 1, 0)
        source_grid.addWidget(self.mix_slice, 1, 1)
        source_grid.addWidget(self.seed_radio, 2, 0)
        source_grid.addWidget(self.mix_seed, 2, 1)
        source_grid.setColumnStretch(2, 1)

        # -- layers
        self.layer_row = QHBoxLayout()
        self.preset_buttons: dict[str, QPushButton] = {}
        presets = QHBoxLayout()
        for text, name, tip in PRESET_BUTTONS:
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, n=name: self.apply_preset(n))
            self.preset_buttons[name] = button
            presets.addWidget(button)
        self.none_button = QPushButton("None")
        self.none_button.setToolTip("Untick every layer: the source's own styles")
        self.none_button.clicked.connect(lambda: self.set_layers([]))
        presets.addWidget(self.none_button)
        presets.addStretch(1)

        # -- bar chart
        self.mode = QComboBox()
        for text, key in MODES:
            self.mode.addItem(text, key)
        self.mode.setToolTip(
            "Inject the second style at each layer alone, or from that layer to the finest "
            "(the paper's crossover)"
        )
        self.plot = plot_widget("layer that takes the second style", "error")
        self.plot.setToolTip("Click a bar to tick just that layer")
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush=BLUE)
        self.plot.addItem(self.bars)
        self.plot.addLegend(offset=(-5, 5), labelTextColor=GREY)
        self.reference = self.plot.plot(
            [], [], pen=pg.mkPen(GREY, width=1.5, style=Qt.PenStyle.DashLine), name="no mixing"
        )
        self.values: list[pg.TextItem] = []  # each bar's number above it
        self.plot.scene().sigMouseClicked.connect(self._clicked)
        self.chart_note = QLabel()
        self.chart_note.setWordWrap(True)

        layout = QVBoxLayout(self)
        title = QLabel("Second style from")
        title.setStyleSheet("font-weight: bold;")
        layout.addWidget(title)
        layout.addLayout(source_grid)
        layout.addWidget(self.source_note)
        layers = QLabel("Layers that take the second style")
        layers.setStyleSheet("font-weight: bold;")
        layout.addWidget(layers)
        layout.addLayout(self.layer_row)
        layout.addLayout(presets)
        chart_row = QHBoxLayout()
        chart_title = QLabel("Error per injection layer")
        chart_title.setStyleSheet("font-weight: bold;")
        chart_row.addWidget(chart_title)
        chart_row.addStretch(1)
        chart_row.addWidget(self.mode)
        layout.addLayout(chart_row)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.chart_note)

        self.sources.idClicked.connect(self._source_chosen)
        self.mix_slice.valueChanged.connect(lambda v: self._source_chosen(1))
        self.mix_seed.valueChanged.connect(lambda v: self._source_chosen(2))
        self.mode.currentIndexChanged.connect(lambda _: self.schedule(force=True))
        state.modelChanged.connect(self.rebuild)
        state.scanChanged.connect(self.sync)
        state.sliceChanged.connect(lambda _: self.sync())
        state.latentsChanged.connect(lambda: self.schedule(force=True))
        state.controlsChanged.connect(self.sync)
        self.rebuild()

    # -- building ----------------------------------------------------------------------------

    def rebuild(self) -> None:
        """One checkbox per resolution layer of the state's model."""
        for box in self.boxes.values():
            self.layer_row.removeWidget(box)
            box.deleteLater()
        self.boxes = {}
        model = self.state.model
        if model is not None:
            for name in layer_names(model.config):
                box = QCheckBox(layer_label(name))
                box.setToolTip(f"The {layer_label(name)} block's two style inputs")
                box.toggled.connect(lambda _: self._layers_ticked())
                self.layer_row.addWidget(box)
                self.boxes[name] = box
            for name, button in self.preset_buttons.items():
                have = preset_layers(model.config, name)
                button.setEnabled(bool(have))
                low = PRESETS[name][0]
                if not have:
                    button.setToolTip(f"this {model.resolution} px model has no {low} px+ layers")
        self.layer_row.addStretch(1)
        self.sync()

    # -- user actions ------------------------------------------------------------------------

    def set_layers(self, names: list[str] | tuple[str, ...]) -> None:
        """Tick exactly ``names`` (the state is told once)."""
        for name, box in self.boxes.items():
            box.blockSignals(True)
            box.setChecked(name in names)
            box.blockSignals(False)
        self._layers_ticked()

    def apply_preset(self, preset: str) -> None:
        """Tick the model's layers of a preset ("coarse", "middle", "fine")."""
        model = self.state.model
        if model is not None:
            self.set_layers(preset_layers(model.config, preset))

    def ticked(self) -> list[str]:
        return [name for name, box in self.boxes.items() if box.isChecked()]

    def _layers_ticked(self) -> None:
        self.state.set_mix(layers=tuple(self.ticked()))

    def _source_chosen(self, which: int) -> None:
        source = explore.MIX_SOURCES[which]
        self.sources.button(which).setChecked(True)
        self.state.set_mix(source=source, slice=self.mix_slice.value(), seed=self.mix_seed.value())

    def _clicked(self, event) -> None:
        if self.curve is None or event.button() != Qt.MouseButton.LeftButton:
            return
        x = self.plot.getPlotItem().vb.mapSceneToView(event.scenePos()).x()
        k = round(x)
        if 0 <= k < len(self.curve.labels) and abs(x - k) <= 0.3:
            name = self.curve.labels[k]
            names = list(self.boxes)
            chosen = [name] if self.mode.currentData() == "only" else names[names.index(name) :]
            self.set_layers(chosen)

    # -- from the state ----------------------------------------------------------------------

    def state_layers(self) -> set[str]:
        """The model's layers the state's mix names (it may say "coarse" or "8-32")."""
        model = self.state.model
        if model is None or not self.state.explore.mix_layers:
            return set()
        try:
            mask = parse_layers(model.config, self.state.explore.mix_layers)
        except MedstyleError:
            return set()
        return set(mask_layer_names(model.config, mask))

    def sync(self) -> None:
        """Show the state's mix without echoing it back; recompute the chart if needed."""
        state, model = self.state.explore, self.state.model
        ticked = self.state_layers()
        for name, box in self.boxes.items():
            box.blockSignals(True)
            box.setChecked(name in ticked)
            box.blockSignals(False)
        which = explore.MIX_SOURCES.index(state.mix_source)
        self.sources.button(which).setChecked(True)
        n = 0 if state.source is None else state.source.num_slices
        for spin, value in ((self.mix_slice, state.mix_slice), (self.mix_seed, state.mix_seed)):
            spin.blockSignals(True)
            if spin is self.mix_slice:
                spin.setRange(0, max(n - 1, 0))
            spin.setValue(int(value or 0) if value is not None else state.index)
            spin.blockSignals(False)
        self.paired_radio.setEnabled(state.paired is not None)
        self.slice_radio.setEnabled(n > 0)
        self.mix_slice.setEnabled(n > 0)
        self.source_note.setText(self._note())
        self._highlight()
        if model is not None:
            self.schedule()

    def _note(self) -> str:
        state = self.state.explore
        if state.mix_source == "paired":
            if state.paired is None:
                return "No paired study is open: open one, or take another slice or a seed."
            refined = state.index in state.paired_latents
            how = "refined" if refined else "the encoder's guess (refine it in the Embed panel)"
            return f"Paired {state.paired.modality} slice {state.index}: {how}."
        if state.mix_source == "slice":
            if state.source is None:
                return "Open a scan to mix in another of its slices."
            i = state.mix_slice
            if i is None:
                return "Choose the slice whose style is mixed in."
            how = "refined" if i in state.latents else "the encoder's guess"
            return f"{state.source.modality} slice {i}: {how}."
        return f"The random latent of seed {state.mix_seed} (truncated to 0.7)."

    # -- the bar chart -----------------------------------------------------------------------

    def _chart_key(self) -> tuple:
        s = self.state.explore
        moves = tuple(sorted(s.moves.items()))
        return (
            id(self.state.model), id(s.source), id(s.paired), s.index, s.mix_source,
            s.mix_slice, s.mix_seed, moves, s.tau, self.mode.currentData(),
        )  # fmt: skip

    def schedule(self, force: bool = False) -> None:
        """Recompute the bar chart (after a short pause) when what it shows has changed."""
        key = self._chart_key()
        if key == self._key and not force:
            return
        self._key = key
        self.curve = None
        self.job.later(self._start)
        self.chart_note.setText("Working out the error per layer…")

    def _start(self) -> None:
        model = self.state.model
        if model is None:
            return
        snap = self.state.snapshot()
        mode = self.mode.currentData()
        truth, truth_modality, label = self._truth(snap)

        def work(progress, cancel) -> Any:
            request = explore.build_request(replace(snap, mix_layers=()), model, 0)
            if request is None:
                return None
            # the second latent, whatever layers are ticked now
            target = explore.mix_w(replace(snap, mix_layers=("all",)), model)
            if target is None:
                return None
            return sweeps.error_per_layer(
                model, request, target, truth, truth_modality, mode=mode,
                progress=progress, cancel=cancel.is_set,
            )  # fmt: skip

        self.job.run(
            work,
            lambda curve: self._show(curve, label),
            on_failed=lambda message: self.chart_note.setText(message),
        )

    def _truth(self, snap: explore.ExplorerState) -> tuple[np.ndarray | None, str, str]:
        """What the chart scores against: the second style's own slice where it has one (the
        paired slice at the slice a slice move seeks, as the live view scores it)."""
        source, model = snap.source, self.state.model
        if source is None or model is None:
            return None, "MR", "no scan open: nothing to score against"
        if snap.mix_source == "paired" and snap.paired is not None:
            p = snap.paired
            sought = explore.sought_slice(snap, model)
            i = snap.index if sought is None else sought
            if not 0 <= i < p.num_slices:
                return None, p.modality, f"paired slice {i}, outside the scan"
            return p.native(i), p.modality, f"paired {p.modality} slice {i}"
        if snap.mix_source == "slice" and snap.mix_slice is not None:
            i = snap.mix_slice
            return source.native(i), source.modality, f"{source.modality} slice {i}"
        label = f"the source slice {snap.index} (a random style has no ground truth)"
        return source.native(snap.index), source.modality, label

    def _show(self, curve: sweeps.ErrorCurve | None, label: str) -> None:
        self.curve = curve
        for item in self.values:
            self.plot.removeItem(item)
        self.values = []
        if curve is None:
            self.bars.setOpts(x=[], height=[])
            self.reference.setData([], [])
            state = self.state.explore
            if state.mix_source == "paired" and state.paired is None:
                why = "no paired study is open: take another slice or a random seed"
            elif state.source is None and state.seed_w is None:
                why = "open a scan or draw a random latent first"
            else:
                why = "the second style's slice has no latent yet"
            self.chart_note.setText(f"No chart: {why}.")
            return
        heights = np.nan_to_num(curve.error, nan=0.0)
        self.bars.setOpts(x=curve.x, height=heights, width=0.6)
        axis = self.plot.getPlotItem().getAxis("bottom")
        axis.setTicks(
            [[(float(x), layer_label(n)) for x, n in zip(curve.x, curve.labels, strict=True)]]
        )
        self.plot.setLabel("left", curve.unit or "error")
        ends = [-0.6, len(curve.x) - 0.4]
        if curve.reference is not None and math.isfinite(curve.reference):
            self.reference.setData(ends, [curve.reference] * 2)
        else:
            self.reference.setData([], [])
        fmt = "{:.0f}" if curve.unit.startswith("MAE") else "{:.3f}"
        for x, h in zip(curve.x, curve.error, strict=True):
            if math.isfinite(h):
                text = pg.TextItem(fmt.format(h), color=GREY, anchor=(0.5, 1.0))
                text.setPos(float(x), float(h))
                self.plot.addItem(text)
                self.values.append(text)
        top = max([float(np.nanmax(heights)) if len(heights) else 0.0, curve.reference or 0.0])
        # headroom for the numbers over the bars and the legend
        self.plot.setYRange(0, 1.3 * top if top > 0 else 1.0, padding=0)
        self.plot.setXRange(-0.6, len(curve.x) - 0.4, padding=0)
        self._highlight()
        best = int(np.nanargmin(curve.error)) if np.isfinite(curve.error).any() else None
        text = f"Against {label}."
        if best is not None:
            text += f" Lowest at {layer_label(curve.labels[best])}."
        self.chart_note.setText(text)

    def _highlight(self) -> None:
        """Ticked layers' bars in orange, the others in blue."""
        if self.curve is None:
            return
        ticked = self.state_layers()
        brushes = [ORANGE if n in ticked else BLUE for n in self.curve.labels]
        self.bars.setOpts(brushes=brushes)
