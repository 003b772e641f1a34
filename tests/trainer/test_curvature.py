"""Decision-surface curvature against surfaces whose curvature is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trainer.curvature import curvature_summary, mean_curvatures
from trainer.directions import Direction, DirectionError, fit_direction, linear_direction


class SquaredRadius(nn.Module):
    """``h = sum of w_i^2 over the first `dims` coordinates``: ``[N, w_dim] -> [N, 1]``."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return (w[:, : self.dims] ** 2).sum(dim=1, keepdim=True)


def sphere(r: float, w_dim: int, dims: int, class1_outside: bool = True) -> Direction:
    """A dense direction whose decision surface is ``|w[:dims]| = r`` (a sphere when
    ``dims == w_dim``, else a sphere in a ``dims``-d slice times the rest of W)."""
    sign = 1.0 if class1_outside else -1.0
    return Direction(
        name="sphere",
        classes=("inside", "outside") if class1_outside else ("outside", "inside"),
        kind="dense",
        normal=torch.tensor([sign]),
        offset=sign * r**2,
        forward_net=SquaredRadius(dims),
        reverse_net=nn.Linear(1, w_dim),  # not used here; a dense direction has one
        logistic_normal=torch.eye(w_dim)[0],
        logistic_offset=0.0,
    )


def samples(n: int, w_dim: int, scale: float, seed: int = 0) -> np.ndarray:
    return scale * np.random.default_rng(seed).standard_normal((n, w_dim))


def test_logistic_direction_has_exactly_zero_curvature():
    rng = np.random.default_rng(1)
    d = linear_direction("lin", ("a", "b"), rng.standard_normal(32), 0.3)
    k = mean_curvatures(d, samples(100, 32, 2.0), points=40, tangents=32)
    assert k.shape == (40,) and np.all(k == 0.0)
    summary = curvature_summary(k)
    assert summary["mean"] == 0.0 and summary["std"] == 0.0
    assert summary["p"] is None and "all curvature values are equal" in summary["message"]


@pytest.mark.parametrize("outside", [True, False])
def test_sphere_in_3d_has_curvature_one_over_r(outside):
    r = 1.7
    d = sphere(r, w_dim=3, dims=3, class1_outside=outside)
    k = mean_curvatures(d, samples(200, 3, 1.5), points=50, tangents=16, seed=2)
    # every tangent of a sphere has normal curvature 1/r; + when class 1 is inside
    expected = -1.0 / r if outside else 1.0 / r
    np.testing.assert_allclose(k, expected, rtol=1e-6)


def test_circle_in_a_2d_slice_of_32d():
    # the surface is a circle of radius r in a 2-D slice times R^30 (a cylinder): a random
    # unit tangent (in the 31-d tangent space) has curvature -|t_circle|^2 / r, whose mean
    # is -1 / (31 r)
    r = 1.2
    d = sphere(r, w_dim=32, dims=2)
    k = mean_curvatures(d, samples(300, 32, 1.5), points=200, tangents=256, seed=0)
    assert float(k.mean()) == pytest.approx(-1.0 / (31 * r), rel=0.05)
    assert np.all(k < 0)


def test_fitted_dense_net_on_a_disc_approximates_one_over_r():
    # class 1 inside a disc of radius 1.2 in 2-D: the learned boundary should bend like it
    rng = np.random.default_rng(0)
    x = rng.uniform(-2.0, 2.0, (240, 2))
    labels = (np.linalg.norm(x, axis=1) < 1.2).astype(int)
    d = fit_direction("disc", x, labels, np.arange(240) // 10, ("out", "in"), trials=3)
    assert d.dense is not None and d.metrics["dense_accuracy"] > 0.9
    k = mean_curvatures(d, x, points=200, tangents=4, model="dense")
    assert float(np.median(k)) == pytest.approx(1.0 / 1.2, rel=0.25)


def test_curvature_errors():
    d = sphere(1.0, w_dim=3, dims=3)
    with pytest.raises(DirectionError, match="one side"):
        mean_curvatures(d, samples(20, 3, 0.1), points=4, tangents=4)  # all inside
    with pytest.raises(DirectionError, match="expected"):
        mean_curvatures(d, samples(20, 5, 1.0), points=4, tangents=4)
    with pytest.raises(DirectionError, match="no dense"):
        mean_curvatures(d, samples(20, 3, 1.0), points=4, tangents=4, model="dense")


def test_curvature_summary():
    rng = np.random.default_rng(0)
    normal = rng.normal(-0.001, 0.005, 1000)
    s = curvature_summary(normal)
    assert s["n"] == 1000 and s["mean"] == pytest.approx(normal.mean())
    assert s["std"] == pytest.approx(normal.std(ddof=1))
    assert s["p"] > 0.01 and s["message"] == ""
    assert curvature_summary(rng.exponential(1.0, 1000))["p"] < 1e-6
    few = curvature_summary([0.1, 0.2, np.nan, 0.3, 0.1, 0.5])
    assert few["n"] == 5 and few["dropped"] == 1 and few["p"] is None
    assert "at least 8" in few["message"] and few["mean"] == pytest.approx(0.24)
    rough = curvature_summary(rng.normal(size=10))
    assert rough["p"] is not None and "rough" in rough["message"]
