"""Latent directions on synthetic latents with known structure."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import trainer.directions.fit as fit_module
from trainer.bundle import verify_bundle
from trainer.data.latents_file import ERROR_COLUMNS, LABEL_COLUMNS, write_latents_file
from trainer.directions import (
    Direction,
    DirectionError,
    calibrate_slice,
    conditional_direction,
    directions_embedding,
    fit_direction,
    fit_directions,
    grouped_split,
    linear_direction,
    load_directions,
    save_directions,
    select_model,
    slice_classes,
)
from trainer.errors import MedstyleError, ScanWriteError

W_DIM = 32


def unit(rng: np.random.Generator, d: int = W_DIM) -> np.ndarray:
    u = rng.standard_normal(d)
    return u / np.linalg.norm(u)


def clouds(n=200, patients=20, sep=3.0, seed=0):
    """Two Gaussian clouds at -sep and +sep along a known unit ``u`` in 32-d, with a small
    offset per patient (slices of a patient sit together, as in W)."""
    rng = np.random.default_rng(seed)
    u = unit(rng)
    groups = np.arange(n) % patients
    labels = rng.integers(0, 2, n)
    patient_shift = 0.3 * rng.standard_normal((patients, W_DIM))[groups]
    w = rng.standard_normal((n, W_DIM)) + patient_shift + np.outer(np.where(labels, sep, -sep), u)
    return w.astype(np.float32), labels, groups, u


def ring(n=200, patients=20, seed=0):
    """A curved boundary: class 1 outside a circle of radius 1.3 in a 2-D plane of W, plus
    a little noise off the plane (so W is recoverable from a dense net's hidden layer)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, (n, 2))
    plane = np.linalg.qr(rng.standard_normal((W_DIM, 2)))[0]
    w = x @ plane.T + 0.01 * rng.standard_normal((n, W_DIM))
    labels = (np.linalg.norm(x, axis=1) > 1.3).astype(np.int64)
    return w.astype(np.float32), labels, np.arange(n) % patients


@pytest.fixture(scope="module")
def ring_direction() -> Direction:
    w, labels, groups = ring()
    return fit_direction("ring", w, labels, groups, ("inside", "outside"), trials=4, seed=0)


# -- split, classes, selection rule -----------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grouped_split_never_puts_a_patient_on_both_sides(seed):
    _, labels, groups, _ = clouds(seed=seed)
    train, val = grouped_split(labels, groups, seed=seed)
    assert not set(groups[train]) & set(groups[val])
    assert train.size + val.size == labels.size
    assert set(labels[train]) == set(labels[val]) == {0, 1}
    assert len(set(groups[val])) == 4  # 20 % of 20 patients


def test_grouped_split_needs_two_patients():
    with pytest.raises(DirectionError, match="two patients"):
        grouped_split(np.array([0, 1, 0, 1]), np.zeros(4))


def test_slice_classes_thresholds():
    s = [0.0, 0.39, 0.4, 0.5, 0.6, 0.61, 1.0, float("nan")]
    out = slice_classes(s)
    assert out.dtype == np.int8
    assert out.tolist() == [0, 0, -1, -1, -1, 1, 1, -1]


def test_select_model_rule():
    assert select_model(0.99, 1.0, 0.98) == "logistic"  # the paper's slice case
    assert select_model(0.98, 1.0, 0.98) == "logistic"  # a tie: the paper's sex case
    assert select_model(0.70, 0.95, 0.20) == "logistic"  # poor reverse R2
    assert select_model(0.70, 0.95, 0.90) == "dense"  # 0.855 beats 0.70
    assert select_model(0.70, None, None) == "logistic"
    assert select_model(0.70, 0.95, None) == "logistic"


# -- fitting ----------------------------------------------------------------------------


def test_logistic_direction_on_separable_clouds():
    w, labels, groups, u = clouds()
    labels = labels.copy()
    labels[:10] = -1  # left out
    d = fit_direction("toy", w, labels, groups, ("a", "b"), trials=0)
    assert d.kind == "logistic" and d.forward_net is None and d.reverse_net is None
    assert d.metrics["logistic_accuracy"] >= 0.97
    assert d.metrics["n_left_out"] == 10
    assert float(d.normal.double() @ torch.from_numpy(u)) > 0.95
    assert float(d.normal.norm()) == pytest.approx(1.0, abs=1e-6)
    wt = torch.from_numpy(w)
    assert (d.predict(wt).numpy()[10:] == labels[10:]).mean() >= 0.97
    sd = d.signed_distance(wt)
    assert torch.equal(d.predict(wt), (sd > 0).long())
    assert torch.allclose(d.probability(wt), torch.sigmoid(d.scale * sd))
    assert torch.equal(d.to_hidden(wt), wt) and torch.equal(d.from_hidden(wt), wt)


def test_dense_search_is_not_selected_when_logistic_is_as_good():
    w, labels, groups, _ = clouds()
    d = fit_direction("toy", w, labels, groups, ("a", "b"), trials=2, max_epochs=30)
    assert d.kind == "logistic"
    assert d.metrics["dense_accuracy"] <= d.metrics["logistic_accuracy"]
    assert d.metrics["reverse_r2"] is None  # R2 <= 1: no reverse model can change the choice
    assert d.dense is not None  # kept for the curvature analysis


def test_dense_selected_on_a_curved_boundary(ring_direction):
    d = ring_direction
    m = d.metrics
    assert m["dense_accuracy"] > m["logistic_accuracy"] + 0.05
    assert m["reverse_r2"] > 0.9
    assert d.kind == "dense" == m["selected"]
    assert len(m["dense_trials"]) == 4 and len(m["reverse_trials"]) == 4
    w, labels, _ = ring()
    wt = torch.from_numpy(w)
    h = d.to_hidden(wt)
    assert h.shape == (len(w), d.h_dim)
    assert d.from_hidden(h).shape == wt.shape
    assert (d.predict(wt).numpy() == labels).mean() > 0.85
    assert torch.allclose(d.probability(wt), torch.sigmoid(d.dense(wt)), atol=1e-5)


def test_reverse_r2_too_poor_falls_back_to_logistic(monkeypatch):
    real = fit_module.search_reverse

    def poor(*args, **kwargs):
        net, info = real(*args, **kwargs)
        return net, {**info, "reverse_r2": 0.3}

    monkeypatch.setattr(fit_module, "search_reverse", poor)
    w, labels, groups = ring()
    d = fit_direction("ring", w, labels, groups, ("inside", "outside"), trials=4, seed=0)
    assert d.metrics["dense_accuracy"] > d.metrics["logistic_accuracy"]
    assert d.kind == "logistic" == d.metrics["selected"]


def test_fit_direction_is_deterministic():
    w, labels, groups = ring(n=120)
    fits = [
        fit_direction("r", w, labels, groups, ("a", "b"), trials=2, seed=5, max_epochs=20)
        for _ in range(2)
    ]
    assert torch.equal(fits[0].normal, fits[1].normal)
    a, b = ({k: v for k, v in f.metrics.items() if k != "fit_seconds"} for f in fits)
    assert a == b


def test_fit_direction_rejects_bad_labels():
    w, labels, groups, _ = clouds(n=40, patients=4)
    with pytest.raises(DirectionError, match="0, 1 or -1"):
        fit_direction("x", w, labels + 1, groups, ("a", "b"), trials=0)
    with pytest.raises(DirectionError, match="one class"):
        fit_direction("x", w, np.zeros(40, int), groups, ("a", "b"), trials=0)


# -- calibration and conditional directions -------------------------------------------------


def test_calibrate_slice_recovers_units_per_slice():
    rng = np.random.default_rng(3)
    u = unit(rng)
    direction = linear_direction("slice", ("inferior", "superior"), u, 0.0)
    k = 0.031  # normal units per slice, the paper's order of magnitude
    rows = []
    for volume in range(6):
        spacing = [2.5, 3.0, 2.5, 2.5, 3.0, 2.5][volume]
        base = rng.standard_normal(W_DIM)
        for i in range(30):
            w = base + k * i * u + 0.005 * rng.standard_normal(W_DIM)
            rows.append((w, volume, i, 10.0 + spacing * i))
    rows.append((rng.standard_normal(W_DIM), 6, 0, 0.0))  # a one-slice volume: left out
    rows.append((rng.standard_normal(W_DIM), -1, 3, 1.0))  # unknown volume: left out
    w = np.stack([r[0] for r in rows]).astype(np.float32)
    vol, idx, z = (np.array([r[i] for r in rows]) for i in (1, 2, 3))
    cal = calibrate_slice(direction, w, vol, idx, z)
    assert cal["n_volumes"] == 6
    assert cal["units_per_slice"] == pytest.approx(k, rel=0.02)
    assert cal["mm_per_slice"] == pytest.approx(2.5)
    assert cal["units_per_mm"] == pytest.approx(k / 2.5, rel=0.02)
    assert direction.calibration == cal


def test_conditional_direction_keeps_the_conditions_fixed():
    rng = np.random.default_rng(4)
    primary = linear_direction("modality", ("MR", "CT"), 2.0 * unit(rng), 0.5)
    conditions = [
        linear_direction("slice", ("inferior", "superior"), unit(rng), -0.2),
        linear_direction("sex", ("F", "M"), unit(rng), 0.1),
    ]
    both = conditional_direction(primary, conditions)
    assert both.name == "modality|slice,sex" and both.conditioned_on == ["slice", "sex"]
    assert both.kind == "logistic" and float(both.normal.norm()) == pytest.approx(1.0, abs=1e-6)
    w = torch.from_numpy(rng.standard_normal((50, W_DIM)).astype(np.float32))
    moved = w + 3.0 * both.normal
    for c in conditions:
        assert torch.allclose(c.signed_distance(moved), c.signed_distance(w), atol=1e-5)
    change = primary.signed_distance(moved) - primary.signed_distance(w)
    assert torch.allclose(change, torch.full_like(change, 3.0 * both.metrics["cos_to_primary"]))
    assert float(change.mean()) > 0.3
    with pytest.raises(DirectionError, match="span"):
        conditional_direction(primary, [primary])


# -- storage in a bundle --------------------------------------------------------------------


def test_save_and_load_round_trip(tiny_gan_bundle, tmp_path, ring_direction, monkeypatch):
    bundle = Path(shutil.copytree(tiny_gan_bundle, tmp_path / "bundle"))
    assert load_directions(bundle) == {}
    w, labels, groups, _ = clouds()
    sex = fit_direction("sex", w, labels, groups, ("F", "M"), trials=1, max_epochs=20)
    dense = ring_direction
    both = conditional_direction(sex, [linear_direction("other", ("a", "b"), np.eye(W_DIM)[0], 0)])
    both.calibration = {"units_per_slice": 0.03, "units_per_mm": None}
    saved = {"sex": sex, "ring": dense, both.name: both}
    assert directions_embedding(bundle) is None
    record = {"refine_steps": 500, "refine_lr": 0.03, "latents": "l.h5", "slices": 40}
    files = save_directions(bundle, saved, embedding=record)
    assert [f.name for f in files] == ["sex.pt", "ring.pt", "sex_given_other.pt"]
    assert directions_embedding(bundle) == record
    manifest = verify_bundle(bundle)
    assert "directions/index.json" in manifest["files"]

    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = load_directions(bundle)
    assert calls == [True, True, True]
    assert sorted(loaded) == sorted(saved)
    probe = torch.from_numpy(np.concatenate([w[:20], ring()[0][:20]]))
    for name, d in saved.items():
        back = loaded[name]
        assert (back.kind, back.classes, back.conditioned_on) == (
            d.kind,
            d.classes,
            d.conditioned_on,
        )
        assert torch.equal(back.signed_distance(probe), d.signed_distance(probe))
        assert torch.equal(
            back.from_hidden(back.to_hidden(probe)), d.from_hidden(d.to_hidden(probe))
        )
        assert back.calibration == d.calibration
        assert back.metrics["selected"] == d.metrics["selected"]
    assert loaded["ring"].kind == "dense" and loaded["sex"].dense is not None

    with pytest.raises(ScanWriteError, match="already has a direction 'sex'"):
        save_directions(bundle, {"sex": sex})
    save_directions(bundle, {"sex": sex}, overwrite=True)
    verify_bundle(bundle)
    assert sorted(load_directions(bundle)) == sorted(saved)  # the index keeps the others
    assert directions_embedding(bundle) == record  # and the embedding record


def test_save_refuses_a_direction_of_another_w_dim(tiny_gan_bundle, tmp_path):
    bundle = shutil.copytree(tiny_gan_bundle, tmp_path / "bundle")
    small = linear_direction("x", ("a", "b"), np.ones(3), 0.0)
    with pytest.raises(DirectionError, match="3-d W"):
        save_directions(bundle, {"x": small})


# -- fit_directions from LATENTS.h5 ---------------------------------------------------------


def write_latents(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """8 patients x (MR, CT) x 20 slices; modality, sex and slice position each along a
    known direction of W, per the LATENTS.h5 layout."""
    rng = np.random.default_rng(seed)
    u_mod, u_sex, u_slice, u_tumour = (unit(rng) for _ in range(4))
    cols: dict[str, list] = {k: [] for k in ("w", "modality", "sex", "patient", "volume")}
    cols.update(slice_index=[], slice_norm=[], z_mm=[], tumour=[])
    for patient in range(8):
        sex = [0, 1][patient % 2] if patient != 7 else -1  # one patient of unknown sex
        shift = 0.2 * rng.standard_normal(W_DIM)
        for modality in (0, 1):
            for i in range(20):
                tumour = int(rng.random() < 0.5)
                w = (
                    shift
                    + 3.0 * (modality - 0.5) * u_mod
                    + 2.0 * (sex - 0.5) * u_sex * (sex >= 0)
                    + 4.0 * (i / 19 - 0.5) * u_slice
                    + 3.0 * (tumour - 0.5) * u_tumour
                    + 0.3 * rng.standard_normal(W_DIM)
                )
                row = {
                    "w": w,
                    "modality": modality,
                    "sex": sex,
                    "patient": patient,
                    "volume": 2 * patient + modality,
                    "slice_index": i,
                    "slice_norm": i / 19,
                    "z_mm": 3.0 * i,
                }
                for key, value in row.items():
                    cols[key].append(value)
                cols["tumour"].append(tumour)
    n = len(cols["w"])
    w = np.stack(cols["w"]).astype(np.float32)
    labels = {key: np.array(cols[key]) for key in LABEL_COLUMNS if key in cols}
    labels["pair_index"] = np.full(n, -1)
    write_latents_file(
        path,
        w=w,
        w_encoder=w,
        errors={name: np.zeros(n) for name in ERROR_COLUMNS},
        labels=labels,
        attrs={"w_dim": W_DIM, "num_ws": 8},
    )
    return {"tumour": np.array(cols["tumour"]), "n": np.array(n)}


def test_fit_directions_from_latents_and_csv(tmp_path):
    latents = tmp_path / "LATENTS.h5"
    truth = write_latents(latents)
    csv_path = tmp_path / "labels.csv"
    rows = range(0, int(truth["n"]), 2)  # half the rows labelled; the rest left out
    csv_path.write_text("row,tumour\n" + "".join(f"{r},{truth['tumour'][r]}\n" for r in rows))
    messages: list[str] = []
    out = fit_directions(latents, extra_labels_csv=csv_path, trials=0, log=messages.append)
    assert sorted(out) == ["modality", "modality|slice", "sex", "slice", "tumour"]
    for name in ("modality", "sex", "slice", "tumour"):
        assert out[name].metrics["logistic_accuracy"] > 0.9, name
    assert out["tumour"].classes == ("not tumour", "tumour")
    assert out["tumour"].metrics["n_train"] + out["tumour"].metrics["n_val"] == 160
    assert out["sex"].metrics["n_left_out"] == 40  # patient 7
    cal = out["slice"].calibration
    assert cal["n_volumes"] == 16 and cal["mm_per_slice"] == pytest.approx(3.0)
    assert cal["units_per_slice"] > 0
    assert cal["units_per_mm"] == pytest.approx(cal["units_per_slice"] / 3.0)
    assert out["modality|slice"].conditioned_on == ["slice"]
    assert out["modality|slice"].metrics["accuracy_all_rows"] > 0.9
    assert any(m.startswith("slice: ") and "units per slice" in m for m in messages)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("row,tumour\n0,1\n99999,0\n", "not in the latents file"),
        ("row,tumour\n0,1\n1,2\n", "not 0, 1 or empty"),
        ("row,tumour\nx,1\n", "not an integer"),
        ("row,tumour\n3,1\n3,0\n", "appears twice"),
        ("tumour\n1\n", "'row' column"),
        ("row,sex\n0,1\n", "clashes"),
        (None, "does not exist"),
    ],
)
def test_bad_label_csv_is_one_line_naming_the_file(tmp_path, text, reason):
    latents = tmp_path / "LATENTS.h5"
    write_latents(latents)
    csv_path = tmp_path / "labels.csv"
    if text is not None:
        csv_path.write_text(text)
    with pytest.raises(MedstyleError) as err:
        fit_directions(latents, extra_labels_csv=csv_path, trials=0)
    message = str(err.value)
    assert str(csv_path) in message and reason in message and "\n" not in message


def test_not_a_latents_file(tmp_path):
    bad = tmp_path / "other.h5"
    with h5py.File(bad, "w") as f:
        f["w"] = np.zeros((4, 2), np.float32)
    with pytest.raises(MedstyleError, match="not a medstyle latents file"):
        fit_directions(bad)
    with pytest.raises(MedstyleError, match="does not exist"):
        fit_directions(tmp_path / "missing.h5")


def test_logistic_accuracy_ties_go_to_the_better_calibrated_fit() -> None:
    # classes a small step apart in W: every C separates the validation patient (a tie at
    # accuracy 1.0), but the smallest C is a near-constant model with probabilities ~0.5
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 2
        x = rng.normal(scale=0.01, size=(n, 8))
        x[:, 0] += np.where(y == 1, 0.05, -0.05)
        return x, y

    (x_train, y_train), (x_val, y_val) = sample(80), sample(40)
    _, _, info = fit_module.fit_logistic(x_train, y_train, x_val, y_val)
    assert info["logistic_accuracy"] == 1.0
    assert info["logistic_C"] > min(fit_module.LOGISTIC_C)
    assert info["logistic_train_accuracy"] == 1.0
