"""core.export: training command lines, view PNGs, the synthetic slice as DICOM, a
synthetic volume with provenance, metrics CSV; never an overwrite unless asked."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from medstyle_gui.core import export
from medstyle_gui.core.export import (
    DatasetOptions,
    DirectionsOptions,
    EncoderOptions,
    GANOptions,
    SliceRecipe,
    ViewImage,
)
from trainer.errors import ConfigError, ScanWriteError

RECIPE = SliceRecipe(
    model_name="tiny",
    model_sha256="ab" * 32,
    source_file="pelvis.nii.gz",
    slice_index=12,
    moves=(("modality", 4.0), ("slice", -0.5)),
    tau=0.8,
    mix_layers=("8x8", "16x16"),
    mix_source="paired",
    modality="CT",
)


def test_cli_command_runs_this_install() -> None:
    assert export.cli_command(["train", "gan"]) == [
        sys.executable, "-m", "medstyle_gui", "train", "gan"
    ]  # fmt: skip


def test_gan_command_line(tmp_path: Path) -> None:
    data = tmp_path / "d.h5"
    data.write_bytes(b"")
    run = tmp_path / "run"
    options = GANOptions(data=str(data), out=str(run), kimg=0.05, gpus=2, network="slim",
                         tick_kimg=0.01, device="cpu", workers=0)  # fmt: skip
    assert options.argv() == [
        "train", "gan", "--data", str(data), "--out", str(run), "--kimg", "0.05",
        "--network", "slim", "--tick-kimg", "0.01", "--workers", "0", "--device", "cpu",
        "--gpus", "2",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="not a run folder to resume"):
        GANOptions(data=str(data), out=str(run), resume=True).argv()
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a run"):
        options.argv()
    resumed = GANOptions(data=str(data), out=str(run), kimg=1.0, network="slim", resume=True)
    assert resumed.argv() == ["train", "gan", "--out", str(run), "--kimg", "1", "--resume"]
    with pytest.raises(ConfigError, match="training data"):
        GANOptions(out=str(tmp_path / "new")).argv()
    new = GANOptions(data=str(data), out=str(tmp_path / "new"), start_resolution=64,
                     init_from=str(tmp_path))  # fmt: skip
    assert new.argv() == [
        "train", "gan", "--data", str(data), "--out", str(tmp_path / "new"),
        "--start-resolution", "64", "--init-from", str(tmp_path),
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="model bundle to start from"):
        GANOptions(data=str(data), out=str(tmp_path / "new"), init_from="nowhere").argv()


def test_snapshot_bundle_command_line(tmp_path: Path) -> None:
    from medstyle_gui.core.export import SnapshotBundleOptions

    snap = tmp_path / "images-000001000.pt"
    snap.write_bytes(b"")
    out = tmp_path / "model"
    assert SnapshotBundleOptions(str(snap), str(out)).argv() == [
        "train", "bundle", str(snap), "--out", str(out),
    ]  # fmt: skip
    out.mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        SnapshotBundleOptions(str(snap), str(out)).argv()
    assert SnapshotBundleOptions(str(snap), str(out), overwrite=True).argv()[-1] == "--overwrite"
    with pytest.raises(ConfigError, match="snapshot"):
        SnapshotBundleOptions("", str(out)).argv()


def test_other_command_lines(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="study folder"):
        DatasetOptions(out="x.h5").argv()
    assert DatasetOptions([str(tmp_path)], str(tmp_path / "d.h5"), 64, n4=False).argv() == [
        "dataset", "build", str(tmp_path), "--out", str(tmp_path / "d.h5"), "--size", "64",
        "--no-n4",
    ]  # fmt: skip
    bundle = str(tmp_path)
    enc = EncoderOptions(model=bundle, out=str(tmp_path / "e"), kimg=4.0, gpus=3, replace=True)
    assert enc.argv() == [
        "train", "encoder", "--model", bundle, "--out", str(tmp_path / "e"), "--kimg", "4",
        "--gpus", "3", "--replace",
    ]  # fmt: skip
    latents = tmp_path / "l.h5"
    with pytest.raises(ConfigError, match="latents file"):
        DirectionsOptions(model=bundle, latents=str(latents)).commands()
    latents.write_bytes(b"")
    assert DirectionsOptions(model=bundle, latents=str(latents), trials=3).commands() == [
        ["directions", "fit", "--model", bundle, "--latents", str(latents), "--trials", "3"]
    ]
    with pytest.raises(ConfigError, match="already exists"):
        DirectionsOptions(model=bundle, latents=str(latents), embed_from=bundle).commands()


def test_views_as_png(tmp_path: Path) -> None:
    from PIL import Image

    ramp = np.linspace(-1000, 1000, 64 * 64, dtype=np.float32).reshape(64, 64)
    views = {
        "source": ViewImage(ramp, "CT", (40.0, 400.0)),
        "difference": ViewImage(ramp / 10, None, diverging=True),
    }
    written = export.write_view_pngs(views, tmp_path, "s")
    assert [p.name for p in written] == ["s_source.png", "s_difference.png"]
    grey = np.asarray(Image.open(written[0]))
    assert grey.shape == (64, 64, 3)
    assert grey[0, 0, 0] == 0 and grey[-1, -1, 0] == 255  # -1000 HU black, +1000 white
    diff = np.asarray(Image.open(written[1])).astype(int)
    assert diff[0, 0, 2] > diff[0, 0, 0] and diff[-1, -1, 0] > diff[-1, -1, 2]  # blue .. red
    with pytest.raises(ScanWriteError, match="already exists"):
        export.write_view_pngs(views, tmp_path, "s")


def test_slice_dicom_is_marked_synthetic(tmp_path: Path) -> None:
    import pydicom

    image = np.full((32, 32), 40.0, np.float32)
    image[8:24, 8:24] = 700.0
    folder = export.write_slice_dicom(
        image, RECIPE, tmp_path / "slice", pixel_mm=(1.5, 1.25), slice_mm=3.0
    )
    ds = pydicom.dcmread(next(folder.glob("*.dcm")))
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] and ds.Modality == "CT"
    assert ds.SeriesDescription.startswith("SYNTHETIC")
    assert "pelvis.nii.gz" in ds.DerivationDescription and '"tau":0.8' in ds.DerivationDescription
    np.testing.assert_allclose(ds.pixel_array * float(ds.RescaleSlope) + ds.RescaleIntercept, image)
    assert [float(v) for v in ds.PixelSpacing] == [1.5, 1.25]
    provenance = RECIPE.provenance()
    assert provenance.synthetic and provenance.source_files == ["pelvis.nii.gz"]
    assert "modality +4, slice -0.5, 8x8/16x16 mixed" in provenance.description
    with pytest.raises(ScanWriteError, match="already exists"):
        export.write_slice_dicom(image, RECIPE, folder, pixel_mm=(1, 1), slice_mm=1)


def test_metrics_csv(tmp_path: Path) -> None:
    rows = [
        export.metrics_row(RECIPE, {"mae_hu": 80.5, "mae_hu_body": 120.0}, "source CT", 12.3, "t0"),
        export.metrics_row(SliceRecipe("m", "0", modality="MR"), {"rmse": 0.2}, "x", 1, "t1"),
    ]
    out = export.write_metrics_csv(rows, tmp_path / "m.csv")
    lines = out.read_text().splitlines()
    assert lines[0].startswith("time,slice,modality,truth,mae_hu,mae_hu_body,rmse,rmse_body")
    assert lines[0].endswith("alpha_modality,alpha_slice") and len(lines) == 3
    assert lines[1].startswith("t0,12,CT,source CT,80.5,120.0,,,0.8,8x8 16x16,12.3,4.0,-0.5")
    with pytest.raises(ScanWriteError, match="already exists"):
        export.write_metrics_csv(rows, out)
    with pytest.raises(ConfigError, match="no metrics"):
        export.write_metrics_csv([], tmp_path / "empty.csv")


def test_export_volume(tiny_bundle: Path, tmp_path: Path) -> None:
    from medstyle_gui.core.generate import GenerateRequest
    from medstyle_gui.core.model import load_model
    from trainer.data.read import read_sidecar, read_volume

    model = load_model(tiny_bundle)
    request = GenerateRequest(slices=5, seed=3)
    seen: list[float] = []
    out = export.export_volume(
        model, request, tmp_path / "v.nii.gz", recipe=RECIPE, progress=lambda f, t: seen.append(f)
    )
    volume = read_volume(out)
    assert volume.shape == (5, model.resolution, model.resolution) and seen[-1] == 1.0
    provenance = read_sidecar(out)["provenance"]
    assert provenance["synthetic"] and provenance["recipe"]["explorer"]["tau"] == 0.8
    # HDF5 too; a cancelled export writes nothing
    assert read_volume(export.export_volume(model, request, tmp_path / "v.h5")).shape[0] == 5
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(export.ExportCancelled):
        export.export_volume(model, request, tmp_path / "c.nii.gz", cancel=cancel)
    assert not (tmp_path / "c.nii.gz").exists()
    with pytest.raises(ScanWriteError, match="already exists"):
        export.export_volume(model, request, out)


def test_a_volume_keeps_the_style_mix(tiny_bundle: Path) -> None:
    from medstyle_gui.core.explore import seeded_w
    from medstyle_gui.core.generate import GenerateRequest, generate_volume
    from medstyle_gui.core.model import load_model

    model = load_model(tiny_bundle)
    source, target = seeded_w(model, 3), seeded_w(model, 11)
    plain = generate_volume(model, GenerateRequest(slices=4, start_w=source))
    other = generate_volume(model, GenerateRequest(slices=4, start_w=target))

    def mixed(layers: tuple[str, ...]):
        request = GenerateRequest(
            slices=4, start_w=source, mix_w=target, mix_layers=layers, mix_label="seed 11"
        )
        return generate_volume(model, request)

    # no layer chosen: the source's walk; every layer: the target's walk (it walks too)
    np.testing.assert_allclose(mixed(()).volume.array, plain.volume.array, atol=1e-3)
    everything = mixed(("4-32",))
    np.testing.assert_allclose(everything.volume.array, other.volume.array, atol=1e-3)
    fine = mixed(("16-32",))
    assert not np.allclose(fine.volume.array, plain.volume.array, atol=1.0)
    assert not np.allclose(fine.volume.array, other.volume.array, atol=1.0)
    recipe = fine.provenance.recipe
    assert recipe["mix"] == {"layers": ["16-32"], "from": "seed 11"}
    assert "16-32 styles mixed in" in fine.provenance.description
    np.testing.assert_allclose(fine.w, plain.w)  # the walked latents are the source's
