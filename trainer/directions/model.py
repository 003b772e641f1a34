"""A latent direction: a prediction model over W whose decision-surface normal encodes a feature.

Fetty et al. 2020 fit, per feature (modality, sex, slice position...), a logistic regression in
W and dense prediction networks whose last layer is itself a logistic regression on the last
hidden layer. The normal of that last logistic regression (``w_LR``) is the direction; eq. 3
moves a latent along it in the hidden space and maps back to W with a reverse network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trainer.errors import MedstyleError

KINDS = ("logistic", "dense")

#: Activations the dense nets may use, by name (stored in a direction file; no class names
#: travel through files). Smooth ones only: the decision surface's curvature comes from the
#: second derivatives, which a piecewise-linear (ReLU) net has zero almost everywhere.
ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "elu": nn.ELU, "tanh": nn.Tanh}

#: Normalised slice index thresholds (paper): below -> inferior (0), above -> superior (1).
SLICE_INFERIOR_BELOW = 0.4
SLICE_SUPERIOR_ABOVE = 0.6


class DirectionError(MedstyleError):
    """A direction cannot be fitted, combined, calibrated, stored or loaded."""


class Standardise(nn.Module):
    """``(x - mean) / std`` with fixed (buffer) statistics of the training inputs."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_stats(self, x: Tensor) -> None:
        """Take mean and std from ``x: [N, dim]`` (std floored: a constant column stays finite)."""
        self.mean.copy_(x.mean(dim=0))
        self.std.copy_(x.std(dim=0, unbiased=False).clamp_min(1e-6))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class Unstandardise(Standardise):
    """``x * std + mean``: the inverse of :class:`Standardise` (a net's output back to units)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * self.std + self.mean


def _check_net_config(widths: Sequence[int], dropout: float, activation: str) -> None:
    if not widths or any(int(n) < 1 for n in widths):
        raise DirectionError(f"dense net widths {list(widths)} must be one or more positive sizes")
    if not 0.0 <= float(dropout) < 1.0:
        raise DirectionError(f"dense net dropout {dropout} is not in [0, 1)")
    if activation not in ACTIVATIONS:
        raise DirectionError(f"unknown activation {activation!r} (one of {sorted(ACTIVATIONS)})")


def _hidden_stack(in_dim: int, widths: Sequence[int], dropout: float, activation: str) -> list:
    layers: list[nn.Module] = []
    for width in widths:
        # Dropout is kept even at p=0 so the state_dict keys depend on the widths only
        layers += [nn.Linear(in_dim, int(width)), ACTIVATIONS[activation](), nn.Dropout(dropout)]
        in_dim = int(width)
    return layers


class DenseClassifier(nn.Module):
    """Dense prediction net: ``w [N, w_dim]`` -> ``h [N, h_dim]`` (``hidden``, standardised
    input then ``len(widths)`` layers) -> ``logit [N]`` (``head``: a logistic regression on the
    last hidden layer, whose weight vector is the paper's ``w_LR``)."""

    def __init__(
        self, w_dim: int, widths: Sequence[int], dropout: float = 0.0, activation: str = "silu"
    ) -> None:
        super().__init__()
        _check_net_config(widths, dropout, activation)
        self.config = {
            "w_dim": int(w_dim),
            "widths": [int(n) for n in widths],
            "dropout": float(dropout),
            "activation": activation,
        }
        self.hidden = nn.Sequential(
            Standardise(w_dim), *_hidden_stack(w_dim, widths, dropout, activation)
        )
        self.head = nn.Linear(int(widths[-1]), 1)

    @property
    def h_dim(self) -> int:
        return self.config["widths"][-1]

    def forward(self, w: Tensor) -> Tensor:
        return self.head(self.hidden(w)).squeeze(-1)


class ReverseNet(nn.Module):
    """Reverse model: ``h [N, h_dim]`` (a prediction net's last hidden layer) -> ``w [N, w_dim]``;
    standardised input, ``len(widths)`` hidden layers, a linear output de-standardised to W."""

    def __init__(
        self,
        h_dim: int,
        w_dim: int,
        widths: Sequence[int],
        dropout: float = 0.0,
        activation: str = "silu",
    ) -> None:
        super().__init__()
        _check_net_config(widths, dropout, activation)
        self.config = {
            "h_dim": int(h_dim),
            "w_dim": int(w_dim),
            "widths": [int(n) for n in widths],
            "dropout": float(dropout),
            "activation": activation,
        }
        self.inp = Standardise(h_dim)
        self.body = nn.Sequential(
            *_hidden_stack(h_dim, widths, dropout, activation), nn.Linear(int(widths[-1]), w_dim)
        )
        self.out = Unstandardise(w_dim)

    def forward(self, h: Tensor) -> Tensor:
        return self.out(self.body(self.inp(h)))


def _as_tensor(x: Any, device: torch.device) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float32, device=device)


@dataclass(eq=False)
class Direction:
    """A feature direction in W (``kind="logistic"``) or in a dense net's last hidden layer.

    ``normal: [h_dim]`` is unit length and points to class 1 (``classes[1]``); ``offset`` is
    the decision surface's signed distance from the origin along it, so
    ``signed_distance(w) = to_hidden(w) @ normal - offset`` (> 0: class 1) and the model's
    probability of class 1 is ``sigmoid(scale * signed_distance)``. For ``logistic`` the hidden
    space is W and ``forward_net``/``reverse_net`` are None; for ``dense`` they map W -> h and
    h -> W (eq. 3's Forward and Reverse).

    ``logistic_normal [w_dim]`` / ``logistic_offset`` / ``logistic_scale``: the W-space logistic
    regression baseline, kept whatever was selected (conditional directions use it); equal to
    ``normal``/``offset``/``scale`` for a logistic direction.
    ``dense``: the best dense prediction net of the search, kept even when logistic regression
    was selected, for the curvature analysis (:func:`trainer.curvature.mean_curvatures`).
    ``metrics``: accuracies, reverse R2, selection, sizes, search trials (plain values).
    ``calibration``: for the slice direction ``units_per_slice``, ``units_per_mm``,
    ``mm_per_slice``, ``n_volumes`` (:func:`calibrate_slice`), else None.
    """

    name: str
    classes: tuple[str, str]
    kind: str
    normal: Tensor
    offset: float
    forward_net: nn.Module | None = None
    reverse_net: nn.Module | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    conditioned_on: list[str] = field(default_factory=list)
    scale: float = 1.0
    logistic_normal: Tensor | None = None
    logistic_offset: float | None = None
    logistic_scale: float | None = None
    dense: DenseClassifier | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DirectionError(f"direction {self.name!r}: kind {self.kind!r} not in {KINDS}")
        if len(self.classes) != 2:
            raise DirectionError(f"direction {self.name!r}: needs two class names")
        self.classes = (str(self.classes[0]), str(self.classes[1]))
        self.normal = torch.as_tensor(self.normal, dtype=torch.float32).detach()
        if self.normal.ndim != 1 or not torch.isfinite(self.normal).all():
            raise DirectionError(f"direction {self.name!r}: normal must be a finite 1-D vector")
        if abs(float(self.normal.norm()) - 1.0) > 1e-4:
            raise DirectionError(f"direction {self.name!r}: normal is not unit length")
        self.offset = float(self.offset)
        self.scale = float(self.scale)
        nets = (self.forward_net, self.reverse_net)
        if self.kind == "logistic":
            if any(net is not None for net in nets):
                raise DirectionError(f"direction {self.name!r}: a logistic direction has no nets")
            if self.logistic_normal is None:
                self.logistic_normal = self.normal
                self.logistic_offset, self.logistic_scale = self.offset, self.scale
        elif any(net is None for net in nets):
            raise DirectionError(f"direction {self.name!r}: a dense direction needs both nets")
        if self.logistic_normal is None or self.logistic_offset is None:
            raise DirectionError(f"direction {self.name!r}: the W logistic baseline is missing")
        self.logistic_normal = torch.as_tensor(self.logistic_normal, dtype=torch.float32).detach()
        self.logistic_offset = float(self.logistic_offset)
        self.logistic_scale = float(1.0 if self.logistic_scale is None else self.logistic_scale)
        for net in (*nets, self.dense):
            if net is not None:
                net.eval().requires_grad_(False)

    @property
    def h_dim(self) -> int:
        return int(self.normal.numel())

    @property
    def w_dim(self) -> int:
        return int(self.logistic_normal.numel())  # type: ignore[union-attr]

    @property
    def device(self) -> torch.device:
        return self.normal.device

    def to(self, device: str | torch.device) -> Direction:
        """Move the vectors and nets to ``device`` (in place); returns self."""
        device = torch.device(device)
        self.normal = self.normal.to(device)
        self.logistic_normal = self.logistic_normal.to(device)  # type: ignore[union-attr]
        for net in (self.forward_net, self.reverse_net, self.dense):
            if net is not None:
                net.to(device)
        return self

    def to_hidden(self, w: Tensor) -> Tensor:
        """``w [N, w_dim]`` -> ``h [N, h_dim]`` (eq. 3's Forward; identity for logistic).
        Differentiable in ``w`` (the nets' own parameters are frozen)."""
        w = _as_tensor(w, self.device)
        return w if self.forward_net is None else self.forward_net(w)

    def from_hidden(self, h: Tensor) -> Tensor:
        """``h [N, h_dim]`` -> ``w [N, w_dim]`` (eq. 3's Reverse; identity for logistic)."""
        h = _as_tensor(h, self.device)
        return h if self.reverse_net is None else self.reverse_net(h)

    def signed_distance(self, w: Tensor) -> Tensor:
        """``[N]``: distance of ``to_hidden(w)`` from the decision surface along ``normal``
        (hidden-space units; > 0 on the side of ``classes[1]``)."""
        return self.to_hidden(w) @ self.normal - self.offset

    def probability(self, w: Tensor) -> Tensor:
        """``[N]``: the model's probability of ``classes[1]``."""
        return torch.sigmoid(self.scale * self.signed_distance(w))

    def predict(self, w: Tensor) -> Tensor:
        """``[N]`` int64: 1 for ``classes[1]``, 0 for ``classes[0]``."""
        return (self.signed_distance(w) > 0).to(torch.int64)


def linear_direction(
    name: str,
    classes: tuple[str, str],
    coef: np.ndarray | Tensor,
    intercept: float,
    **extra: Any,
) -> Direction:
    """A logistic direction from a logistic regression ``logit = coef @ w + intercept``
    (``coef: [w_dim]``): normal ``coef/|coef|``, offset ``-intercept/|coef|``, scale ``|coef|``."""
    coef = torch.as_tensor(np.asarray(coef, dtype=np.float64).ravel())
    norm = float(coef.norm())
    if not np.isfinite(norm) or norm <= 0.0:
        raise DirectionError(f"direction {name!r}: the logistic regression found no direction")
    return Direction(
        name=name,
        classes=classes,
        kind="logistic",
        normal=(coef / norm).float(),
        offset=-float(intercept) / norm,
        scale=norm,
        **extra,
    )


def slice_classes(slice_norm: np.ndarray | Sequence[float]) -> np.ndarray:
    """``[N]`` int8 class of each normalised slice index (paper): < 0.4 -> 0 (inferior),
    > 0.6 -> 1 (superior), else (and NaN) -1 (left out)."""
    s = np.asarray(slice_norm, dtype=np.float64)
    out = np.full(s.shape, -1, dtype=np.int8)
    out[s < SLICE_INFERIOR_BELOW] = 0
    out[s > SLICE_SUPERIOR_ABOVE] = 1
    return out


def conditional_direction(
    primary: Direction, conditions: Sequence[Direction], name: str | None = None
) -> Direction:
    """InterFaceGAN's conditional manipulation, in W: the primary's logistic normal with the
    conditions' logistic normals projected out, renormalised.

    Moving ``w`` along the result leaves every condition's W logistic signed distance
    unchanged. The offset is where the line through the origin along the new normal crosses
    the primary's decision surface, and the scale is the primary's times ``cos`` (the cosine
    between old and new normals), so on that line the probability equals the primary's.
    Named ``"primary|cond1,cond2"`` unless ``name`` is given.
    """
    if not conditions:
        raise DirectionError(f"conditional direction of {primary.name!r}: no conditions given")
    n = primary.logistic_normal.detach().cpu().double()  # type: ignore[union-attr]
    basis = torch.stack([c.logistic_normal.detach().cpu().double() for c in conditions], dim=1)  # type: ignore[union-attr]
    if basis.shape[0] != n.numel():
        raise DirectionError(
            f"conditional direction of {primary.name!r}: the conditions live in a W of another size"
        )
    q, r = torch.linalg.qr(basis)
    if bool((r.diagonal().abs() < 1e-6).any()):
        raise DirectionError(
            f"conditional direction of {primary.name!r}: the conditions' normals are parallel"
        )
    perp = n - q @ (q.T @ n)
    norm = float(perp.norm())
    if norm < 1e-6:
        raise DirectionError(
            f"conditional direction of {primary.name!r}: its normal lies in the conditions' span"
        )
    perp = perp / norm
    cos = float(perp @ n)
    names = [c.name for c in conditions]
    return Direction(
        name=name or f"{primary.name}|{','.join(names)}",
        classes=primary.classes,
        kind="logistic",
        normal=perp.float(),
        offset=float(primary.logistic_offset) / cos,  # type: ignore[arg-type]
        scale=float(primary.logistic_scale) * cos,  # type: ignore[arg-type]
        metrics={
            "selected": "logistic",
            "primary": primary.name,
            "conditions": names,
            "cos_to_primary": cos,
        },
        conditioned_on=names,
    ).to(primary.device)
