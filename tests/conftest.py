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


# -- small trained models, made by our own code once per test session ---------------------

#: A GAN small enough to train in about ten seconds on one CPU core: slim 32 px, 32-d w.
TINY_GAN = {
    "network": "slim",
    "network_overrides": {"z_dim": 32, "w_dim": 32, "mapping_layers": 2, "channel_max": 32},
    "start_resolution": 32,
    "stabilise_kimg": 1.0,
    "fade_kimg": 0.0,
    "kimg": 0.8,
    "batch_sizes": {"32": 16},
    "tick_kimg": 0.4,
    "snapshot_kimg": 0.8,
    "metric_images": 64,
    "workers": 0,
    "device": "cpu",
}


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


@pytest.fixture(scope="session")
def tiny_gan_bundle(gan_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model bundle (generator.pt with G_ema, D, w_avg) from a 0.8 kimg run on gan_data.

    Read-only for tests: copy it (``shutil.copytree``) before adding files to it.
    """
    import torch

    from trainer.loops.gan import train_gan
    from trainer.loops.gan_config import GANTrainConfig

    folder = tmp_path_factory.mktemp("tiny_gan")
    cfg = GANTrainConfig.from_dict({**TINY_GAN, "data": str(gan_data), "out": str(folder / "run")})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train_gan(cfg, progress=False)
    finally:
        torch.set_num_threads(threads)
    return run / "bundle"


@pytest.fixture(scope="session")
def tiny_bundle(
    tiny_gan_bundle: Path, gan_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny GAN plus an encoder (0.4 kimg) and directions fitted on 10-step embeddings
    of every gan_data slice (written beside it as ``latents.h5``, see ``tiny_latents``).

    Read-only for tests: copy it before changing it.
    """
    import shutil

    import torch

    from medstyle_gui.core.embed import embed_images
    from medstyle_gui.core.latents import slices_from_dataset, write_latents
    from medstyle_gui.core.model import load_model
    from trainer.directions import fit_directions, save_directions
    from trainer.loops.encoder import train_encoder
    from trainer.loops.encoder_config import EncoderTrainConfig

    root = tmp_path_factory.mktemp("tiny_bundle")
    bundle = Path(shutil.copytree(tiny_gan_bundle, root / "bundle"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = EncoderTrainConfig(
            model=str(bundle), out=str(root / "encoder_run"), kimg=0.4, batch=8, device="cpu"
        )
        train_encoder(cfg, progress=False)
        model = load_model(bundle)
        slices = slices_from_dataset(model, gan_data)
        result = embed_images(model, slices.images, slices.modalities, steps=10, batch=64)
        latents = write_latents(root / "latents.h5", model, slices, result)
        save_directions(bundle, fit_directions(latents, trials=2, seed=0))
    finally:
        torch.set_num_threads(threads)
    return bundle


@pytest.fixture(scope="session")
def tiny_latents(tiny_bundle: Path) -> Path:
    """LATENTS.h5 of every gan_data slice under ``tiny_bundle`` (10 refinement steps)."""
    return tiny_bundle.parent / "latents.h5"
