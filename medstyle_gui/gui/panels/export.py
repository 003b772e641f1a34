"""Export panel: what is on screen, a synthetic volume, and the metrics.

* Views as PNG: source, generated, ground truth and difference map, windowed as shown.
* The generated slice as a DICOM series of one image, marked synthetic (ImageType
  DERIVED\\SECONDARY, SeriesDescription and DerivationDescription that say so, the
  model's hash and the latent recipe: start slice or seed, moves, tau, mixed layers).
* A synthetic volume: the current latent (after the sliders' moves) walked along the
  calibrated slice direction (``core.generate``), written as NIfTI + JSON sidecar, a
  DICOM series or HDF5, on a worker with progress and cancel.
* The metrics of every render scored against a ground truth since the panel opened, as
  CSV (one row per render: slice, moves, truth, MAE in HU or RMSE, whole image and body).

Nothing is written over an existing file without asking (:meth:`confirm_overwrite`).
Errors go to the panel's status line in one sentence.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from medstyle_gui.core import explore
from medstyle_gui.core import export as core_export
from medstyle_gui.core.export import SliceRecipe, ViewImage
from trainer.errors import MedstyleError

if TYPE_CHECKING:
    from medstyle_gui.gui.state import AppState
    from medstyle_gui.gui.worker import Task

#: Volume formats: (label, file ending, "" for a DICOM folder).
VOLUME_FORMATS = (
    ("NIfTI (.nii.gz + JSON sidecar)", ".nii.gz"),
    ("DICOM series (folder)", ""),
    ("HDF5 (.h5)", ".h5"),
)
#: trainer.data.write format names of the endings above.
FORMAT_NAMES = {".nii.gz": "nifti", "": "dicom", ".h5": "h5"}
#: Renders kept for the CSV (oldest dropped first).
MAX_ROWS = 100_000
OK, BAD = "#8fd18f", "#ff8a65"


def _icon(name: str) -> QIcon:
    """A qtawesome icon, or none when the icon font cannot be loaded (a nicety only)."""
    try:
        import qtawesome as qta

        return qta.icon(name)
    except Exception:
        return QIcon()


class ExportPanel(QWidget):
    """Exports of the explorer's current state; ``menu_actions()`` for File > Export."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.rows: list[dict] = []
        self.task: Task | None = None
        layout = QVBoxLayout(self)

        views = QGroupBox("Current images", self)
        v = QVBoxLayout(views)
        self.current = QLabel("nothing rendered yet", views)
        self.current.setWordWrap(True)
        v.addWidget(self.current)
        row = QHBoxLayout()
        self.png_button = QPushButton(_icon("fa5s.file-image"), "Views as PNG...", views)
        self.png_button.setToolTip("source, generated, ground truth, difference: as shown")
        self.png_button.clicked.connect(lambda: self.export_pngs())
        self.dicom_button = QPushButton(_icon("fa5s.file-medical"), "Slice as DICOM...", views)
        self.dicom_button.setToolTip("the generated slice, marked synthetic, with its recipe")
        self.dicom_button.clicked.connect(lambda: self.export_slice_dicom())
        row.addWidget(self.png_button)
        row.addWidget(self.dicom_button)
        v.addLayout(row)
        layout.addWidget(views)

        volume = QGroupBox("Synthetic volume", self)
        f = QFormLayout(volume)
        note = QLabel(
            "The current latent, with the sliders' moves, walked along the slice "
            "direction, one generated slice per step; a style mix is kept, its latent "
            "walking along with the current one.",
            volume,
        )
        note.setWordWrap(True)
        f.addRow(note)
        self.slices = QSpinBox(volume)
        self.slices.setRange(1, 2048)
        self.slices.setValue(48)
        self.slices.setSuffix(" slices")
        f.addRow("Length", self.slices)
        self.format = QComboBox(volume)
        for label, ending in VOLUME_FORMATS:
            self.format.addItem(label, ending)
        f.addRow("Format", self.format)
        row = QHBoxLayout()
        self.volume_button = QPushButton(_icon("fa5s.cubes"), "Export volume...", volume)
        self.volume_button.clicked.connect(lambda: self.export_volume())
        self.cancel_button = QPushButton("Cancel", volume)
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        row.addWidget(self.volume_button)
        row.addWidget(self.cancel_button)
        f.addRow(row)
        self.progress = QProgressBar(volume)
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        f.addRow(self.progress)
        layout.addWidget(volume)

        metrics = QGroupBox("Metrics", self)
        m = QHBoxLayout(metrics)
        self.rows_label = QLabel("0 renders recorded", metrics)
        self.csv_button = QPushButton(_icon("fa5s.file-csv"), "Save CSV...", metrics)
        self.csv_button.clicked.connect(lambda: self.export_metrics())
        clear = QPushButton("Clear", metrics)
        clear.clicked.connect(self.clear_rows)
        m.addWidget(self.rows_label, 1)
        m.addWidget(self.csv_button)
        m.addWidget(clear)
        layout.addWidget(metrics)

        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self._actions = [
            self._action("Views as PNG...", self.export_pngs),
            self._action("Generated slice as DICOM...", self.export_slice_dicom),
            self._action("Synthetic volume...", self.export_volume),
            self._action("Metrics as CSV...", self.export_metrics),
        ]
        state.rendered.connect(self._on_rendered)
        state.modelChanged.connect(self._update)
        state.scanChanged.connect(self._scan_changed)
        self._update()

    def _action(self, text: str, slot) -> QAction:
        action = QAction(text, self)
        action.triggered.connect(lambda *_: slot())
        return action

    def menu_actions(self) -> list[QAction]:
        """The File > Export menu's entries."""
        return list(self._actions)

    # -- asking the user (tests replace these) ----------------------------------------------

    def ask_path(self, title: str, suggested: str, file_filter: str = "") -> Path | None:
        """A path to write (None: the user cancelled). Overwriting is asked separately."""
        path, _ = QFileDialog.getSaveFileName(
            self, title, suggested, file_filter, options=QFileDialog.Option.DontConfirmOverwrite
        )
        return Path(path) if path else None

    def ask_folder(self, title: str) -> Path | None:
        folder = QFileDialog.getExistingDirectory(self, title)
        return Path(folder) if folder else None

    def confirm_overwrite(self, path: Path) -> bool:
        """Ask before replacing ``path``."""
        answer = QMessageBox.question(
            self, "Replace?", f"{path.name} already exists in {path.parent}. Replace it?"
        )
        return answer == QMessageBox.StandardButton.Yes

    def _may_write(self, *paths: Path) -> bool | None:
        """None: nothing exists; True: the user agreed to replace; False: refused."""
        existing = next((p for p in paths if p.exists()), None)
        if existing is None:
            return None
        if self.confirm_overwrite(existing):
            return True
        self._say(f"not written: {existing} exists", BAD)
        return False

    def _say(self, text: str, colour: str = OK) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {colour};")

    # -- what is shown ----------------------------------------------------------------------

    def recipe(self) -> SliceRecipe | None:
        """How the last shown image was made (None before the first render)."""
        model, result, st = self.state.model, self.state.last_result, self.state.explore
        if model is None or result is None:
            return None
        embedded = st.source is not None and (
            explore.slice_w(st.latents, st.encoder_latents, st.index) is not None
        )
        mixing = bool(st.mix_layers) and explore.mix_w(st, model) is not None
        return SliceRecipe(
            model_name=model.name,
            model_sha256=model.sha256,
            source_file=Path(st.source.path).name if embedded else "",
            slice_index=st.index if embedded else None,
            seed=None if embedded else st.seed,
            moves=explore.active_moves(st, model),
            tau=float(st.tau),
            mix_layers=tuple(st.mix_layers) if mixing else (),
            mix_source=st.mix_source if mixing else None,
            modality=result.modality or "MR",
        )

    def _stem(self, recipe: SliceRecipe) -> str:
        if recipe.slice_index is None:
            return f"synthetic_seed{recipe.seed}"
        name = recipe.source_file.split(".")[0] or "scan"
        return f"{name}_slice{recipe.slice_index:03d}"

    def _on_rendered(self, result) -> None:
        recipe = self.recipe()
        if recipe is not None and result.metrics:
            now = _dt.datetime.now().isoformat(timespec="milliseconds")
            self.rows.append(
                core_export.metrics_row(
                    recipe, result.metrics, self.state.truth_label, result.render_ms, now
                )
            )
            del self.rows[:-MAX_ROWS]
        self._update()

    def _update(self) -> None:
        recipe = self.recipe()
        if recipe is None:
            self.current.setText("Nothing rendered yet: open a model (and a scan).")
        else:
            start = (
                f"slice {recipe.slice_index} of {recipe.source_file}"
                if recipe.slice_index is not None
                else f"random latent (seed {recipe.seed})"
            )
            moves = ", ".join(f"{n} {a:+.3g}" for n, a in recipe.moves) or "no moves"
            self.current.setText(f"Generated {recipe.modality} from {start}; {moves}.")
        for button in (self.png_button, self.dicom_button):
            button.setEnabled(recipe is not None)
        self.volume_button.setEnabled(self.state.model is not None and self.task is None)
        self.rows_label.setText(f"{len(self.rows)} renders with metrics recorded")
        self.csv_button.setEnabled(bool(self.rows))

    def _scan_changed(self) -> None:
        """A new scan: offer a volume as long as the scan by default."""
        source = self.state.explore.source
        if source is not None and self.task is None:
            self.slices.setValue(source.num_slices)
        self._update()

    def views(self) -> dict[str, ViewImage]:
        """The images on screen: source, generated, truth, difference (those there are)."""
        st, result = self.state.explore, self.state.last_result
        out: dict[str, ViewImage] = {}
        source = st.source
        window = st.window
        if source is not None:
            out["source"] = ViewImage(source.native(st.index), source.modality, window)
        if result is not None and result.image_native is not None:
            # the window was set on the source: another modality gets its own default
            same = source is None or result.modality == source.modality
            out["generated"] = ViewImage(
                result.image_native, result.modality, window if same else None
            )
            if self.state.truth is not None:
                out["truth"] = ViewImage(
                    self.state.truth, result.modality, window if same else None
                )
            if result.difference is not None:
                out["difference"] = ViewImage(result.difference, None, diverging=True)
        return out

    # -- exports ----------------------------------------------------------------------------

    def export_pngs(self, folder: Path | None = None) -> list[Path] | None:
        """Write every view as ``{stem}_{view}.png`` into ``folder`` (asked if None)."""
        recipe = self.recipe()
        if recipe is None:
            self._say("nothing to export yet", BAD)
            return None
        folder = folder or self.ask_folder("Folder for the PNGs")
        if folder is None:
            return None
        views, stem = self.views(), self._stem(recipe)
        overwrite = self._may_write(*(Path(folder) / f"{stem}_{n}.png" for n in views))
        if overwrite is False:
            return None
        try:
            written = core_export.write_view_pngs(views, folder, stem, bool(overwrite))
        except MedstyleError as err:
            self._say(str(err), BAD)
            return None
        self._say(f"wrote {len(written)} PNGs to {folder} ({stem}_*.png)")
        return written

    def export_slice_dicom(self, folder: Path | None = None) -> Path | None:
        """Write the generated slice as a one-image DICOM series folder."""
        recipe, result = self.recipe(), self.state.last_result
        if recipe is None or result is None or result.image_native is None:
            self._say("nothing to export yet", BAD)
            return None
        folder = folder or self.ask_path("DICOM series folder to create", self._stem(recipe))
        if folder is None:
            return None
        overwrite = self._may_write(Path(folder))
        if overwrite is False:
            return None
        pixel_mm, slice_mm = self._geometry()
        try:
            out = core_export.write_slice_dicom(
                result.image_native,
                recipe,
                folder,
                pixel_mm=pixel_mm,
                slice_mm=slice_mm,
                overwrite=bool(overwrite),
            )
        except MedstyleError as err:
            self._say(str(err), BAD)
            return None
        self._say(f"wrote the synthetic {recipe.modality} slice to {out}")
        return out

    def _geometry(self) -> tuple[tuple[float, float], float]:
        """In-plane pixel size and slice thickness (mm): the scan's, else the model's."""
        source = self.state.explore.source
        if source is not None:
            s = source.volume.spacing_mm
            return (float(s[1]), float(s[2])), float(s[0])
        from medstyle_gui.core.generate import model_geometry

        geometry = model_geometry(self.state.model) if self.state.model is not None else {}
        pixel = float(geometry.get("pixel_mm") or 1.0)
        return (pixel, pixel), float(geometry.get("slice_mm") or pixel)

    def export_volume(self, path: Path | None = None) -> Task | None:
        """Generate and write a synthetic volume on a worker; returns its task."""
        model, recipe = self.state.model, self.recipe()
        if model is None or recipe is None or self.task is not None:
            self._say("open a model first" if model is None else "an export is running", BAD)
            return None
        ending = self.format.currentData()
        if path is None:
            path = self.ask_path("Write the volume to", f"{self._stem(recipe)}_walk{ending}")
            if path is None:
                return None
        if ending and not path.name.lower().endswith(ending):
            path = path.with_name(path.name + ending)
        from trainer.data.read import sidecar_path

        checks = [path, sidecar_path(path)] if ending == ".nii.gz" else [path]
        overwrite = self._may_write(*checks)
        if overwrite is False:
            return None
        w = explore.moved_w(self.state.snapshot(), model)
        if w is None:
            self._say("no latent to start from: embed the slice or sample a seed", BAD)
            return None
        from medstyle_gui.core.generate import GenerateRequest

        label = f"{recipe.source_file}:{recipe.slice_index}" if recipe.source_file else ""
        mix_w = explore.mix_w(self.state.snapshot(), model) if recipe.mix_layers else None
        request = GenerateRequest(
            slices=self.slices.value(),
            start_w=w,
            start_label=label,
            mix_w=mix_w,
            mix_layers=recipe.mix_layers if mix_w is not None else (),
            mix_label=_mix_label(self.state.explore) if mix_w is not None else "",
            output_modality=recipe.modality,
        )

        def work(progress, cancel):
            return core_export.export_volume(
                model, request, path, fmt=FORMAT_NAMES[ending], overwrite=bool(overwrite),
                recipe=recipe, progress=progress, cancel=cancel,
            )  # fmt: skip

        self.task = self.state.tasks.start(
            work,
            name=f"exporting {path.name}",
            on_done=lambda out: self._volume_ended(f"wrote {out}", OK),
            on_failed=lambda message: self._volume_ended(message, BAD),
            on_cancelled=lambda: self._volume_ended("export cancelled; nothing written", BAD),
        )
        self.task.progress.connect(self._volume_progress)
        self.cancel_button.setEnabled(True)
        self._update()
        self._say(f"exporting {request.slices} slices to {path.name}...", OK)
        return self.task

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _volume_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(1000 * fraction))
        self.progress.setFormat(message)

    def _volume_ended(self, message: str, colour: str) -> None:
        self.task = None
        self.cancel_button.setEnabled(False)
        self.progress.setValue(1000 if colour == OK else 0)
        self.progress.setFormat("done" if colour == OK else "")
        self._say(message, colour)
        self._update()

    def export_metrics(self, path: Path | None = None) -> Path | None:
        """Write the recorded metrics as CSV."""
        if not self.rows:
            self._say("no metrics recorded yet: render against a ground truth first", BAD)
            return None
        path = path or self.ask_path("Metrics CSV", "medstyle_metrics.csv", "CSV (*.csv)")
        if path is None:
            return None
        overwrite = self._may_write(path)
        if overwrite is False:
            return None
        try:
            out = core_export.write_metrics_csv(self.rows, path, bool(overwrite))
        except MedstyleError as err:
            self._say(str(err), BAD)
            return None
        self._say(f"wrote {len(self.rows)} rows to {out}")
        return out

    def clear_rows(self) -> None:
        self.rows.clear()
        self._update()


def _mix_label(st: explore.ExplorerState) -> str:
    """Where the mixed-in latent comes from, for the provenance: "seed 11", "the paired
    scan's slice 44 (mr.nii.gz)" or "slice 12 of ct.nii.gz"."""
    if st.mix_source == "seed":
        return f"seed {st.mix_seed}"
    if st.mix_source == "paired" and st.paired is not None:
        return f"the paired scan's slice {st.index} ({Path(st.paired.path).name})"
    if st.mix_source == "slice" and st.source is not None:
        return f"slice {st.mix_slice} of {Path(st.source.path).name}"
    return st.mix_source or ""
