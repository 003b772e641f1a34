"""Fit the latent directions of a bundle (``medstyle directions fit``), from a latents
file, or after embedding a dataset into one first (``medstyle embed``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QSpinBox, QWidget

from medstyle_gui.core.embed import REFINE_LR
from medstyle_gui.core.export import DirectionsOptions
from medstyle_gui.gui.dialogs import (
    CommandDialog,
    PathEdit,
    RunSpec,
    combo_value,
    make_combo,
    rate_spin,
)

DEVICES = [("CPU", "cpu"), ("GPU (cuda)", "cuda")]


class FitDirectionsDialog(CommandDialog):
    """Modality, sex and slice directions (and any CSV labels) from embedded slices."""

    def __init__(self, state=None, parent: QWidget | None = None) -> None:
        super().__init__(
            "Fit latent directions",
            "Directions are fitted on embedded slices with known labels: logistic "
            "regression and dense prediction / reverse networks, chosen by the paper's "
            "rule; the slice direction is calibrated in mm. Embed a dataset first if you "
            "have no latents file yet.",
            parent,
        )
        f = self.form
        self.model = self.model_field(state)
        self.embed_first = self.check(
            "Embed a dataset first", "run 'medstyle embed' on the data into the latents file"
        )
        f.addRow("", self.embed_first)
        self.embed_from = PathEdit("open", "Dataset or scan (*.h5 *.nii *.nii.gz *.mha *.nrrd)")
        self.embed_from.edit.setPlaceholderText("DATA.h5 (labels come with it)")
        f.addRow("Embed from", self.embed_from)
        self.refine_steps = QSpinBox()
        self.refine_steps.setRange(0, 5000)
        self.refine_steps.setValue(350)
        self.refine_steps.setToolTip("refinement steps per slice (the paper: 350)")
        f.addRow("Refinement steps", self.refine_steps)
        self.refine_lr = rate_spin(
            REFINE_LR, f"refinement learning rate (the paper: {REFINE_LR:g})"
        )
        f.addRow("Refinement rate", self.refine_lr)
        self.latents = PathEdit("open", "Latents (*.h5)", "LATENTS.h5", self)
        f.addRow("Latents file", self.latents)
        self.labels = PathEdit("open", "CSV (*.csv)", "optional: a 'row' column, 0/1 labels")
        f.addRow("Extra labels", self.labels)
        self.trials = QSpinBox()
        self.trials.setRange(1, 1000)
        self.trials.setValue(20)
        self.trials.setToolTip("random-search trials per dense model")
        f.addRow("Search trials", self.trials)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        f.addRow("Seed", self.seed)
        self.device = make_combo(DEVICES)
        f.addRow("Device", self.device)
        self.overwrite = self.check("Replace the bundle's directions (and the latents file)")
        f.addRow("", self.overwrite)
        self.embed_first.toggled.connect(self._embed_toggled)
        self._embed_toggled(False)
        self.add_tail()

    def _embed_toggled(self, on: bool) -> None:
        self.embed_from.setEnabled(on)
        self.refine_steps.setEnabled(on)
        self.refine_lr.setEnabled(on)
        self.latents.mode = "save" if on else "open"

    def options(self) -> DirectionsOptions:
        embed = self.embed_first.isChecked()
        return DirectionsOptions(
            model=self.model.text(),
            latents=self.latents.text(),
            embed_from=self.embed_from.text() if embed else None,
            refine_steps=self.refine_steps.value() if embed else None,
            refine_lr=self.refine_lr.value() if embed else None,
            labels=self.labels.text() or None,
            trials=self.trials.value(),
            seed=self.seed.value(),
            device=combo_value(self.device),
            overwrite=self.overwrite.isChecked(),
        )

    def spec(self) -> RunSpec:
        options = self.options()
        return RunSpec(
            f"Fit directions: {Path(options.model).name}",
            options.commands(),
            result=Path(options.model),
        )
