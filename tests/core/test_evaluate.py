"""The paper's experiments on a tiny trained model, in quick mode: table shapes, finite
values, the identities each experiment must meet, and the report folder."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from medstyle_gui.core.embed import embed_images
from medstyle_gui.core.evaluate import (
    QUICK,
    Truths,
    curvature_table,
    evaluate,
    layer_masks,
    mean_ci,
    modality_sweep,
    open_eval_data,
    parse_experiments,
    render,
    slice_walk,
    style_transfer,
)
from medstyle_gui.core.evaluate.figures import DPI, SIZES
from medstyle_gui.core.latent import layer_names
from medstyle_gui.core.latents import slices_from_dataset, write_latents
from medstyle_gui.core.model import load_model
from trainer.directions import fit_directions, save_directions
from trainer.errors import ConfigError, MedstyleError
from trainer.metrics import slice_errors


@pytest.fixture(scope="module")
def tiny(tiny_gan_bundle: Path, gan_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny bundle with directions fitted on its embedded training slices, the
    slices' LATENTS.h5, and the evaluation data built from both."""
    root = tmp_path_factory.mktemp("evaluate")
    bundle = root / "bundle"
    shutil.copytree(tiny_gan_bundle, bundle)
    model = load_model(bundle)
    slices = slices_from_dataset(model, gan_data)
    embedded = embed_images(model, slices.images, slices.modalities, steps=5, batch=64)
    latents = write_latents(root / "latents.h5", model, slices, embedded)
    save_directions(bundle, fit_directions(latents, trials=2, seed=0, max_epochs=20))
    model = load_model(bundle)
    data = open_eval_data(model, data=gan_data, latents=latents, quick=True)
    return SimpleNamespace(
        root=root, model=model, gan_data=gan_data, latents=latents, data=data, embedded=embedded
    )


def _check_ci(rows: list[dict]) -> None:
    for r in rows:
        assert r["n"] > 0
        assert np.isfinite([r["mean"], r["sd"], r["ci_low"], r["ci_high"]]).all()
        assert r["ci_low"] <= r["mean"] <= r["ci_high"]


def test_mean_ci_and_truths_match_the_paper_errors():
    stats = mean_ci(np.array([1.0, 2.0, 3.0, np.nan]))
    assert stats["n"] == 3 and stats["mean"] == 2.0
    assert stats["ci_high"] - 2.0 == pytest.approx(1.96 * 1.0 / np.sqrt(3))
    rng = np.random.default_rng(0)
    truth = np.full((2, 32, 32), -1.0, np.float32)
    truth[:, 8:24, 8:24] = rng.uniform(-0.5, 0.5, (2, 16, 16))
    gen = rng.uniform(-1, 1, (3, 32, 32)).astype(np.float32)
    from trainer.data.normalise import PAPER

    scored = Truths(truth, ["CT", "MR"], PAPER).score(gen, [0, 1, 1])
    expected = slice_errors(gen, truth[[0, 1, 1]], ["CT", "MR", "MR"], PAPER)
    np.testing.assert_allclose(scored[0], expected[0])
    np.testing.assert_allclose(scored[1], expected[1])


def test_modality_sweep_quick(tiny):
    result = modality_sweep(tiny.model, tiny.data, n=12, steps=7)
    assert len(result.rows) == 2 * 7
    np.testing.assert_allclose(result.alphas, np.logspace(-2, 2, 7))
    _check_ci(result.rows)
    assert {r["direction"] for r in result.rows} == {"MR->CT", "CT->MR"}
    assert all(r["n"] == 6 for r in result.rows)
    # a logistic direction: each alpha step moves the signed distance by exactly alpha,
    # toward CT (> 0) for MR->CT and toward MR for CT->MR
    assert tiny.model.directions["modality"].kind == "logistic"
    for translation, sign in (("MR->CT", 1.0), ("CT->MR", -1.0)):
        dist = np.array([r["distance"] for r in result.rows if r["direction"] == translation])
        np.testing.assert_allclose(np.diff(dist), sign * np.diff(result.alphas), rtol=1e-4)
    assert result.best("MR->CT")["unit"] == "MAE (HU)"
    assert result.best("CT->MR")["unit"] == "RMSE ([-1, 1])"


def test_slice_walk_quick(tiny):
    model, data = tiny.model, tiny.data
    result = slice_walk(model, data, volumes=2, central=9, factors=9)
    assert result.k == 9 and set(result.matrix) == {"MR", "CT"}
    for m in ("MR", "CT"):
        assert result.matrix[m].shape == (9, 9) and np.isfinite(result.matrix[m]).all()
        assert result.factor_errors[m].shape == (9, 9)
    assert len(result.distance_rows) == 2 * 17
    _check_ci(result.distance_rows)
    assert len(result.factor_rows) == 2 * 9 and len(result.summary_rows) == 2
    for s in result.summary_rows:
        assert np.isfinite([s["units_per_slice_used"], s["units_per_slice_measured"]]).all()
    assert result.calibration_source == "the direction's calibration"
    # the diagonal (no move) is the reconstruction error of the slices themselves
    for vol, mat in zip(result.volume_rows, result.volume_matrices, strict=True):
        rows = np.flatnonzero(data.labels["volume"] == vol["volume"])
        rows = rows[vol["first_central_index"] - data.labels["slice_index"][rows[0]] :][:9]
        images = render(model, torch.from_numpy(data.latents(rows)))
        truth = data.images(rows)
        err, _ = slice_errors(images, truth, data.modality(rows), model.normalisation)
        np.testing.assert_allclose(np.diag(mat), err, rtol=1e-6)
        np.testing.assert_allclose(np.diag(mat), tiny.embedded.error_refined[rows], rtol=1e-3)


def test_slice_walk_calibrates_when_the_direction_has_no_calibration(tiny):
    slice_dir = dataclasses.replace(tiny.model.directions["slice"], calibration=None)
    model = dataclasses.replace(tiny.model, directions={"slice": slice_dir})
    result = slice_walk(model, tiny.data, volumes=2, central=5, factors=3)
    assert result.calibration_source == "calibrated on these slices"
    assert np.isfinite(result.units_per_slice) and result.k == 5


def test_style_transfer_quick(tiny):
    model, data = tiny.model, tiny.data
    result = style_transfer(model, data, n=12)
    names = layer_names(model.config)
    assert result.layers == names == ["4x4", "8x8", "16x16", "32x32"]
    assert len(result.rows) == 2 * (1 + 2 * len(names))
    _check_ci(result.rows)
    assert result.row("MR->CT", "from", "8x8")["paper"] == 58.6
    for translation, src in result.source_rows.items():
        # from 4x4 the target's w drives every layer: the target's own reconstruction
        target = data.labels["pair_index"][src]
        images = render(model, torch.from_numpy(data.latents(target)))
        err, _ = slice_errors(
            images, data.images(target), data.modality(target), model.normalisation
        )
        assert result.row(translation, "from", "4x4")["mean"] == pytest.approx(err.mean(), 1e-6)
        # the last layer alone and the last layer onward are the same injection
        last_from, last_only = (result.row(translation, m, "32x32") for m in ("from", "only"))
        assert last_from["mean"] == pytest.approx(last_only["mean"], 1e-9)


def test_style_transfer_refuses_a_layer_past_the_model(tiny):
    with pytest.raises(ConfigError, match="64x64"):
        layer_masks(tiny.model, ["64x64"], "from")
    with pytest.raises(ConfigError, match="64x64"):
        style_transfer(tiny.model, tiny.data, n=2, layers=["64x64"])
    masks = layer_masks(tiny.model, ["16x16"], "from")["16x16"]
    assert masks.tolist() == [False] * 4 + [True] * 4


def test_curvature_quick(tiny):
    result = curvature_table(tiny.model, tiny.data, points=16, tangents=16, samples=32)
    by_name = {r["direction"]: r for r in result.rows}
    assert set(by_name) == set(tiny.model.directions)
    # the conditional direction is a plane: said, not measured
    plane = by_name["modality|slice"]
    assert plane["mean"] == 0.0 and "logistic only" in plane["note"]
    for name in ("sex", "slice"):
        row = by_name[name]
        assert row["points"] == 16 and np.isfinite([row["mean"], row["std"]]).all()
        assert result.values[name].shape == (16,)
        assert row["paper_mean"] != ""


def test_latents_of_a_subset_are_matched_to_their_rows(tiny):
    model = tiny.model
    slices = slices_from_dataset(model, tiny.gan_data)
    rows = np.arange(0, len(slices.images), 3)
    e = tiny.embedded
    fields = ("w", "w_encoder", "images", *(f for f in vars(e) if f.startswith("error_")))
    part = dataclasses.replace(e, **{f: getattr(e, f)[rows] for f in fields})
    path = write_latents(tiny.root / "subset.h5", model, slices.subset(rows), part)
    data = open_eval_data(model, data=tiny.gan_data, latents=path)
    assert np.flatnonzero(data.available).tolist() == rows.tolist()
    np.testing.assert_array_equal(data.latents(rows[:4]), e.w[rows[:4]])


def test_parse_experiments_and_missing_directions(tiny, tmp_path):
    assert parse_experiments("all") == ["modality", "slice", "mixing", "curvature"]
    assert parse_experiments("curvature,modality") == ["modality", "curvature"]
    with pytest.raises(ConfigError, match="unknown experiment 'fid'"):
        parse_experiments(["modality", "fid"])
    bare = dataclasses.replace(tiny.model, directions={})
    with pytest.raises(ConfigError, match="no 'slice' direction") as err:
        evaluate(bare, "slice", data=tiny.gan_data, out=tmp_path / "r")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "r").exists()


def test_evaluate_all_quick_writes_the_report(tiny):
    out = tiny.root / "report"
    lines: list[str] = []
    args = {"data": tiny.gan_data, "latents": tiny.latents, "quick": True, "seed": 0}
    assert evaluate(tiny.model, "all", out=out, progress=lines.append, **args) == out
    assert any("experiment: slice" in line for line in lines)
    report = (out / "report.md").read_text()
    for text in ("73.6", "58.6", "0.031", "-0.0013", "phantom", "quick", tiny.model.sha256):
        assert text in report
    for name in ("modality", "slice_walk", "slice_distance", "mixing", "curvature"):
        with Image.open(out / f"{name}.png") as png:
            assert png.size == (round(SIZES[name][0] * DPI), round(SIZES[name][1] * DPI))
    with open(out / "modality.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2 * QUICK.alpha_steps
    with open(out / "slice_matrix.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2 * QUICK.slice_central**2
    first = {p.name: p.read_bytes() for p in out.glob("*.csv")}
    # an existing report is refused in one line, and replaced only when asked
    with pytest.raises(MedstyleError, match="already exists") as err:
        evaluate(tiny.model, "curvature", out=out, **args)
    assert "\n" not in str(err.value)
    evaluate(tiny.model, "all", out=out, overwrite=True, **args)
    # the same seed gives the same numbers
    assert {p.name: p.read_bytes() for p in out.glob("*.csv")} == first
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_evaluate_embeds_slices_of_a_cohort_folder(tiny):
    cohort = tiny.gan_data.parent / "cohort"
    out = tiny.root / "from_cohort"
    settings = dataclasses.replace(QUICK, mixing_n=4)
    evaluate(
        tiny.model,
        "mixing",
        data=cohort,
        out=out,
        quick=True,
        refine_steps=1,
        settings=settings,
        bf16=True,
    )
    report = (out / "report.md").read_text()
    assert "embedded here: 8 slices, 1 refinement steps at learning rate 0.001 (bf16)" in report
    assert "(phantom, 192 slices" in report
    with open(out / "mixing.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * (1 + 2 * 4) and all(int(r["n"]) == 2 for r in rows)


def test_latents_of_another_dataset_are_refused(tiny, tmp_path):
    """Rows are matched by volume and slice number: latents embedded from one dataset
    must not be laid over another dataset's slices."""
    import shutil

    from medstyle_gui.core.evaluate import open_eval_data
    from trainer.errors import MedstyleError

    other = Path(shutil.copyfile(tiny.gan_data, tmp_path / "other.h5"))
    open_eval_data(tiny.model, data=tiny.gan_data, latents=tiny.latents)  # its own: fine
    with pytest.raises(MedstyleError, match="was embedded from"):
        open_eval_data(tiny.model, data=other, latents=tiny.latents)


def test_a_dataset_built_from_relative_folders_is_known_as_phantom(
    gan_data: Path, tmp_path: Path, monkeypatch
) -> None:
    # datasets record study folders as given; evaluate may run from another directory
    from medstyle_gui.core.evaluate.data import _dataset_is_phantom
    from trainer.data.dataset import build_dataset

    work = tmp_path / "work"
    shutil.copytree(gan_data.parent / "cohort" / "P0001", work / "cohort" / "P0001")
    monkeypatch.chdir(work)
    data = build_dataset(
        ["cohort/P0001"], Path("one.h5"), size=32, register=False, n4=False, progress=False
    )
    monkeypatch.chdir(tmp_path)
    assert _dataset_is_phantom(work / data) is True
