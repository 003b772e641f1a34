"""Metrics: SWD behaves as a distance, FID matches closed forms and scipy, the Inception
network loads a weights file, and MAE/RMSE give the numbers a user would compute."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from trainer.errors import ConfigError, MedstyleError
from trainer.metrics import (
    SWDAccumulator,
    body_mask,
    feature_statistics,
    fid,
    frechet_distance,
    inception_features,
    laplacian_pyramid,
    load_inception,
    mae,
    rmse,
    swd,
    swd_from_accumulators,
)

# ---------------------------------------------------------------------------------------
# SWD
# ---------------------------------------------------------------------------------------


def pelvis_like(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Images [n, 1, size, size] in [-1, 1]: a body ellipse of random size and position
    with smooth internal texture and three bright 'bones', on air at -1."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    centre = (torch.rand(n, 2, 1, 1, generator=g) - 0.5) * 0.3
    radii = 0.5 + 0.3 * torch.rand(n, 2, 1, 1, generator=g)
    body = ((yy - centre[:, 0]) / radii[:, 0]) ** 2 + ((xx - centre[:, 1]) / radii[:, 1]) ** 2 < 1
    texture = F.avg_pool2d(torch.randn(n, 1, size, size, generator=g), 5, 1, 2)[:, 0]
    img = torch.where(body, -0.1 + 0.5 * texture, torch.tensor(-1.0))
    for _ in range(3):
        bone = (torch.rand(n, 2, 1, 1, generator=g) - 0.5) * 0.8
        inside = (yy - bone[:, 0]) ** 2 + (xx - bone[:, 1]) ** 2 < 0.01
        img = torch.where(inside & body, 0.7, img)
    return img[:, None]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(3 * sigma) + 1
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum())[None, None]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k[..., None, :])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k[..., :, None])


@pytest.fixture(scope="module")
def real() -> torch.Tensor:
    return pelvis_like(48, seed=1)


@pytest.fixture(scope="module")
def other() -> torch.Tensor:
    """An independent sample of the same distribution as ``real``."""
    return pelvis_like(48, seed=2)


def test_swd_keys_levels_and_identical_sets_are_zero():
    images = pelvis_like(16, size=64)
    result = swd(images, images.clone())
    assert list(result) == ["swd_64", "swd_32", "swd_16", "swd_mean"]
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in result.values())


def test_swd_is_symmetric_and_deterministic(real, other):
    ab, ba = swd(real, other, seed=3), swd(other, real, seed=3)
    assert ab == pytest.approx(ba, rel=1e-5)
    assert swd(real, other, seed=3) == ab
    assert ab["swd_mean"] > 0


@pytest.mark.parametrize(
    ("name", "shift", "amounts"),
    [
        ("blur", lambda x, s: gaussian_blur(x, s), [0.6, 1.2, 2.5]),
        (
            "noise",
            lambda x, s: x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(7)),
            [0.05, 0.15, 0.4],
        ),
        ("intensity", lambda x, s: x + s, [0.05, 0.15, 0.4]),
    ],
)
def test_swd_grows_with_the_distribution_shift(real, other, name, shift, amounts):
    # an independent sample of the same distribution is the floor a shift must clear
    same = swd(real, other, descriptors_per_image=64)["swd_mean"]
    values = [swd(real, shift(other, a), descriptors_per_image=64)["swd_mean"] for a in amounts]
    assert same < values[0] < values[1] < values[2], (name, same, values)


def test_swd_sees_detail_at_the_fine_level_and_offsets_at_the_coarse(real, other):
    blurred = swd(real, gaussian_blur(other, 1.5))
    shifted = swd(real, other + 0.3)
    # blur removes fine detail: the 32 px band moves most; a global offset lives in the
    # 16 px low-pass residual only
    assert blurred["swd_32"] > blurred["swd_16"]
    assert shifted["swd_16"] > 5 * shifted["swd_32"]


def test_laplacian_pyramid_reconstructs_the_image(real):
    from trainer.metrics import _binomial_kernel, _pyr_up

    levels = laplacian_pyramid(real, 2)
    assert [lv.shape[-1] for lv in levels] == [32, 16]
    kernel = _binomial_kernel(1, real.dtype)
    image = levels[-1]
    for band in reversed(levels[:-1]):
        image = band + _pyr_up(image, kernel)
    torch.testing.assert_close(image, real, atol=1e-5, rtol=0)


def test_swd_streaming_accumulators_and_unequal_set_sizes(real, other):
    a = SWDAccumulator(seed=0, descriptors_per_image=64)
    b = SWDAccumulator(seed=0, descriptors_per_image=64)
    for batch in real.split(16):
        a.add(batch)
    for batch in other[:40].split(16):
        b.add(batch)
    assert a.descriptors(0).shape == (48 * 64, 1, 7, 7)
    streamed = swd_from_accumulators(a, b)
    assert swd_from_accumulators(b, a) == pytest.approx(streamed, rel=1e-5)
    # same ballpark as the one-shot call (different random patches)
    one_shot = swd(real[:40], other[:40], descriptors_per_image=64)
    assert 0.5 < streamed["swd_mean"] / one_shot["swd_mean"] < 2


@pytest.mark.parametrize("shape", [(4, 1, 8, 8), (4, 1, 48, 48), (4, 1, 32, 16)])
def test_swd_refuses_sizes_it_cannot_pyramid(shape):
    with pytest.raises(ConfigError, match="SWD"):
        swd(torch.zeros(shape), torch.zeros(shape))


def test_swd_refuses_mismatched_sets():
    with pytest.raises(ConfigError, match="differ in size"):
        swd(torch.zeros(4, 1, 32, 32), torch.zeros(4, 1, 64, 64))


# ---------------------------------------------------------------------------------------
# FID
# ---------------------------------------------------------------------------------------


def random_spd(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    d = 16
    mu, sigma = rng.normal(size=d), random_spd(d, rng)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    # equal covariances: only the means differ
    mu2 = mu + rng.normal(size=d)
    assert frechet_distance(mu, sigma, mu2, sigma) == pytest.approx(np.sum((mu - mu2) ** 2))
    # diagonal covariances: sum of (sqrt s1 - sqrt s2)^2
    s1, s2 = rng.uniform(0.1, 2, d), rng.uniform(0.1, 2, d)
    expected = np.sum((mu - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)


def test_frechet_distance_matches_a_direct_scipy_computation():
    rng = np.random.default_rng(1)
    d = 32
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = random_spd(d, rng), random_spd(d, rng)  # do not commute
    # the symmetric form tr(sqrt(sqrt(s1) s2 sqrt(s1))), computed independently
    r1 = scipy.linalg.sqrtm(s1).real
    direct = (
        np.sum((mu1 - mu2) ** 2)
        + np.trace(s1)
        + np.trace(s2)
        - 2 * np.trace(scipy.linalg.sqrtm(r1 @ s2 @ r1).real)
    )
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(direct, rel=1e-8)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        frechet_distance(mu2, s2, mu1, s1), rel=1e-8
    )


def test_fid_from_samples_of_two_gaussians():
    rng = np.random.default_rng(2)
    d, n = 8, 20000
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n, d)) * 2.0 + 1.0
    # closed form: ||1||^2 * d + d * (1 - 2)^2 = 2 d
    assert fid(a, b) == pytest.approx(2 * d, rel=0.05)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)
    assert fid(torch.from_numpy(a), torch.from_numpy(a)) == pytest.approx(0.0, abs=1e-6)


def test_fid_with_fewer_samples_than_dimensions_stays_finite():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(20, 64)), rng.normal(size=(20, 64)) + 0.5
    value = fid(a, b)
    assert np.isfinite(value) and value > 0


def test_feature_statistics_needs_two_vectors():
    with pytest.raises(ConfigError, match="at least 2"):
        feature_statistics(np.zeros((1, 2048)))


def test_fid_without_weights_says_what_to_pass():
    with pytest.raises(ConfigError, match="FID needs --inception-weights FILE"):
        load_inception(None)


def test_inception_features_load_from_a_weights_file(tmp_path):
    from trainer.networks.inception import FEATURE_DIM, InceptionFeatures

    torch.manual_seed(0)
    net = InceptionFeatures(fid_variant=True).eval()
    state = net.state_dict()
    # a pytorch-fid style file: features plus the 1008-way classifier, no step counters
    file_state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    file_state["fc.weight"] = torch.zeros(1008, FEATURE_DIM)
    file_state["fc.bias"] = torch.zeros(1008)
    weights = tmp_path / "pt_inception.pth"
    torch.save(file_state, weights)

    loaded = load_inception(weights)
    assert loaded.fid_variant
    images = torch.rand(2, 1, 32, 32) * 2 - 1
    start = time.perf_counter()
    features = inception_features(loaded, images.split(1))  # batch by batch, as the loop does
    with torch.no_grad():
        expected = net(images).double().numpy()
    elapsed = time.perf_counter() - start
    assert features.shape == (2, FEATURE_DIM)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    assert np.isfinite(features).all() and elapsed < 30


def test_inception_torchvision_layout_and_wrong_files(tmp_path):
    from trainer.networks.inception import InceptionFeatures

    net = InceptionFeatures(fid_variant=False)
    # the same layers as torchvision's Inception-v3 without its two classifier heads
    assert sum(p.numel() for p in net.parameters()) == 21_785_568
    state = net.state_dict()
    tv = dict(state)
    tv["fc.weight"] = torch.zeros(1000, 2048)
    tv["AuxLogits.conv0.conv.weight"] = torch.zeros(128, 768, 1, 1)
    torch.save(tv, tmp_path / "tv.pth")
    assert InceptionFeatures.from_file(tmp_path / "tv.pth").fid_variant is False

    torch.save(torch.nn.Linear(3, 4).state_dict(), tmp_path / "other.pth")
    with pytest.raises(ConfigError, match=r"other\.pth: is not an Inception-v3 weights file"):
        load_inception(tmp_path / "other.pth")
    bad = dict(state)
    bad["Conv2d_1a_3x3.conv.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match=r"bad\.pth: is not an Inception-v3 weights file"):
        load_inception(tmp_path / "bad.pth")
    with pytest.raises(MedstyleError, match="does not exist"):
        load_inception(tmp_path / "missing.pth")


# ---------------------------------------------------------------------------------------
# MAE / RMSE
# ---------------------------------------------------------------------------------------


def test_mae_rmse_known_values_numpy_and_torch():
    a = np.array([[0.0, 10.0], [20.0, -40.0]])
    b = np.zeros((2, 2))
    assert mae(a, b) == pytest.approx(17.5)
    assert rmse(a, b) == pytest.approx(np.sqrt((100 + 400 + 1600) / 4))
    assert mae(torch.tensor(a), torch.tensor(b)) == pytest.approx(17.5)
    mask = np.array([[False, True], [True, False]])
    assert mae(a, b, mask) == pytest.approx(15.0)
    assert rmse(a, b, torch.tensor(mask)) == pytest.approx(np.sqrt(250.0))


def test_mae_in_hu_after_inverse_normalisation():
    from trainer.data.normalise import PAPER

    hu = np.full((4, 4), 40.0, dtype=np.float32)
    unit = PAPER.to_unit(hu, "CT")
    off = PAPER.to_native(unit + 0.1, "CT")  # 0.1 on [-1, 1] is 126.2 HU for CT
    assert mae(off, hu) == pytest.approx(0.1 * (1500 + 1024) / 2, rel=1e-5)


def test_mae_refuses_shape_mismatch_and_empty_masks():
    with pytest.raises(ValueError, match="differ in shape"):
        mae(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no pixels"):
        rmse(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2), dtype=bool))


def test_body_mask_keeps_the_body_fills_holes_drops_specks():
    img = np.full((40, 40), -1000.0)
    yy, xx = np.mgrid[:40, :40]
    img[(yy - 20) ** 2 + (xx - 20) ** 2 < 15**2] = 30.0  # body
    img[(yy - 20) ** 2 + (xx - 20) ** 2 < 3**2] = -900.0  # bowel gas inside
    img[1, 1] = 50.0  # a speck of noise in the air
    mask = body_mask(img, threshold=-500.0)
    assert mask[20, 20] and not mask[1, 1] and not mask[0, 39]
    assert mask.sum() == ((yy - 20) ** 2 + (xx - 20) ** 2 < 15**2).sum()
    vol = body_mask(np.stack([img, np.full((40, 40), -1000.0)]), threshold=-500.0)
    assert vol.shape == (2, 40, 40) and vol[0].sum() == mask.sum() and not vol[1].any()
