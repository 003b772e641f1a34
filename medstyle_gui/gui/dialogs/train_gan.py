"""Train the StyleGAN (``medstyle train gan``): data, run folder, resolution, length in
kimg, GPUs (``--gpus N`` starts N processes through torchrun), batch sizes, and the less
common options under "More options". Tick Resume to continue a run folder: the form then
shows the saved run's values and only what may change on a resume stays editable."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from PySide6.QtWidgets import QFormLayout, QGroupBox, QLineEdit, QSpinBox, QWidget

from medstyle_gui.core.export import GANOptions
from medstyle_gui.gui.dialogs import (
    CommandDialog,
    PathEdit,
    RunSpec,
    combo_value,
    make_combo,
    optional_spin,
    spin_value,
)

RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512)
DEVICES = [("CUDA when available", None), ("GPU (cuda)", "cuda"), ("CPU", "cpu")]


def gpu_count() -> int:
    """CUDA GPUs on this machine (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class TrainGANDialog(CommandDialog):
    """The options of ``medstyle train gan`` that a user sets most often."""

    def __init__(self, state=None, parent: QWidget | None = None) -> None:
        super().__init__(
            "Train the StyleGAN",
            "Progressive growing from the start resolution to the final one, as in Fetty et "
            "al. 2020 (WGAN-GP, EMA of G, style mixing). The run folder gets log.jsonl, "
            "sample grids, checkpoints and, at the best snapshot, a model bundle.",
            parent,
        )
        f = self.form
        self.data = PathEdit("open", "HDF5 slice dataset (*.h5)", "DATA.h5", self)
        f.addRow("Training data", self.data)
        self.out = PathEdit("folder", placeholder="a new (or empty) folder", parent=self)
        f.addRow("Run folder", self.out)
        self.resume = self.check(
            "Resume the run in this folder", "continue from checkpoints/latest.pt"
        )
        self.resume.toggled.connect(self._resume_toggled)
        f.addRow("", self.resume)
        self.resolution = make_combo(
            [("the dataset's", None)] + [(f"{r} px", r) for r in RESOLUTIONS]
        )
        f.addRow("Final resolution", self.resolution)
        self.kimg = optional_spin(0.0, 1e6, 3, "the paper's (12000)")
        self.kimg.setValue(12000.0)
        self.kimg.setToolTip("thousands of real images shown in the whole run")
        f.addRow("Length (kimg)", self.kimg)
        gpus = gpu_count()
        self.gpus = QSpinBox()
        self.gpus.setRange(1, 64)
        self.gpus.setToolTip(
            f"processes on this machine; above 1 the run is started by torchrun "
            f"(this machine has {gpus} CUDA GPU{'s' if gpus != 1 else ''})"
        )
        f.addRow("GPUs", self.gpus)
        self.batch = QLineEdit()
        self.batch.setPlaceholderText("the paper's (256 at 8 px ... 8 at 256 px); N; 32:64,64:32")
        f.addRow("Batch size", self.batch)
        self.network = make_combo([("paper (full width)", "paper"), ("slim (CPU)", "slim")])
        f.addRow("Network", self.network)
        self.device = make_combo(DEVICES)
        f.addRow("Device", self.device)
        self.workers = QSpinBox()
        self.workers.setRange(0, 64)
        self.workers.setValue(2)
        self.workers.setToolTip("data loader processes per GPU (0: load in the training process)")
        f.addRow("Loader workers", self.workers)

        more = QGroupBox("More options", self)
        g = QFormLayout(more)
        self.start_resolution = make_combo(
            [("8 px (the paper's)", None)] + [(f"{r} px", r) for r in RESOLUTIONS if r != 8]
        )
        g.addRow("Start resolution", self.start_resolution)
        self.loss = make_combo([("WGAN-GP (the paper's)", None), ("non-saturating + R1", "r1")])
        g.addRow("Loss", self.loss)
        self.metric_choice = make_combo([("SWD", None), ("FID (needs Inception weights)", "fid")])
        g.addRow("Metric", self.metric_choice)
        self.inception = PathEdit("open", "state_dict (*.pt *.pth)", "for FID only", more)
        g.addRow("Inception weights", self.inception)
        self.metric_images = optional_spin(0, 100000, 0, "10000")
        g.addRow("Metric images", self.metric_images)
        self.tick_kimg = optional_spin(0.0, 1e5, 3, "4")
        g.addRow("Log every (kimg)", self.tick_kimg)
        self.snapshot_kimg = optional_spin(0.0, 1e5, 3, "100")
        g.addRow("Snapshot every (kimg)", self.snapshot_kimg)
        self.checkpoint_kimg = optional_spin(0.0, 1e5, 3, "= snapshot")
        self.checkpoint_kimg.setToolTip("latest.pt, where Resume starts from")
        g.addRow("Checkpoint every (kimg)", self.checkpoint_kimg)
        self.seed = optional_spin(-1, 2**31 - 1, 0, "0")
        g.addRow("Seed", self.seed)
        self.config = PathEdit("open", "JSON (*.json)", "options file; the fields above win", more)
        g.addRow("Config file", self.config)
        self.init_from = PathEdit(
            "folder", placeholder="a model bundle: go on training its G and D", parent=more
        )
        self.init_from.setToolTip(
            "start from a bundle's generator and discriminator (fresh optimisers) instead of "
            "random weights; set the start resolution to the bundle's"
        )
        g.addRow("Start from model", self.init_from)
        self.body.addWidget(more)
        self._fixed_on_resume = [
            self.data, self.resolution, self.batch, self.network, self.start_resolution,
            self.loss, self.metric_choice, self.inception, self.metric_images, self.seed,
            self.config, self.init_from,
        ]  # fmt: skip
        self.out.textChanged.connect(lambda _: self._resume_toggled(self.resume.isChecked()))
        self.add_tail()

    def _resume_toggled(self, on: bool) -> None:
        for widget in self._fixed_on_resume:
            widget.setEnabled(not on)
        if on:
            self._load_saved()

    def _load_saved(self) -> None:
        """Show the saved run's length, workers, device and intervals."""
        try:
            saved = json.loads((Path(self.out.text()) / "config.json").read_text("utf-8"))
        except (OSError, ValueError):
            return
        for name, spin in (
            ("kimg", self.kimg),
            ("tick_kimg", self.tick_kimg),
            ("snapshot_kimg", self.snapshot_kimg),
            ("checkpoint_kimg", self.checkpoint_kimg),
        ):
            if isinstance(saved.get(name), int | float):
                spin.setValue(float(saved[name]))
        if isinstance(saved.get("workers"), int):
            self.workers.setValue(saved["workers"])
        self.device.setCurrentIndex(max(self.device.findData(saved.get("device")), 0))
        self.data.setText(saved.get("data", ""))

    def options(self) -> GANOptions:
        def integer(spin) -> int | None:
            value = spin_value(spin)
            return None if value is None else int(value)

        return GANOptions(
            data=self.data.text(),
            out=self.out.text(),
            resolution=combo_value(self.resolution),
            start_resolution=combo_value(self.start_resolution),
            kimg=spin_value(self.kimg),
            gpus=self.gpus.value(),
            batch=self.batch.text().strip() or None,
            network=combo_value(self.network),
            loss=combo_value(self.loss),
            metric=combo_value(self.metric_choice),
            inception_weights=self.inception.text() or None,
            metric_images=integer(self.metric_images),
            tick_kimg=spin_value(self.tick_kimg),
            snapshot_kimg=spin_value(self.snapshot_kimg),
            checkpoint_kimg=spin_value(self.checkpoint_kimg),
            seed=integer(self.seed),
            workers=self.workers.value(),
            device=combo_value(self.device),
            config=self.config.text() or None,
            init_from=self.init_from.text() or None,
            resume=self.resume.isChecked(),
        )

    def spec(self) -> RunSpec:
        options = self.options()
        argv = options.argv()
        resumed = dataclasses.replace(options, resume=True)
        return RunSpec(
            f"Train StyleGAN: {Path(options.out).name}",
            [argv],
            run_folder=Path(options.out),
            resume=lambda: [resumed.argv()],
        )
