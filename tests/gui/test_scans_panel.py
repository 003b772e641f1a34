"""The Scans panel with the real AppState and a tiny model: open the real CT series and
the real T2, step slices, window, and choose a series in the DICOM browser."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from medstyle_gui.gui.panels.dicom_browser import DicomBrowser
from medstyle_gui.gui.panels.scans import AUTO, ScansPanel
from medstyle_gui.gui.state import AppState
from medstyle_gui.gui.views import ComparisonView

pytestmark = pytest.mark.gui

OPEN_TIMEOUT_MS = 120_000  # reading + resampling + encoding on a busy 2-core machine


@pytest.fixture(scope="module")
def model(tiny_bundle: Path):
    from medstyle_gui.core.model import load_model

    return load_model(tiny_bundle)


@pytest.fixture
def state(qtbot, model):
    s = AppState()
    s.set_model(model)
    yield s
    s.shutdown()


@pytest.fixture
def second_state(qtbot, model):
    """Another window's state, e.g. to reopen a saved session. A fixture, not a local: it
    must outlive the events Qt still delivers to it after the test's last line."""
    s = AppState()
    s.set_model(model)
    yield s
    s.shutdown()


@pytest.fixture
def panel(qtbot, state) -> ScansPanel:
    p = ScansPanel(state)
    qtbot.addWidget(p)
    p.show()
    return p


@pytest.fixture
def two_series(tmp_path: Path, real_ct_dicom: Path) -> tuple[Path, str]:
    """A folder with the real CT series and a converted copy of it (a new series UID);
    returns the folder and the copy's series UID."""
    from trainer.data.dicom_read import list_dicom_series
    from trainer.data.dicom_write import write_dicom_series
    from trainer.data.provenance import conversion
    from trainer.data.read import read_volume

    folder = tmp_path / "incoming"
    shutil.copytree(real_ct_dicom, folder / "original")
    volume = read_volume(real_ct_dicom)
    write_dicom_series(volume, folder / "converted", provenance=conversion(real_ct_dicom.name))
    (uid,) = [s.uid for s in list_dicom_series(folder / "converted")]
    return folder, uid


def _open(qtbot, state: AppState, action) -> None:
    """Run ``action`` and wait until the scan it opens is there."""
    failures: list[str] = []
    state.errorRaised.connect(failures.append)
    with qtbot.waitSignal(state.scanChanged, timeout=OPEN_TIMEOUT_MS):
        action()
    assert not failures, failures


def test_open_the_real_ct_series_and_step_through_it(qtbot, state, panel, real_ct_dicom) -> None:
    view = ComparisonView()
    qtbot.addWidget(view)
    view.attach(state)
    _open(qtbot, state, lambda: panel.open_path(real_ct_dicom))

    source = state.explore.source
    assert source is not None and source.modality == "CT" and source.num_slices == 20
    assert state.opened["path"] == str(real_ct_dicom)
    assert (panel.slider.minimum(), panel.slider.maximum()) == (0, 19)
    assert (panel.spin.minimum(), panel.spin.maximum()) == (0, 19)
    assert "CT, 20 slices" in panel.scan_label.text()
    # a CT opens in the soft-tissue window, shown by name
    assert state.explore.window == (40.0, 400.0)
    assert panel.preset_combo.currentText().startswith("Soft tissue")
    assert view.source.window() == (40.0, 400.0)

    seen = []
    for i in (0, 7, 19):
        panel.slider.setValue(i)
        assert state.explore.index == i and panel.spin.value() == i
        np.testing.assert_array_equal(view.source.image, source.native(i))
        seen.append(panel.position_label.text())
    assert len(set(seen)) == 3 and all(s.endswith(" mm") for s in seen)
    panel.slider.setFocus()
    qtbot.keyClick(panel.slider, Qt.Key.Key_Left)
    assert state.explore.index == 18
    panel.spin.setValue(4)
    assert state.explore.index == 4 and panel.slider.value() == 4
    view.sliceStep.emit(1)  # the wheel over the images
    assert state.explore.index == 5 and panel.slider.value() == 5

    # presets and typed values go to the state; the views follow without a render
    renders = state.renderer
    panel.apply_preset("bone")
    assert state.explore.window == (480.0, 2500.0)
    assert view.generated.image is None or view.generated.window() == (480.0, 2500.0)
    assert panel.preset_combo.currentText().startswith("Bone")
    panel.width_spin.setValue(350)
    panel.width_spin.editingFinished.emit()
    assert state.explore.window == (480.0, 350.0)
    assert panel.preset_combo.currentText() == "Custom"
    assert renders is state.renderer


def test_open_the_real_t2_in_an_auto_window(qtbot, state, panel, real_t2_nifti) -> None:
    _open(qtbot, state, lambda: panel.open_path(real_t2_nifti))
    source = state.explore.source
    assert source is not None and source.modality == "MR" and source.num_slices == 19
    assert panel.slider.maximum() == 18 and panel.spin.maximum() == 18
    assert panel.preset_combo.currentText() == AUTO
    level, width = state.explore.window
    low, high = level - width / 2, level + width / 2
    values = source.volume.array
    assert values.min() <= low < high <= values.max()  # inside the data, not 0..max
    panel.slider.setValue(3)
    assert state.explore.index == 3


def test_dicom_browser_lists_patient_study_series_and_opens_the_choice(
    qtbot, state, panel, two_series
) -> None:
    folder, copy_uid = two_series
    browser = panel.open_path(folder)
    assert isinstance(browser, DicomBrowser)
    qtbot.waitUntil(
        lambda: browser.isVisible() and len(browser.series_entries()) == 2, timeout=30_000
    )

    entries = browser.series_entries()
    assert {e.info.num_images for e in entries} == {20}
    assert copy_uid in {e.uid for e in entries}
    patient = browser.tree.topLevelItem(0)
    study = patient.child(0)
    assert study is not None and study.child(0) is not None  # patient > study > series
    labels = [browser.tree.topLevelItem(i).text(0) for i in range(browser.tree.topLevelItemCount())]
    assert all(labels)

    assert browser.select_series(copy_uid)
    open_button = browser.buttons.button(QDialogButtonBox.StandardButton.Open)
    assert open_button.isEnabled()
    _open(qtbot, state, open_button.click)
    assert state.opened["series_uid"] == copy_uid
    assert state.explore.source.num_slices == 20
    assert not browser.isVisible()


def test_a_series_opened_by_its_number_is_saved_by_its_uid(
    qtbot, state, second_state, two_series, tmp_path
) -> None:
    """``gui FOLDER --series N`` opens the series listed as [N]; the session keeps its UID,
    so it reopens that series after the folder gains one listed before it."""
    from tests.core.test_explore import series_copy
    from trainer.data.dicom_read import list_dicom_series

    folder, copy_uid = two_series
    number = [s.uid for s in list_dicom_series(folder)].index(copy_uid) + 1
    _open(qtbot, state, lambda: state.open_scan(folder, str(number)))
    assert state.opened["series_uid"] == state.explore.source.series_uid == copy_uid
    shown = state.explore.source.volume.array.copy()
    path = state.save_session(tmp_path / "s.medstyle")
    assert path is not None

    series_copy(folder / "original", folder / "added", 500.0, SeriesInstanceUID="1.1")
    assert [s.uid for s in list_dicom_series(folder)].index(copy_uid) + 1 == number + 1
    other = second_state
    _open(qtbot, other, lambda: other.open_session(path))
    assert other.opened["series_uid"] == other.explore.source.series_uid == copy_uid
    np.testing.assert_array_equal(other.explore.source.volume.array, shown)


def test_a_folder_with_one_series_opens_without_the_browser(
    qtbot, state, panel, real_ct_dicom
) -> None:
    _open(qtbot, state, lambda: panel.open_path(real_ct_dicom))
    assert panel._browser is not None and not panel._browser.isVisible()
    assert state.opened["series_uid"] is None  # the only series: nothing to choose


def test_the_browser_says_when_a_folder_has_no_dicom(qtbot, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("not a scan")
    browser = DicomBrowser(tmp_path)
    qtbot.addWidget(browser)
    assert browser.series_entries() == []
    assert "contains no DICOM files" in browser.status.text()
    assert not browser.buttons.button(QDialogButtonBox.StandardButton.Open).isEnabled()
