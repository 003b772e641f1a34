"""Model bundles: what is written, that the generator comes back and renders the same
images, that any changed or missing file is caught by its hash, and that later parts
(encoder, directions) can be added."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from trainer.bundle import (
    BundleError,
    add_bundle_file,
    read_bundle_generator,
    read_bundle_manifest,
    verify_bundle,
    write_bundle,
)
from trainer.data.normalise import PAPER
from trainer.errors import ConfigError, MedstyleError, ScanWriteError
from trainer.networks.stylegan import Discriminator, Generator, StyleGANConfig

TRAINING = {
    "dataset": "phantom-32.h5",
    "kimg": 0.4,
    "loss": "wgan-gp",
    "metric": "swd_mean",
    "metrics": {"swd_mean": 41.2, "swd_32": 38.0, "swd_16": 44.4},
    "best_snapshot": "checkpoint-000400.pt",
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = StyleGANConfig.slim(32)
    G, D = Generator(cfg).eval(), Discriminator(cfg).eval()
    G.w_avg.copy_(torch.randn(cfg.w_dim))  # as if tracked during training
    return cfg, G, D


def write(folder, model, **overrides):
    cfg, G, D = model
    kwargs = dict(
        generator_state=G.state_dict(),
        discriminator_state=D.state_dict(),
        w_avg=G.w_avg,
        config=cfg.to_dict(),
        normalisation=PAPER.to_dict(),
        training=TRAINING,
    )
    kwargs.update(overrides)
    return write_bundle(folder, **kwargs)


def test_bundle_manifest_and_files(tmp_path, model):
    cfg, _, _ = model
    folder = write(tmp_path / "model", model)
    assert sorted(p.name for p in folder.iterdir()) == ["bundle.json", "generator.pt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries

    manifest = json.loads((folder / "bundle.json").read_text())
    assert manifest["format"] == "medstyle-bundle" and manifest["format_version"] == 1
    assert (manifest["resolution"], manifest["channels"]) == (32, 1)
    assert (manifest["z_dim"], manifest["w_dim"], manifest["num_ws"]) == (64, 64, 8)
    assert manifest["num_ws"] == cfg.num_ws
    assert manifest["normalisation"] == PAPER.to_dict()
    assert manifest["training"] == TRAINING
    assert manifest["config"] == cfg.to_dict()
    digest = hashlib.sha256((folder / "generator.pt").read_bytes()).hexdigest()
    assert manifest["files"] == {
        "generator.pt": {"sha256": digest, "bytes": (folder / "generator.pt").stat().st_size}
    }
    assert read_bundle_manifest(folder) == manifest == verify_bundle(folder)


def test_generator_comes_back_and_renders_the_same_images(tmp_path, model):
    cfg, G, D = model
    folder = write(tmp_path / "model", model)
    state = read_bundle_generator(folder)
    assert state["format"] == "medstyle-generator"
    assert StyleGANConfig.from_dict(state["config"]) == cfg

    G2, D2 = Generator(cfg).eval(), Discriminator(cfg).eval()
    G2.load_state_dict(state["G_ema"])
    D2.load_state_dict(state["D"])
    torch.testing.assert_close(state["w_avg"], G.w_avg)
    z = torch.randn(3, cfg.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        img = G(z, truncation_psi=0.7, noise_mode="const")
        torch.testing.assert_close(G2(z, truncation_psi=0.7, noise_mode="const"), img)
        torch.testing.assert_close(D2(img), D(img))


def test_generator_only_bundle(tmp_path, model):
    folder = write(tmp_path / "g-only", model, discriminator_state=None)
    assert read_bundle_manifest(folder)["has_discriminator"] is False
    assert "D" not in read_bundle_generator(folder)


def test_existing_bundle_is_replaced_only_when_asked(tmp_path, model):
    folder = write(tmp_path / "model", model)
    with pytest.raises(ScanWriteError, match="already exists"):
        write(folder, model)
    write(folder, model, training={**TRAINING, "kimg": 0.8}, overwrite=True)
    assert verify_bundle(folder)["training"]["kimg"] == 0.8


def test_changed_or_missing_files_are_caught(tmp_path, model):
    folder = write(tmp_path / "model", model)
    weights = folder / "generator.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit-pattern in the middle of the weights
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError) as info:
        verify_bundle(folder)
    assert str(info.value) == (
        f"{weights}: does not match the hash in bundle.json (altered or damaged; re-export it)"
    )
    with pytest.raises(BundleError, match="does not match the hash"):
        read_bundle_generator(folder)
    weights.unlink()
    with pytest.raises(BundleError, match=r"generator\.pt: is missing from the model bundle"):
        verify_bundle(folder)


def test_later_parts_are_added_with_their_hashes(tmp_path, model):
    folder = write(tmp_path / "model", model)
    encoder = tmp_path / "encoder.pt"
    torch.save({"E": {"w": torch.ones(3)}}, encoder)
    direction = tmp_path / "sex.json"
    direction.write_text('{"kind": "logistic-regression"}')

    add_bundle_file(folder, encoder, "encoder.pt")
    add_bundle_file(folder, direction, "directions/sex.json")
    manifest = verify_bundle(folder)
    assert sorted(manifest["files"]) == ["directions/sex.json", "encoder.pt", "generator.pt"]
    assert manifest["training"] == TRAINING  # the rest of the manifest is kept

    with pytest.raises(ScanWriteError, match="already exists"):
        add_bundle_file(folder, encoder, "encoder.pt")
    for bad in ("../escape.pt", "bundle.json", "/abs.pt"):
        with pytest.raises(ConfigError, match="not a valid file name"):
            add_bundle_file(folder, encoder, bad)
    with pytest.raises(BundleError, match="does not exist"):
        add_bundle_file(folder, tmp_path / "nope.pt", "nope.pt")

    (folder / "directions" / "sex.json").write_text('{"kind": "tampered"}')
    with pytest.raises(BundleError, match=r"directions/sex\.json: does not match"):
        verify_bundle(folder)


def test_manifest_problems_are_clear_errors(tmp_path, model):
    with pytest.raises(BundleError, match="is not a model bundle folder"):
        read_bundle_manifest(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"no bundle\.json"):
        read_bundle_manifest(tmp_path / "empty")

    folder = write(tmp_path / "model", model)
    manifest_path = folder / "bundle.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text("{ not json")
    with pytest.raises(BundleError, match="cannot be read as JSON"):
        read_bundle_manifest(folder)
    manifest_path.write_text(json.dumps({**manifest, "format": "something-else"}))
    with pytest.raises(BundleError, match="not a medstyle model manifest"):
        read_bundle_manifest(folder)
    manifest_path.write_text(json.dumps({**manifest, "format_version": 7}))
    with pytest.raises(BundleError, match=r"format version 7.*update medstyle"):
        read_bundle_manifest(folder)
    assert issubclass(BundleError, MedstyleError)


def test_bad_inputs_are_refused_before_anything_is_written(tmp_path, model):
    cfg = model[0]
    with pytest.raises(ConfigError, match=r"w_avg has shape \(3,\)"):
        write(tmp_path / "a", model, w_avg=torch.zeros(3))
    with pytest.raises(ConfigError, match="lacks 'w_dim'"):
        write(
            tmp_path / "b", model, config={k: v for k, v in cfg.to_dict().items() if k != "w_dim"}
        )
    with pytest.raises(ConfigError, match="training summary cannot be written as JSON"):
        write(tmp_path / "c", model, training={"best": torch.zeros(1)})
    with pytest.raises(ConfigError, match="training summary cannot be written as JSON"):
        write(tmp_path / "d", model, training={"fid": float("nan")})
    assert list(tmp_path.iterdir()) == []
