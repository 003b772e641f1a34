"""Embedding: encoder start, refinement, batching, progress and cancel, LATENTS.h5."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from medstyle_gui.core.embed import (
    CONVERGED_LR,
    REFINE_LR,
    EmbedCancelled,
    embed_images,
    refinement_loss,
)
from medstyle_gui.core.latents import (
    LatentsError,
    check_latents_model,
    parse_rows,
    read_latents,
    slices_from_dataset,
    write_latents,
)
from medstyle_gui.core.model import load_model
from trainer.errors import ConfigError, ScanWriteError


@pytest.fixture(scope="module")
def model(tiny_bundle: Path):
    return load_model(tiny_bundle)


@pytest.fixture(scope="module")
def slices(model, gan_data: Path):
    return slices_from_dataset(model, gan_data)


def test_refinement_lowers_the_error_from_the_encoders_start(model, slices) -> None:
    rows = np.arange(0, len(slices.images), 12)  # CT and MR slices of every patient
    part = slices.subset(rows)
    result = embed_images(model, part.images, part.modalities, steps=60, batch=8)
    # the loss curve starts at E(x) and falls for every slice
    assert (result.loss_curve[-1] < result.loss_curve[0]).all()
    for modality in ("CT", "MR"):
        m = np.array(part.modalities) == modality
        assert m.any()
        assert np.median(result.error_refined[m]) < 0.95 * np.median(result.error_encoder[m])
    # the reported reconstruction is G(w) of the returned latent
    again = model.synthesise(torch.from_numpy(result.w))[:, 0].numpy()
    np.testing.assert_allclose(again, result.images, atol=1e-5)


def test_a_larger_rate_converges_further_in_the_same_steps(model, slices) -> None:
    # the paper's rate stops short of the minimum in W; CONVERGED_LR gets closer to it
    part = slices.subset(np.arange(0, len(slices.images), 24))
    paper = embed_images(model, part.images, part.modalities, steps=40)
    fast = embed_images(model, part.images, part.modalities, steps=40, lr=CONVERGED_LR)
    assert paper.lr == REFINE_LR and fast.lr == CONVERGED_LR
    assert fast.loss_curve[-1].mean() < 0.9 * paper.loss_curve[-1].mean()
    assert np.median(fast.error_refined) < np.median(paper.error_refined)
    with pytest.raises(ConfigError, match="lr > 0"):
        embed_images(model, part.images, part.modalities, steps=1, lr=0.0)


def test_bf16_refinement_reaches_the_float32_error_and_reports_float32_images(
    model, slices
) -> None:
    rows = np.arange(0, len(slices.images), 24)
    part = slices.subset(rows)
    fp32 = embed_images(model, part.images, part.modalities, steps=30, batch=8)
    bf16 = embed_images(model, part.images, part.modalities, steps=30, batch=8, bf16=True)
    assert bf16.images.dtype == np.float32 and bf16.w.dtype == np.float32
    # the reported reconstruction and errors are G(w) in float32, as the explorer renders
    again = model.synthesise(torch.from_numpy(bf16.w))[:, 0].numpy()
    np.testing.assert_allclose(again, bf16.images, atol=1e-5)
    np.testing.assert_allclose(bf16.error_encoder, fp32.error_encoder, rtol=1e-5)
    # bf16 arithmetic steers the same optimisation to about the same place
    assert np.median(bf16.error_refined) < np.median(bf16.error_encoder)
    assert np.median(bf16.error_refined) <= 1.1 * np.median(fp32.error_refined)


def test_batching_does_not_change_a_slices_result(model, slices) -> None:
    """Each slice is its own problem: alone or in a batch of five, the same w."""
    images, mods = slices.images[:5], slices.modalities[:5]
    batched = embed_images(model, images, mods, steps=6, batch=5)
    alone = embed_images(model, images, mods, steps=6, batch=1)
    np.testing.assert_allclose(batched.w, alone.w, atol=1e-4)
    np.testing.assert_allclose(batched.error_refined, alone.error_refined, rtol=1e-3)


def test_progress_reports_every_step_and_cancel_stops(model, slices) -> None:
    seen = []
    embed_images(
        model, slices.images[:3], slices.modalities[:3], steps=4, batch=2, progress=seen.append
    )
    assert [(p.slices_done, p.step) for p in seen] == [
        (0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4)
    ]  # fmt: skip
    assert all(np.isfinite(p.loss) and p.slices_total == 3 for p in seen)
    calls = iter(range(100))
    with pytest.raises(EmbedCancelled):
        embed_images(
            model,
            slices.images[:3],
            slices.modalities[:3],
            steps=50,
            cancel=lambda: next(calls) >= 5,
        )


def test_discriminator_features_join_the_loss_from_64_px(tiny_gan_bundle: Path) -> None:
    """A 64 px model compares D's first-conv features at 64 px; the loss is then larger
    than the pixel term alone."""
    from medstyle_gui.core.embed import target_features
    from trainer.networks.stylegan import Discriminator, Generator, StyleGANConfig

    model = load_model(tiny_gan_bundle)
    cfg = StyleGANConfig.slim(64)
    torch.manual_seed(0)
    model.G, model.D = Generator(cfg).eval(), Discriminator(cfg).eval()
    model.w_mean = torch.zeros(cfg.w_dim)
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    feats = target_features(model, x)
    assert list(feats) == [64]
    w = torch.zeros(2, cfg.w_dim)
    with_features, image = refinement_loss(model, w, x, feats)
    pixels = (image - x).flatten(1).norm(dim=1)
    assert (with_features > pixels + 1e-3).all()


def test_images_of_the_wrong_size_are_refused_in_one_line(model) -> None:
    with pytest.raises(ConfigError, match="do not fit the model's 32 x 32 matrix"):
        embed_images(model, np.zeros((2, 64, 64)), ["CT", "CT"], steps=1)
    with pytest.raises(ConfigError, match="NaN"):
        embed_images(model, np.full((1, 32, 32), np.nan), ["CT"], steps=1)


def test_latents_file_round_trips_and_names_its_model(model, slices, tmp_path: Path) -> None:
    part = slices.subset(np.arange(4))
    result = embed_images(model, part.images, part.modalities, steps=2, lr=0.01)
    path = write_latents(tmp_path / "l.h5", model, part, result)
    latents = read_latents(path)
    np.testing.assert_array_equal(latents.w, result.w)
    np.testing.assert_array_equal(latents.columns["slice_index"], part.labels["slice_index"])
    assert latents.attrs["model_sha256"] == model.sha256 and latents.attrs["refine_steps"] == 2
    assert latents.attrs["refine_lr"] == 0.01
    check_latents_model(latents, model, path)
    with pytest.raises(ScanWriteError, match="already exists"):
        write_latents(path, model, part, result)
    latents.attrs["model_sha256"] = "0" * 64
    with pytest.raises(LatentsError, match="another model"):
        check_latents_model(latents, model, path)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(LatentsError, match=r"other\.h5: is not a medstyle latents file"):
        read_latents(tmp_path / "other.h5")


def test_slice_selection_syntax() -> None:
    assert parse_rows(None, 4).tolist() == [0, 1, 2, 3]
    assert parse_rows("1:3", 10).tolist() == [1, 2]
    assert parse_rows("0:10:4", 10).tolist() == [0, 4, 8]
    assert parse_rows("2,5,-1", 10).tolist() == [2, 5, 9]
    for bad in ("x", "20:30", "12"):
        with pytest.raises(ConfigError, match="--slices"):
            parse_rows(bad, 10)


def test_directions_fitted_on_embedded_phantom_slices_separate_them(
    tiny_bundle: Path, tiny_latents: Path
) -> None:
    """The session's tiny model: directions fitted on its own embeddings of the phantom
    slices classify held-out patients' slices (modality, slice class) and every slice."""
    from medstyle_gui.core.latents import read_latents
    from trainer.directions import load_directions, slice_classes

    directions = load_directions(tiny_bundle)
    latents = read_latents(tiny_latents)
    w = torch.from_numpy(latents.w)
    modality = latents.columns["modality"].astype(int)
    assert directions["modality"].metrics["logistic_accuracy"] >= 0.95
    assert (directions["modality"].predict(w).numpy() == modality).mean() >= 0.9
    classes = slice_classes(latents.columns["slice_norm"])
    known = classes >= 0
    predicted = directions["slice"].predict(w[known]).numpy()
    assert (predicted == classes[known]).mean() >= 0.9
