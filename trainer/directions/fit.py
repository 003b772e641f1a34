"""Fitting one direction (Fetty et al. 2020, "Latent space models, and model selection").

1. Patient-grouped split (validation 20 %): slices of one patient are near-duplicates in W,
   so a patient on both sides would inflate every validation number.
2. Logistic regression in W, the baseline (its C chosen on validation).
3. Random search over dense prediction nets (1-4 hidden layers; the last layer a logistic
   regression on the last hidden layer) and, on the best one's last hidden layer, over
   reverse nets (hidden -> W, MSE, validation R2).
4. The paper's rule: the dense model only when ``R2(reverse) * acc(dense)`` beats
   ``acc(logistic)`` (:func:`select_model`).

Everything is seeded: the same inputs and seed give the same direction.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import GroupShuffleSplit
from torch import Tensor, nn

from trainer.directions.model import (
    DenseClassifier,
    Direction,
    DirectionError,
    ReverseNet,
    linear_direction,
)

VAL_FRACTION = 0.2
#: Inverse regularisation strengths tried for the baseline; the best validation accuracy
#: wins, ties go to the lowest validation log-loss. (Ties are common: one validation
#: patient separates at 1.0 for every C. The smallest C then can be a near-constant
#: model, probabilities ~0.5 and 85 % training accuracy, which log-loss tells apart.)
LOGISTIC_C = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
ACTIVATION = "silu"
#: Search space (the paper's reported winners: 1-4 layers of 54-512 units, dropout 0-0.095,
#: lr 6e-5-4.4e-3, 82-150 epochs, batches 11-45).
LAYERS = (1, 4)
WIDTHS = (16, 256)
DROPOUT_MAX = 0.3
LR = (1e-4, 1e-2)
BATCH = (16, 64)  # from 16 up: small batches cost many slow steps for little gain
MIN_EPOCHS = 20


def select_model(
    logistic_accuracy: float, dense_accuracy: float | None, reverse_r2: float | None
) -> str:
    """The paper's rule: ``"dense"`` when ``reverse_r2 * dense_accuracy > logistic_accuracy``,
    else ``"logistic"`` (also when no dense or reverse model was fitted).

    A tie goes to logistic regression, as in the paper's results (sex: 0.98 >= 1.00 * 0.98 ->
    logistic): the linear model is simpler and eq. 3 with it needs no reverse net.
    """
    if dense_accuracy is None or reverse_r2 is None:
        return "logistic"
    return "dense" if reverse_r2 * dense_accuracy > logistic_accuracy else "logistic"


def grouped_split(
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    tries: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation row indices with no group (patient) on both sides.

    sklearn's GroupShuffleSplit; the first of ``tries`` splits with both classes on both
    sides is taken, else the first with both classes in training (few patients: the one
    validation patient may have a single sex). Raises DirectionError when there are fewer
    than two groups or no split leaves both classes in training.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    if np.unique(groups).size < 2:
        raise DirectionError("needs slices from at least two patients for a grouped split")
    splitter = GroupShuffleSplit(n_splits=tries, test_size=val_fraction, random_state=seed)
    fallback = None
    for train, val in splitter.split(labels, labels, groups):
        if np.unique(labels[train]).size == 2:
            if np.unique(labels[val]).size == 2:
                return train, val
            fallback = fallback or (train, val)
    if fallback is None:
        raise DirectionError("no patient-grouped split leaves both classes in the training set")
    return fallback


def fit_logistic(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Logistic regression in W (no standardising: the normal must live in W itself).

    Returns ``coef [w_dim]``, intercept and metrics (validation and training accuracy, C).
    """
    best: tuple[float, float, LogisticRegression] | None = None
    for c in LOGISTIC_C:
        model = LogisticRegression(C=c, max_iter=2000)
        with warnings.catch_warnings():
            # separable classes (modality) never converge in the strict sense; harmless
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_train, y_train)
        acc = float(model.score(x_val, y_val))
        loss = float(log_loss(y_val, model.predict_proba(x_val), labels=model.classes_))
        if best is None or (acc, -loss) > (best[0], -best[1]):
            best = (acc, loss, model)
    assert best is not None
    acc, _, model = best
    info = {
        "logistic_accuracy": acc,
        "logistic_train_accuracy": float(model.score(x_train, y_train)),
        "logistic_C": float(model.C),
    }
    return model.coef_.ravel().astype(np.float64), float(model.intercept_[0]), info


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def sample_config(rng: np.random.Generator, max_epochs: int) -> dict[str, Any]:
    """One random hyper-parameter set (used for prediction and reverse nets alike)."""
    layers = int(rng.integers(LAYERS[0], LAYERS[1] + 1))
    return {
        "widths": [round(_log_uniform(rng, *WIDTHS)) for _ in range(layers)],
        # half the trials without dropout: the paper's winners mostly had none
        "dropout": 0.0 if rng.random() < 0.5 else float(rng.uniform(0.0, DROPOUT_MAX)),
        "lr": _log_uniform(rng, *LR),
        "batch": int(rng.integers(BATCH[0], BATCH[1] + 1)),
        "epochs": int(rng.integers(min(MIN_EPOCHS, max_epochs), max_epochs + 1)),
        "seed": int(rng.integers(2**31 - 1)),
    }


def _train(
    net: nn.Module,
    inputs: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    cfg: dict[str, Any],
) -> None:
    """Adam on minibatches of ``inputs`` (``loss_fn(output, row_indices)``), seeded order."""
    order = torch.Generator().manual_seed(cfg["seed"])
    try:  # the fused step is a third faster for these tiny nets (torch >= 2.4 on the CPU)
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], fused=True)
    except (RuntimeError, ValueError):
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    n = inputs.shape[0]
    net.train()
    for _ in range(cfg["epochs"]):
        perm = torch.randperm(n, generator=order).to(inputs.device)
        for start in range(0, n, cfg["batch"]):
            idx = perm[start : start + cfg["batch"]]
            loss = loss_fn(net(inputs[idx]), idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch inside forked RNGs: init and dropout draw from the global generator, and
    a fit must neither depend on nor disturb the caller's random state."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def search_classifier(
    x_train: Tensor,
    y_train: Tensor,
    x_val: Tensor,
    y_val: Tensor,
    *,
    trials: int,
    seed: int,
    max_epochs: int,
) -> tuple[DenseClassifier, dict[str, Any]]:
    """Random search for the dense prediction net; the best validation accuracy wins (ties:
    the lower validation cross-entropy). Returns the net (eval mode) and its metrics."""
    rng = np.random.default_rng([seed, 1])
    best: tuple[tuple[float, float], DenseClassifier, dict[str, Any]] | None = None
    log = []
    for _ in range(trials):
        cfg = sample_config(rng, max_epochs)
        with _seeded(cfg["seed"], x_train.device):
            net = DenseClassifier(x_train.shape[1], cfg["widths"], cfg["dropout"], ACTIVATION)
            net.hidden[0].set_stats(x_train)
            net.to(x_train.device)
            _train(
                net,
                x_train,
                lambda out, idx: F.binary_cross_entropy_with_logits(out, y_train[idx]),
                cfg,
            )
        with torch.no_grad():
            logits = net(x_val)
            acc = int(((logits > 0).float() == y_val).sum()) / y_val.numel()  # exact, as sklearn
            loss = float(F.binary_cross_entropy_with_logits(logits, y_val))
        log.append({**cfg, "val_accuracy": acc, "val_loss": loss})
        if best is None or (acc, -loss) > best[0]:
            best = ((acc, -loss), net, cfg)
    assert best is not None
    return best[1], {"dense_accuracy": best[0][0], "dense_config": best[2], "dense_trials": log}


def r2_score(pred: Tensor, target: Tensor) -> float:
    """Coefficient of determination over all of W (variance-weighted across dimensions):
    ``1 - sum (pred - target)^2 / sum (target - mean)^2``."""
    ss_res = float(((pred - target) ** 2).sum())
    ss_tot = float(((target - target.mean(dim=0)) ** 2).sum())
    return 1.0 - ss_res / max(ss_tot, 1e-12)


def search_reverse(
    h_train: Tensor,
    w_train: Tensor,
    h_val: Tensor,
    w_val: Tensor,
    *,
    trials: int,
    seed: int,
    max_epochs: int,
) -> tuple[ReverseNet, dict[str, Any]]:
    """Random search for the reverse net ``h -> w`` (MSE on standardised W); the best
    validation R2 wins. Returns the net (eval mode) and its metrics."""
    rng = np.random.default_rng([seed, 2])
    std = w_train.std(dim=0, unbiased=False).clamp_min(1e-6)
    best: tuple[float, ReverseNet, dict[str, Any]] | None = None
    log = []
    for _ in range(trials):
        cfg = sample_config(rng, max_epochs)
        with _seeded(cfg["seed"], h_train.device):
            net = ReverseNet(h_train.shape[1], w_train.shape[1], cfg["widths"], cfg["dropout"])
            net.inp.set_stats(h_train)
            net.out.set_stats(w_train)
            net.to(h_train.device)
            # standardised MSE: every W dimension counts alike whatever its spread
            _train(net, h_train, lambda out, idx: (((out - w_train[idx]) / std) ** 2).mean(), cfg)
        with torch.no_grad():
            r2 = r2_score(net(h_val), w_val)
        log.append({**cfg, "val_r2": r2})
        if best is None or r2 > best[0]:
            best = (r2, net, cfg)
    assert best is not None
    return best[1], {"reverse_r2": best[0], "reverse_config": best[2], "reverse_trials": log}


def _check_inputs(w: Any, labels: Any, groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = np.asarray(w.detach().cpu() if isinstance(w, Tensor) else w, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).ravel()
    groups = np.asarray(groups).ravel()
    if w.ndim != 2 or w.shape[0] != labels.size or groups.size != labels.size:
        raise DirectionError(
            f"w {list(w.shape)}, labels [{labels.size}] and groups [{groups.size}] must be "
            "[N, w_dim], [N] and [N]"
        )
    if not np.isfinite(w).all():
        raise DirectionError("w holds NaN or infinite values")
    if not np.isin(labels, (-1, 0, 1)).all():
        raise DirectionError("labels must be 0, 1 or -1 (left out)")
    return w, labels, groups


def fit_direction(
    name: str,
    w: np.ndarray | Tensor,
    labels: np.ndarray,
    groups: np.ndarray,
    classes: tuple[str, str],
    *,
    trials: int = 20,
    seed: int = 0,
    max_epochs: int = 150,
    device: str | torch.device = "cpu",
    val_fraction: float = VAL_FRACTION,
) -> Direction:
    """Fit the direction of one binary feature.

    Args:
        name: the direction's name ("modality", "sex", "slice", a CSV column...).
        w: ``[N, w_dim]`` latents (one per slice).
        labels: ``[N]`` 0 (``classes[0]``), 1 (``classes[1]``) or -1 (left out).
        groups: ``[N]`` patient of each slice (the split never divides a patient).
        classes: names of class 0 and class 1, e.g. ``("MR", "CT")``.
        trials: random-search trials for the dense prediction net and again for the reverse
            net (0: logistic regression only).
        seed: seeds the split, the search and the nets.
        max_epochs: the search's upper bound on epochs.
        device: where the nets train; the returned direction is on the CPU.

    Returns the selected model as a :class:`Direction`, with the W logistic baseline and the
    best dense net kept for analysis and ``metrics`` recording the whole fit.
    """
    started = time.perf_counter()
    w, labels, groups = _check_inputs(w, labels, groups)
    keep = labels >= 0
    x, y, g = w[keep], labels[keep], groups[keep]
    if np.unique(y).size < 2:
        raise DirectionError(f"direction {name!r}: the labelled slices hold only one class")
    train, val = grouped_split(y, g, val_fraction=val_fraction, seed=seed)
    coef, intercept, metrics = fit_logistic(x[train], y[train], x[val], y[val])
    metrics.update(
        n_train=int(train.size),
        n_val=int(val.size),
        n_left_out=int((~keep).sum()),
        patients_train=int(np.unique(g[train]).size),
        patients_val=int(np.unique(g[val]).size),
        val_classes=sorted(int(c) for c in np.unique(y[val])),
        trials=int(trials),
        seed=int(seed),
        dense_accuracy=None,
        reverse_r2=None,
    )
    dense = reverse = None
    if trials > 0:
        dev = torch.device(device)
        xt = torch.as_tensor(x, dtype=torch.float32, device=dev)
        yt = torch.as_tensor(y, dtype=torch.float32, device=dev)
        tr, va = torch.as_tensor(train, device=dev), torch.as_tensor(val, device=dev)
        search = {"trials": trials, "seed": seed, "max_epochs": max_epochs}
        dense, info = search_classifier(xt[tr], yt[tr], xt[va], yt[va], **search)
        metrics.update(info)
        # R2 <= 1, so a dense net no better than the baseline can never be selected: the
        # paper fitted no reverse model then either
        if metrics["dense_accuracy"] > metrics["logistic_accuracy"]:
            with torch.no_grad():
                h = dense.hidden(xt)
            reverse, info = search_reverse(h[tr], xt[tr], h[va], xt[va], **search)
            metrics.update(info)
        dense.cpu()
        if reverse is not None:
            reverse.cpu()
    selected = select_model(
        metrics["logistic_accuracy"], metrics["dense_accuracy"], metrics["reverse_r2"]
    )
    metrics["selected"] = selected
    metrics["fit_seconds"] = round(time.perf_counter() - started, 3)
    baseline = linear_direction(name, classes, coef, intercept)
    if selected == "logistic":
        return linear_direction(name, classes, coef, intercept, metrics=metrics, dense=dense)
    assert dense is not None and reverse is not None
    head_w = dense.head.weight.detach().double().ravel()
    norm = float(head_w.norm())
    return Direction(
        name=name,
        classes=classes,
        kind="dense",
        normal=(head_w / norm).float(),
        offset=-float(dense.head.bias.detach()) / norm,
        scale=norm,
        forward_net=dense.hidden,
        reverse_net=reverse,
        metrics=metrics,
        logistic_normal=baseline.normal,
        logistic_offset=baseline.offset,
        logistic_scale=baseline.scale,
        dense=dense,
    )
