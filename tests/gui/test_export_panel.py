"""The Export panel: a synthetic volume read back, the generated slice as synthetic DICOM,
PNGs of the views, the metrics as CSV, and no silent overwrite."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medstyle_gui.gui.panels.export import ExportPanel
from tests.gui.conftest import WAIT_MS, wait_render


@pytest.fixture
def refuse(monkeypatch):
    """Every "replace it?" question is answered No; the questions asked are recorded."""
    asked: list[Path] = []

    def no(self, path: Path) -> bool:
        asked.append(path)
        return False

    monkeypatch.setattr(ExportPanel, "confirm_overwrite", no)
    return asked


def test_volume_from_a_seed_reads_back(qtbot, model_state, tmp_path: Path, refuse) -> None:
    from trainer.data.read import read_sidecar, read_volume

    panel = ExportPanel(model_state)
    qtbot.addWidget(panel)
    assert len(panel.menu_actions()) == 4
    assert panel.recipe().seed == model_state.explore.seed
    panel.slices.setValue(6)
    target = tmp_path / "walk.nii.gz"
    task = panel.export_volume(target)
    assert task is not None and not panel.volume_button.isEnabled()
    qtbot.waitUntil(lambda: panel.task is None, timeout=WAIT_MS)
    assert "wrote" in panel.status.text() and panel.progress.value() == 1000

    r = model_state.model.resolution
    volume = read_volume(target)
    assert volume.shape == (6, r, r)
    assert all(s > 0 for s in volume.spacing_mm)
    provenance = read_sidecar(target)["provenance"]
    assert provenance["synthetic"] is True
    assert provenance["model_sha256"] == model_state.model.sha256
    assert provenance["recipe"]["explorer"]["start"] == {"seed": model_state.explore.seed}
    assert provenance["recipe"]["walk"]["slices"] == 6

    # the same walk as a DICOM series folder
    panel.format.setCurrentIndex(panel.format.findData(""))
    assert panel.export_volume(tmp_path / "walk_dicom") is not None
    qtbot.waitUntil(lambda: panel.task is None, timeout=WAIT_MS)
    series = read_volume(tmp_path / "walk_dicom")
    assert series.shape == (6, r, r) and series.modality == volume.modality
    np.testing.assert_allclose(series.spacing_mm, volume.spacing_mm, rtol=1e-4)

    # exporting over it asks, and a No leaves the file alone (no task starts)
    panel.format.setCurrentIndex(0)
    before = target.read_bytes()
    assert panel.export_volume(target) is None
    assert refuse == [target] and target.read_bytes() == before
    assert "not written" in panel.status.text()


def test_a_volume_keeps_the_style_mix(qtbot, model_state, tmp_path: Path, refuse) -> None:
    from trainer.data.read import read_sidecar

    st = model_state.explore
    st.mix_layers, st.mix_source, st.mix_seed = ["16-32"], "seed", 11
    panel = ExportPanel(model_state)
    qtbot.addWidget(panel)
    panel.slices.setValue(3)
    assert panel.export_volume(tmp_path / "mixed.nii.gz") is not None
    qtbot.waitUntil(lambda: panel.task is None, timeout=WAIT_MS)
    recipe = read_sidecar(tmp_path / "mixed.nii.gz")["provenance"]["recipe"]
    assert recipe["mix"] == {"layers": ["16-32"], "from": "seed 11"}
    assert recipe["explorer"]["mix"] == {"layers": ["16-32"], "source": "seed"}


def test_slice_dicom_pngs_and_metrics(qtbot, t2_state, tmp_path: Path, refuse) -> None:
    import pydicom

    state = t2_state
    panel = ExportPanel(state)
    qtbot.addWidget(panel)
    rows_before = len(panel.rows)
    for alpha in (1.5, 3.0):
        wait_render(qtbot, state, lambda a=alpha: state.set_move("sex", a))
    qtbot.waitUntil(lambda: len(panel.rows) >= rows_before + 2, timeout=WAIT_MS)
    recipe = panel.recipe()
    assert recipe.slice_index == state.explore.index and recipe.source_file.endswith(".nii.gz")
    assert ("sex", 3.0) in recipe.moves

    # the generated slice as DICOM, marked synthetic, with the recipe
    folder = panel.export_slice_dicom(tmp_path / "slice_dcm")
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == 1
    ds = pydicom.dcmread(files[0])
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "SYNTHETIC" in ds.SeriesDescription
    assert "SYNTHETIC" in ds.DerivationDescription and "sex" in ds.DerivationDescription
    assert "not acquired from a patient" in ds.ImageComments
    assert ds.Modality == state.last_result.modality and ds.PatientIdentityRemoved == "YES"
    assert ds.Rows == state.model.resolution
    spacing = state.explore.source.volume.spacing_mm
    np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], spacing[1:], rtol=1e-4)
    # again: asked, refused, left alone
    assert panel.export_slice_dicom(tmp_path / "slice_dcm") is None
    assert refuse == [tmp_path / "slice_dcm"] and sorted(folder.glob("*.dcm")) == files

    # the views as PNG, windowed as shown
    from PIL import Image

    pngs = panel.export_pngs(tmp_path)
    names = sorted(p.name.rsplit("_", 1)[-1] for p in pngs)
    assert names == ["difference.png", "generated.png", "source.png", "truth.png"]
    for png in pngs:
        with Image.open(png) as image:
            assert image.size == (state.model.resolution, state.model.resolution)
            assert np.asarray(image).std() > 0  # not a blank picture

    # the metrics as CSV: a header and a row per scored render
    out = panel.export_metrics(tmp_path / "metrics.csv")
    with open(out, newline="") as f:
        table = list(csv.DictReader(f))
    header = out.read_text().splitlines()[0].split(",")
    assert header[:4] == ["time", "slice", "modality", "truth"] and "alpha_sex" in header
    assert len(table) == len(panel.rows) >= 2
    assert table[-1]["alpha_sex"] == "3.0"
    measure = "mae_hu" if table[-1]["modality"] == "CT" else "rmse"
    assert float(table[-1][measure]) >= 0
    # refusing to replace the CSV leaves it whole
    text = out.read_text()
    assert panel.export_metrics(out) is None and out.read_text() == text
    assert refuse[-1] == out


def test_overwrite_when_agreed(qtbot, model_state, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ExportPanel, "confirm_overwrite", lambda self, path: True)
    panel = ExportPanel(model_state)
    qtbot.addWidget(panel)
    pngs = panel.export_pngs(tmp_path)
    assert [p.name.rsplit("_", 1)[-1] for p in pngs] == ["generated.png"]  # no scan: no truth
    again = panel.export_pngs(tmp_path)
    assert again == pngs and "wrote 1 PNG" in panel.status.text()
    assert panel.export_metrics(tmp_path / "m.csv") is None  # no truth: nothing recorded
    assert "no metrics" in panel.status.text()
    meta = json.loads(json.dumps(panel.recipe().as_dict()))
    assert meta["start"] == {"seed": model_state.explore.seed}
