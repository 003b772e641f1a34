"""Pack one snapshot of a GAN run as a model bundle (``medstyle train bundle``).

A run keeps a bundle of its best snapshot by the metric (SWD or FID); another one may
serve better, e.g. the one whose embeddings reconstruct best. The dialog lists the run's
snapshots with the metric each had, newest first."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtWidgets import QComboBox, QWidget

from medstyle_gui.core.export import SnapshotBundleOptions
from medstyle_gui.gui.dialogs import CommandDialog, PathEdit, RunSpec


def run_snapshots(run: Path) -> list[tuple[str, Path]]:
    """``(label, checkpoint)`` of every snapshot of the GAN run folder ``run``, newest
    first, each labelled with its kimg and the metric its log line holds."""
    metrics: dict[int, str] = {}
    best = -1  # the run's best so far is the last snapshot logged as a new best
    try:
        lines = (run / "log.jsonl").read_text("utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "snapshot":
            named = [(k, v) for k, v in record.items() if k in ("swd", "fid")]
            seen = int(record.get("images_seen", -1))
            metrics[seen] = f"{named[0][0].upper()} {named[0][1]:.2f}" if named else ""
            best = seen if record.get("best") else best
    out = []
    for path in sorted((run / "checkpoints").glob("images-*.pt"), reverse=True):
        try:
            seen = int(path.stem.split("-")[1])
        except (IndexError, ValueError):
            continue
        label = f"{seen / 1000:g} kimg"
        if metrics.get(seen):
            label += f"  ·  {metrics[seen]}" + ("  (best)" if seen == best else "")
        out.append((label, path))
    return out


class SnapshotBundleDialog(CommandDialog):
    """Run folder, which snapshot, bundle folder."""

    def __init__(self, state=None, parent: QWidget | None = None) -> None:
        super().__init__(
            "Pack a snapshot as a model",
            "A GAN run keeps a model bundle of its best snapshot by the metric. Pack any "
            "other snapshot the same way, to explore it, train its encoder and fit its "
            "directions.",
            parent,
        )
        f = self.form
        self.run = PathEdit("folder", placeholder="a StyleGAN run folder", parent=self)
        f.addRow("Run folder", self.run)
        self.snapshot = QComboBox()
        self.snapshot.setMinimumContentsLength(28)
        f.addRow("Snapshot", self.snapshot)
        self.out = PathEdit("folder", placeholder="the bundle folder to write", parent=self)
        f.addRow("Bundle folder", self.out)
        self.overwrite = self.check("Replace the bundle folder if it exists")
        f.addRow("", self.overwrite)
        self.run.textChanged.connect(lambda _: self._fill_snapshots())
        self.add_tail()

    def _fill_snapshots(self) -> None:
        self.snapshot.clear()
        for label, path in run_snapshots(Path(self.run.text())):
            self.snapshot.addItem(label, str(path))
        if self.snapshot.count() == 0:
            self.snapshot.addItem("no snapshots in this folder", None)

    def options(self) -> SnapshotBundleOptions:
        return SnapshotBundleOptions(
            checkpoint=self.snapshot.currentData() or "",
            out=self.out.text(),
            overwrite=self.overwrite.isChecked(),
        )

    def spec(self) -> RunSpec:
        options = self.options()
        return RunSpec(
            f"Pack snapshot: {Path(options.checkpoint).stem}",
            [options.argv()],
            result=Path(options.out),
        )
