"""Pack one snapshot of a GAN run as a model bundle (``medstyle train bundle``).

A run keeps a bundle of its best snapshot by the metric (SWD or FID); another one may
serve better, e.g. the one whose embeddings reconstruct best. The dialog lists the run's
snapshots with the metric each had, newest first."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QComboBox, QWidget

from medstyle_gui.core.export import SnapshotBundleOptions
from medstyle_gui.core.run_log import RunLog
from medstyle_gui.gui.dialogs import CommandDialog, PathEdit, RunSpec


def run_snapshots(run: Path) -> list[tuple[str, Path]]:
    """``(label, checkpoint)`` of every snapshot of the GAN run folder ``run``, newest
    first, each labelled with its kimg and the metric its log line holds."""
    log = RunLog(run)
    log.poll()
    best = log.best_snapshot()  # the run's best so far: the last snapshot logged as one
    metrics: dict[int, str] = {}
    for record in log.snapshots:
        named = [(k, record[k]) for k in ("swd", "fid") if k in record]
        metrics[int(record.get("images_seen", -1))] = (
            f"{named[0][0].upper()} {named[0][1]:.2f}" if named else ""
        )
    best_seen = int(best.get("images_seen", -1)) if best is not None else -1
    out = []
    for path in sorted((run / "checkpoints").glob("images-*.pt"), reverse=True):
        try:
            seen = int(path.stem.split("-")[1])
        except (IndexError, ValueError):
            continue
        label = f"{seen / 1000:g} kimg"
        if metrics.get(seen):
            label += f"  ·  {metrics[seen]}" + ("  (best)" if seen == best_seen else "")
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
