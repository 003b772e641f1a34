"""The latent-space commands as a user runs them: embed real scans, fit directions,
generate a synthetic volume, evaluate, benchmark."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medstyle_gui.cli import main
from trainer.data.read import read_volume


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_embed_the_real_t2_scan(tiny_bundle: Path, real_t2_nifti: Path, tmp_path, capsys) -> None:
    from medstyle_gui.core.latents import read_latents

    out = tmp_path / "t2.h5"
    code, text, err = run(
        capsys,
        "embed",
        real_t2_nifti,
        "--model",
        tiny_bundle,
        "--out",
        out,
        "--refine-steps",
        "3",
        "--quiet",
    )
    assert code == 0, err
    assert "embedded 19 slices" in text and "MR (19 slices) median RMSE" in text
    latents = read_latents(out)
    assert latents.w.shape == (19, 32) and set(latents.modalities) == {"MR"}
    assert np.isfinite(latents.columns["error_refined"]).all()
    # slice positions come from the scan: inferior to superior in mm
    assert (np.diff(latents.columns["z_mm"]) > 0).all()


def test_embed_a_real_dicom_series(
    tiny_bundle: Path, real_ct_dicom: Path, tmp_path, capsys
) -> None:
    out = tmp_path / "ct.h5"
    code, text, err = run(
        capsys,
        "embed",
        real_ct_dicom,
        "--model",
        tiny_bundle,
        "--out",
        out,
        "--refine-steps",
        "2",
        "--slices",
        "0:20:4",
        "--quiet",
    )
    assert code == 0, err
    assert "embedded 5 slices" in text and "CT (5 slices) median MAE HU" in text


def test_embed_refuses_an_existing_output_before_working(tiny_bundle, gan_data, tmp_path, capsys):
    out = tmp_path / "l.h5"
    out.write_text("keep me")
    code, _, err = run(capsys, "embed", gan_data, "--model", tiny_bundle, "--out", out)
    assert code == 1 and err.count("\n") == 1 and "already exists" in err
    assert out.read_text() == "keep me"
    code, _, err = run(
        capsys, "embed", gan_data, "--model", tmp_path / "nowhere", "--out", tmp_path / "x.h5"
    )
    assert code == 1 and err.count("\n") == 1 and "nowhere" in err
    code, _, err = run(
        capsys, "embed", gan_data, "--model", tiny_bundle, "--out", tmp_path / "y.h5",
        "--refine-lr", "0",
    )  # fmt: skip
    assert code == 1 and err.count("\n") == 1 and "--refine-lr 0: " in err
    assert not (tmp_path / "y.h5").exists()


def test_directions_fit_and_list(
    tiny_bundle: Path, tiny_latents: Path, gan_data: Path, tmp_path, capsys
) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "b"))
    code, _, err = run(
        capsys, "directions", "fit", "--model", bundle, "--latents", tiny_latents, "--trials", "2"
    )
    assert code == 1 and "already has directions" in err
    code, text, err = run(
        capsys,
        "directions",
        "fit",
        "--model",
        bundle,
        "--latents",
        tiny_latents,
        "--trials",
        "2",
        "--overwrite",
    )
    assert code == 0, err
    for name in ("modality", "sex", "slice"):
        assert f"\n{name} " in text
    assert "units/slice" in text
    code, listed, _ = run(capsys, "directions", "list", "--model", bundle)
    assert code == 0 and "modality" in listed
    # the bundle records how its directions' latents were refined, and embedding follows
    from medstyle_gui.core.embed import refinement_settings
    from medstyle_gui.core.latents import read_latents
    from medstyle_gui.core.model import load_model

    attrs = read_latents(tiny_latents).attrs
    assert "fitted on latents refined 10 steps at lr 0.001" in text
    model = load_model(bundle)
    assert model.embedding["latents"] == tiny_latents.name
    assert refinement_settings(model) == (int(attrs["refine_steps"]), 0.001)
    out = tmp_path / "two.h5"
    code, text, err = run(
        capsys, "embed", gan_data, "--model", bundle, "--out", out, "--slices", "0:2", "--quiet"
    )
    assert code == 0, err
    assert f"{int(attrs['refine_steps'])} refinement steps at lr 0.001" in text


def test_directions_score_reports_accuracy_on_a_latents_file(
    tiny_bundle: Path, tiny_gan_bundle: Path, tiny_latents: Path, capsys
) -> None:
    code, text, err = run(
        capsys, "directions", "score", "--model", tiny_bundle, "--latents", tiny_latents
    )
    assert code == 0, err
    assert "modality" in text and "MR " in text and "CT " in text
    code, text, err = run(
        capsys, "directions", "score", "--model", tiny_bundle, "--latents", tiny_latents, "--json"
    )
    scores = json.loads(text)
    # the same slices the directions were fitted on: the modality must be told apart
    assert scores["modality"]["accuracy"] >= 0.9
    assert scores["modality"]["n"] > 0 and set(scores["modality"]["per_class"]) == {"MR", "CT"}
    assert scores["slice"]["n"] < scores["modality"]["n"]  # middle slices have no class
    code, _, err = run(
        capsys, "directions", "score", "--model", tiny_gan_bundle, "--latents", tiny_latents
    )
    assert code == 1 and "no directions" in err


def test_directions_score_on_one_modality_reports_that_class(
    tiny_bundle: Path, gan_data: Path, tmp_path, capsys
) -> None:
    """One scan holds one modality: its modality score is the share classified as it."""
    import h5py

    with h5py.File(gan_data, "r") as f:
        mr_rows = np.flatnonzero(f["modality"][:] == 0)[:4]  # 0: MR
    out = tmp_path / "mr.h5"
    rows = ",".join(str(r) for r in mr_rows)
    code, _, err = run(
        capsys, "embed", gan_data, "--model", tiny_bundle, "--out", out, "--slices", rows,
        "--refine-steps", "0", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    code, text, err = run(
        capsys, "directions", "score", "--model", tiny_bundle, "--latents", out, "--json"
    )
    assert code == 0, err
    modality = json.loads(text)["modality"]
    assert modality["n"] == 4 and set(modality["per_class"]) == {"MR"}
    assert modality["accuracy"] == modality["per_class"]["MR"]


def test_generate_writes_a_marked_synthetic_volume(tiny_bundle: Path, tmp_path, capsys) -> None:
    out, png = tmp_path / "syn.nii.gz", tmp_path / "syn.png"
    code, _text, err = run(
        capsys,
        "generate",
        "--model",
        tiny_bundle,
        "--seed",
        "3",
        "--modality",
        "CT",
        "--slices",
        "12",
        "--out",
        out,
        "--preview",
        png,
        "--quiet",
    )
    assert code == 0, err
    volume = read_volume(out)
    assert volume.shape == (12, 32, 32) and volume.modality == "CT"
    side = json.loads(out.with_name("syn.nii.gz.json").read_text())
    prov = side["provenance"]
    assert prov["synthetic"] is True and len(prov["model_sha256"]) == 64
    assert prov["recipe"]["start"]["seed"] == 3 and prov["recipe"]["walk"]["slices"] == 12
    from PIL import Image

    with Image.open(png) as img:
        assert img.size[0] > 600
    # the same request again is refused, not silently overwritten
    code, _, err = run(
        capsys, "generate", "--model", tiny_bundle, "--seed", "3", "--slices", "12", "--out", out
    )
    assert code == 1 and "already exists" in err


def test_generate_from_an_embedded_slice_as_dicom(tiny_bundle, tiny_latents, tmp_path, capsys):
    import pydicom

    out = tmp_path / "syn_dicom"
    code, _text, err = run(
        capsys,
        "generate",
        "--model",
        tiny_bundle,
        "--from",
        f"{tiny_latents}:5",
        "--slices",
        "6",
        "--out",
        out,
        "--quiet",
    )
    assert code == 0, err
    files = sorted(out.iterdir())
    assert len(files) == 6
    ds = pydicom.dcmread(files[0])
    assert "DERIVED" in ds.ImageType and "SYNTHETIC" in ds.DerivationDescription.upper()
    code, _, err = run(
        capsys,
        "generate",
        "--model",
        tiny_bundle,
        "--from",
        f"{tiny_latents}:99999",
        "--slices",
        "2",
        "--out",
        tmp_path / "x.nii.gz",
    )
    assert code == 1 and "row 99999 does not exist" in err


def test_bench_embed_and_render_print_their_figures(tiny_bundle: Path, capsys) -> None:
    code, text, err = run(
        capsys, "bench", "embed", "--model", tiny_bundle, "--batches", "1", "4", "--steps", "2"
    )
    assert code == 0, err
    assert "batch   1" in text and "batch   4" in text and "x per slice" in text
    assert " float32" in text and " bf16" in text and "x vs float32" in text
    code, text, err = run(
        capsys, "bench", "render", "--model", tiny_bundle, "--repeats", "3", "--json"
    )
    assert code == 0, err
    assert json.loads(text)


@pytest.mark.slow
def test_evaluate_all_quick_writes_the_report(tiny_bundle, gan_data, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    code, _text, err = run(
        capsys,
        "evaluate",
        "all",
        "--model",
        tiny_bundle,
        "--data",
        gan_data,
        "--out",
        out,
        "--quick",
        "--quiet",
    )
    assert code == 0, err
    report = (out / "report.md").read_text()
    assert "73.6" in report and "0.35" in report  # the paper's numbers beside ours
    assert list(out.glob("*.png")) and list(out.glob("*.csv"))
    assert "quick (smoke test sizes)" in report and "Quick sizes:" in report


def test_evaluate_sizes_and_quick_must_agree(tiny_bundle, gan_data, tmp_path, capsys) -> None:
    args = ["evaluate", "all", "--model", tiny_bundle, "--data", gan_data, "--out", tmp_path / "r"]
    code, _, err = run(capsys, *args, "--quick", "--sizes", "full")
    assert code == 1 and "contradict" in err and not (tmp_path / "r").exists()


def test_evaluate_help_states_the_sizes_and_defaults_it_uses(capsys) -> None:
    """Each --sizes name's numbers and the refinement defaults in ``evaluate --help`` are
    the ones evaluate runs with."""
    import re

    from medstyle_gui.core.embed import REFINE_LR, REFINE_STEPS
    from medstyle_gui.core.evaluate import SIZES

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, s in SIZES.items():
        found = re.search(
            rf"{name} \((?:default; the paper's sizes: )?(\d+) slices, (\d+) alphas, "
            rf"(every|\d+) volumes? x (\d+) central slices, (\d+) points x (\d+) tangents",
            text,
        )
        assert found, name
        volumes = "every" if s.slice_volumes is None else str(s.slice_volumes)
        assert s.modality_n == s.mixing_n  # the help names one slice count for both
        assert found.groups() == (
            str(s.modality_n), str(s.alpha_steps), volumes, str(s.slice_central),
            str(s.curvature_points), str(s.curvature_tangents),
        ), name  # fmt: skip
    assert "full (default;" in text and SIZES["full"].refine_steps == REFINE_STEPS
    steps = re.search(r"--refine-steps N .*?\(default: (\d+), the paper's, with --sizes full; "
                      r"(\d+) with medium or quick\)", text)  # fmt: skip
    assert steps and int(steps[1]) == SIZES["full"].refine_steps
    assert int(steps[2]) == SIZES["medium"].refine_steps == SIZES["quick"].refine_steps
    assert f"the model's directions were fitted with, else the paper's {REFINE_LR:g}" in text


def test_embed_of_slices_without_a_body_says_so_instead_of_nan(tiny_bundle, tmp_path, capsys):
    """A CT of air alone has no body to measure inside: the summary says that, with no
    NaN and no numpy warning about all-NaN medians."""
    import warnings

    import SimpleITK as sitk

    air = np.random.default_rng(0).integers(-1024, -1000, (3, 32, 32)).astype(np.int16)
    scan = tmp_path / "air.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(air), str(scan))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        code, text, err = run(
            capsys, "embed", scan, "--model", tiny_bundle, "--out", tmp_path / "l.h5",
            "--modality", "CT", "--refine-steps", "0", "--quiet",
        )  # fmt: skip
    assert code == 0, err
    assert "no slice shows a body" in text and "nan" not in text
