"""Fixtures for the trainer's tests: a small real training set made from the phantom."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def gan_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """192 slices (4 phantom patients, CT and MR, 24 slices each) at 32 px."""
    from trainer.data.dataset import build_dataset
    from trainer.data.phantom import CohortOptions, write_cohort

    root = tmp_path_factory.mktemp("gan_data")
    cohort = write_cohort(
        root / "cohort",
        CohortOptions(patients=4, seed=0, size=64, slices=24),
        workers=1,
        progress=False,
    )
    data = root / "data.h5"
    return build_dataset([cohort], data, size=32, register=False, n4=False, progress=False)
