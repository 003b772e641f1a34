"""Shared fixtures: real scans from ../shared/data/real and pydicom's test files,
and small synthetic volumes with known geometry."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """``../shared/data/real`` beside the checkout; tests skip when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real scans not found at {REAL_DATA} (a plain clone has no ../shared)")
    return REAL_DATA


@pytest.fixture(scope="session")
def real_ct_dicom(real_data: Path) -> Path:
    return real_data / "ct_abdomen_dicom"


@pytest.fixture(scope="session")
def real_t2_nifti(real_data: Path) -> Path:
    return real_data / "pelvis_t2_prostatex0000.nii.gz"


def pydicom_test_file(name: str) -> Path:
    """A file shipped with pydicom or pydicom-data, never downloaded."""
    from pydicom.data import get_testdata_file

    try:
        path = get_testdata_file(name, download=False)
    except Exception:  # pragma: no cover - depends on installed data packages
        path = None
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(path)


@pytest.fixture
def make_volume():
    """Factory for a small Volume with a smooth, asymmetric pattern (so flips show)."""
    from trainer.data.volume import Volume

    def _make(shape=(6, 20, 24), spacing=(3.0, 1.5, 1.25), modality="CT", **kw) -> Volume:
        z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
        if modality == "CT":
            array = -1000.0 + 40.0 * z + 17.0 * y + 3.0 * x
        else:
            array = 100.0 + 30.0 * z + 11.0 * y + 2.0 * x
        return Volume(array=array, spacing_mm=spacing, modality=modality, **kw)

    return _make
