"""The procedural pelvic phantom: geometry, tissue values, physics, cohort files,
learnable labels and a recoverable misalignment."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from scipy import ndimage

from trainer.data.phantom import (
    TISSUES,
    CohortOptions,
    cohort_patients,
    render_montage,
    render_study,
    sample_patient,
    write_cohort,
)
from trainer.data.phantom.render import Grid, SectionPainter
from trainer.data.phantom.shapes import Layer, circle
from trainer.data.phantom.tissues import LABEL, MR_FLUID_UNITS
from trainer.errors import ConfigError, ScanWriteError

# A small grid covering the whole craniocaudal range (24 x 11 mm = 264 mm).
SMALL = {"size": 64, "slices": 24, "slice_mm": 11.0}


# Full in-plane resolution (1.6-1.9 mm pixels), every 12 mm along the body.
FULL = {"size": 256, "slices": 22, "slice_mm": 12.0}


@pytest.fixture(scope="module")
def man():
    return render_study(sample_patient(1, "M", 5), **FULL)


@pytest.fixture(scope="module")
def woman():
    return render_study(sample_patient(2, "F", 5), **FULL)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort") / "phantom"
    options = CohortOptions(
        patients=3, seed=11, size=48, slices=10, slice_mm=20.0, female_fraction=0.5
    )
    return write_cohort(out, options, workers=1, progress=False)


# -- patients ---------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_patient_and_images():
    a = render_study(sample_patient(3, "F", 7), **SMALL)
    b = render_study(sample_patient(3, "F", 7), **SMALL)
    c = render_study(sample_patient(3, "F", 8), **SMALL)
    assert a.params == b.params
    np.testing.assert_array_equal(a.ct.array, b.ct.array)
    np.testing.assert_array_equal(a.mr.array, b.mr.array)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.params != c.params
    assert not np.array_equal(a.labels, c.labels)


def test_no_two_patients_alike_and_sexes_as_asked():
    patients = cohort_patients(CohortOptions(patients=20, seed=0, female_fraction=0.25))
    assert sum(p.sex == "F" for p in patients) == 5
    continuous = [
        "body_scale", "ap_ratio", "subcut_fat_mm", "visceral_fat", "muscle_bulk", "pelvis_width",
        "pelvis_height", "bone_scale", "iliac_flare", "bladder_ml", "bladder_shift_mm",
        "rectum_radius_mm", "rectal_gas", "bowel_gas", "yaw_deg", "shift_u_mm", "z_offset_mm",
    ]  # fmt: skip
    for name in continuous:
        values = {round(getattr(p, name), 6) for p in patients}
        assert len(values) >= 15, f"{name} hardly varies"
    assert [p.patient_id for p in patients[:2]] == ["P0001", "P0002"]


# -- geometry ---------------------------------------------------------------------------


def test_ct_mr_and_labels_share_one_lps_grid(man):
    assert man.ct.shape == man.mr.shape == man.labels.shape == (22, 256, 256)
    assert man.ct.spacing_mm == man.mr.spacing_mm
    assert man.ct.origin_lps_mm == man.mr.origin_lps_mm
    np.testing.assert_array_equal(man.ct.direction, np.eye(3))
    assert man.aligned and man.misalignment is None
    assert (man.ct.modality, man.mr.modality) == ("CT", "MR")
    assert man.ct.sex == man.mr.sex == "M"
    assert man.ct.patient_id == "P0001"
    # The field of view is centred on the isocentre; z is 0 at the femoral heads.
    fov = man.ct.spacing_mm[1] * 256
    assert man.ct.origin_lps_mm[0] == pytest.approx(-(fov / 2) + fov / 512)
    assert man.ct.slice_positions_mm[0] < -80 < 120 < man.ct.slice_positions_mm[-1]


def test_slice_zero_is_inferior_and_row_zero_anterior(man):
    labels = man.labels
    # Femoral shafts (fatty medullary canal) at the bottom, lumbar discs at the top.
    assert (labels[0] == LABEL["medullary_fat"]).sum() > 20
    assert (labels[:5] == LABEL["disc"]).sum() == 0
    assert (labels[-8:] == LABEL["disc"]).sum() > 20
    # The bladder lies in front of the rectum, the sacrum behind both.
    k = int(np.argmax((labels == LABEL["urine"]).sum(axis=(1, 2))))
    urine_row = np.nonzero(labels[k] == LABEL["urine"])[0].mean()
    stool_rows = np.nonzero(np.isin(labels[k - 3 : k + 1], [LABEL["stool"], LABEL["bowel_gas"]]))[1]
    assert urine_row < stool_rows.mean()
    # The body sits in the middle and the couch lies behind it (high rows).
    couch_rows = np.nonzero(labels == LABEL["couch"])[1]
    body_rows = np.nonzero((labels > 0) & (labels != LABEL["couch"]))[1]
    assert couch_rows.min() > body_rows.mean()


def test_sex_specific_organs(man, woman):
    male = {LABEL[n] for n in ("prostate_pz", "prostate_tz", "seminal_vesicle", "testis")}
    female = {LABEL[n] for n in ("myometrium", "cervical_stroma", "vagina", "ovary")}
    assert male <= set(np.unique(man.labels)) and not female & set(np.unique(man.labels))
    assert female <= set(np.unique(woman.labels)) and not male & set(np.unique(woman.labels))


def test_anatomy_changes_continuously_along_z(man):
    # Neighbouring slices share most labels; slices far apart do not.
    same = [(man.labels[k] == man.labels[k + 1]).mean() for k in range(21)]
    assert min(same) > 0.7
    assert (man.labels[3] == man.labels[18]).mean() < min(same)


# -- tissue values and physics -------------------------------------------------------------


def _core(labels: np.ndarray, label: int, margin: int = 2) -> np.ndarray:
    """Voxels of ``label`` at least ``margin`` pixels in-plane from any other tissue
    (free of partial volume and of the scanners' blur)."""
    size = 2 * margin + 1
    return ndimage.binary_erosion(labels == label, structure=np.ones((1, size, size), bool))


@pytest.mark.parametrize("study_name", ["man", "woman"])
def test_tissue_statistics_agree_with_the_literature_table(study_name, request):
    study = request.getfixturevalue(study_name)
    values = {t.label: t for t in TISSUES}
    checked = 0
    for label, tissue in values.items():
        core = _core(study.labels, label)
        # Stool is mottled with gas; cortical bone is too thin for a pixel free of
        # partial volume (checked on the thick femoral shafts below).
        if core.sum() < 30 or tissue.name in (
            "air",
            "stool",
            "couch",
            "couch_foam",
            "cortical_bone",
        ):
            continue
        ct = float(study.ct.array[core].mean())
        mr = float((study.mr.array[core] / study.mr_bias[core]).mean() / MR_FLUID_UNITS)
        lo, hi = tissue.ct_range
        margin = 25.0 if tissue.name == "bowel_gas" else 6.0
        assert lo - margin <= ct <= hi + margin, f"{tissue.name}: CT {ct:.0f} HU, table {lo}..{hi}"
        lo, hi = tissue.mr_range
        assert lo - 0.04 <= mr <= hi + 0.04, f"{tissue.name}: T2 {mr:.3f}, table {lo}..{hi}"
        checked += 1
    assert checked >= 10
    # What a radiographer checks first: fat dark on CT and bright on T2, the reverse
    # for muscle, cortical bone white on CT and black on T2, fluid brightest on T2.
    fat, muscle, cortex, urine = (
        _core(study.labels, LABEL[n]) for n in ("fat", "muscle", "cortical_bone", "urine")
    )
    ct, mr = study.ct.array, study.mr.array
    assert ct[fat].mean() < -80 and 35 < ct[muscle].mean() < 65
    assert mr[fat].mean() > 3 * mr[muscle].mean()
    assert mr[urine].mean() > mr[fat].mean()
    # Cortical bone, seen where it is thick: the femoral shafts in the lowest slices,
    # at full resolution (the cortex is 5-6 mm thick, a pixel 1.7 mm).
    shafts = render_study(study.params, size=256, slices=2, slice_mm=3.0)
    cortex = _core(shafts.labels, LABEL["cortical_bone"], margin=1)
    muscle = _core(shafts.labels, LABEL["muscle"])
    assert cortex.sum() >= 10
    assert shafts.ct.array[cortex].mean() > 1000
    assert shafts.mr.array[cortex].mean() < shafts.mr.array[muscle].mean()


def test_partial_volume_edges_are_area_weighted():
    grid = Grid(size=64, fov_mm=64.0, slices=1, slice_mm=3.0)
    values = np.zeros(32, np.float32)
    values[LABEL["urine"]] = 1.0
    painter = SectionPainter(grid, (0.0, 0.0, 0.0), values, values)
    ct, _, labels = painter.paint([Layer(LABEL["urine"], circle(0.3, -0.2, 10.0))])
    assert ct.sum() == pytest.approx(math.pi * 10.0**2, rel=0.01)
    edge = (ct > 0.05) & (ct < 0.95)
    assert edge.sum() > 40  # a ring of partly covered pixels
    assert labels.sum() / LABEL["urine"] == pytest.approx(math.pi * 100.0, rel=0.05)


def test_ct_noise_and_mr_rician_background(man):
    air = ndimage.binary_erosion(man.labels == 0, structure=np.ones((1, 9, 9), bool))
    ct_air = man.ct.array[air]
    assert 4.0 < ct_air.std() < 22.0
    assert abs(ct_air.mean() + 1000.0) < 5.0
    # Rician noise of zero signal is Rayleigh: positive, mean / sd about 1.91.
    mr_air = man.mr.array[air]
    assert mr_air.min() >= 0.0
    assert mr_air.mean() / mr_air.std() == pytest.approx(1.91, rel=0.1)
    # CT noise is mildly correlated between neighbouring pixels.
    ct = man.ct.array
    a, b = ct[:, 2:-2, 2:-3][air[:, 2:-2, 2:-3]], ct[:, 2:-2, 3:-2][air[:, 2:-2, 2:-3]]
    assert 0.1 < np.corrcoef(a, b)[0, 1] < 0.8


def test_mr_bias_field_is_smooth_and_moderate(man):
    bias = man.mr_bias
    assert bias.shape == man.mr.shape
    assert 0.7 < bias.min() and bias.max() < 1.4
    assert bias.max() / bias.min() > 1.1  # something for N4 to correct
    assert np.abs(np.diff(bias, axis=2)).max() < 0.02  # smooth from pixel to pixel


# -- labels are learnable (the paper's three attributes) ---------------------------------


def test_labels_are_learnable_by_logistic_regression_on_held_out_patients():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    from trainer.data.normalise import PAPER

    patients = cohort_patients(CohortOptions(patients=16, seed=3))
    images, modality, female, position, patient = [], [], [], [], []
    for i, params in enumerate(patients):
        study = render_study(params, **SMALL)
        # As in the paper, the MR is bias-corrected (here exactly: the true field is
        # divided out, which is what N4 estimates) and mapped with the paper's windows.
        corrected = study.mr.with_array(study.mr.array / study.mr_bias)
        for volume in (study.ct, corrected):
            unit = PAPER.to_unit(volume.array, volume.modality)
            images.append(unit.reshape(24, 32, 2, 32, 2).mean(axis=(2, 4)).reshape(24, -1))
            modality += [volume.modality == "MR"] * 24
            female += [params.sex == "F"] * 24
            position += list(volume.normalised_slice_index)
            patient += [i] * 24
    x = np.concatenate(images)
    modality, female, position, patient = map(np.array, (modality, female, position, patient))

    def held_out_accuracy(mask: np.ndarray, y: np.ndarray) -> float:
        right = 0
        for train, test in GroupKFold(4).split(x[mask], y[mask], patient[mask]):
            clf = LogisticRegression(max_iter=3000).fit(x[mask][train], y[mask][train])
            right += int((clf.predict(x[mask][test]) == y[mask][test]).sum())
        return right / int(mask.sum())

    everything = np.ones(len(x), bool)
    assert held_out_accuracy(everything, modality) >= 0.99
    # Sex on the slices of the lesser pelvis (ischial tuberosities to acetabular roof,
    # normalised index 0.1..0.5), where the sexes differ in organs and bony pelvis.
    pelvic = (position >= 0.1) & (position <= 0.5)
    assert held_out_accuracy(pelvic, female) >= 0.90
    # The paper's slice classes: index < 0.4 inferior, > 0.6 superior.
    ends = (position < 0.4) | (position > 0.6)
    assert held_out_accuracy(ends, position > 0.5) >= 0.95


# -- misalignment ------------------------------------------------------------------------


def test_registration_recovers_the_recorded_misalignment():
    from trainer.data.phantom.physics import transform_from_record
    from trainer.data.register import register_rigid

    study = render_study(
        sample_patient(2, "F", 3), size=96, slices=88, slice_mm=3.0, misalign_mm=5.0
    )
    assert not study.aligned
    record = study.misalignment
    assert math.dist(record["translation_mm_lps"], (0, 0, 0)) == pytest.approx(5.0, abs=1e-3)
    truth = transform_from_record(record)
    found = register_rigid(study.mr, study.ct).transform
    image = study.mr.to_sitk()
    body = np.argwhere(study.labels[::4, ::6, ::6] > 0) * (4, 6, 6)
    errors = [
        math.dist(truth.TransformPoint(p), found.TransformPoint(p))
        for p in (image.TransformIndexToPhysicalPoint([int(i) for i in idx[::-1]]) for idx in body)
    ]
    assert max(errors) < 1.0
    r_true = np.array(truth.GetMatrix()).reshape(3, 3)
    r_found = np.array(found.GetMatrix()).reshape(3, 3)
    angle = math.degrees(math.acos(np.clip((np.trace(r_true.T @ r_found) - 1) / 2, -1, 1)))
    assert angle < 1.0


def test_misaligned_ct_is_moved_by_exactly_the_recorded_transform():
    from trainer.data.phantom.physics import transform_from_record

    study = render_study(
        sample_patient(4, "M", 3), size=64, slices=30, slice_mm=6.0, misalign_mm=8.0
    )
    aligned = render_study(sample_patient(4, "M", 3), size=64, slices=30, slice_mm=6.0)
    truth = transform_from_record(study.misalignment)
    # The femoral head centres: find them in the aligned CT, map them, look in the moved CT.
    ct_aligned = aligned.ct.to_sitk()
    ct_moved = study.ct.to_sitk()
    heads = np.argwhere(aligned.labels == LABEL["fatty_marrow_bone"])
    centre = heads[heads[:, 2] < 32].mean(axis=0)  # the patient's right femur
    p_mr = ct_aligned.TransformContinuousIndexToPhysicalPoint([float(c) for c in centre[::-1]])
    p_ct = truth.TransformPoint(p_mr)
    idx_ct = ct_moved.TransformPhysicalPointToContinuousIndex(p_ct)
    k, j, i = (round(c) for c in idx_ct[::-1])
    assert study.ct.array[k, j - 1 : j + 2, i - 1 : i + 2].mean() > 150  # bone there


# -- files -------------------------------------------------------------------------------


def test_cohort_files_load_with_the_readers(cohort):
    from trainer.data.read import read_volume
    from trainer.data.studies import find_studies

    rows = list(csv.DictReader((cohort / "labels.csv").open()))
    assert len(rows) == 3 * 10
    assert set(rows[0]) == {"patient", "sex", "age", "slice", "slice_norm", "z_mm"}
    assert [float(r["slice_norm"]) for r in rows[:10]] == pytest.approx(
        np.linspace(0, 1, 10), abs=1e-5
    )
    patients = list(csv.DictReader((cohort / "patients.csv").open()))
    assert [p["patient"] for p in patients] == ["P0001", "P0002", "P0003"]
    assert {"sex", "age", "bladder_ml", "pelvis_width", "subcut_fat_mm"} <= set(patients[0])

    studies = find_studies([cohort])
    assert [s.patient_id for s in studies] == ["P0001", "P0002", "P0003"]
    study = studies[0]
    manifest = json.loads((study.folder / "study.json").read_text())
    assert manifest["phantom"] is True and manifest["generator"] == "medstyle phantom"
    assert manifest["aligned"] is True and study.aligned
    assert manifest["label_names"][str(LABEL["urine"])] == "urine"
    ct = read_volume(study.ct)
    mr = read_volume(study.mr)
    assert (ct.modality, mr.modality) == ("CT", "MR")
    assert ct.sex == mr.sex == manifest["sex"] == patients[0]["sex"]
    assert ct.patient_id == "P0001"
    assert ct.shape == mr.shape == (10, 48, 48)
    assert ct.origin_lps_mm == pytest.approx(mr.origin_lps_mm)
    assert -1024 <= ct.array.min() and ct.array.max() > 500
    assert 0 <= mr.array.min() and 800 < np.percentile(mr.array, 99.5) < 3000
    z = [float(r["z_mm"]) for r in rows[:10]]
    np.testing.assert_allclose(ct.slice_positions_mm, z, atol=1e-3)
    labels = read_volume(study.labels, modality="CT")
    assert labels.shape == ct.shape and labels.array.max() <= max(t.label for t in TISSUES)
    side = json.loads((study.folder / "ct.nii.gz.json").read_text())
    assert side["phantom"] is True and side["provenance"]["synthetic"] is True


def test_cohort_refuses_a_non_empty_folder_unless_overwrite(tmp_path):
    out = tmp_path / "c"
    out.mkdir()  # an empty folder is fine
    options = CohortOptions(patients=1, seed=1, size=32, slices=4, slice_mm=20.0)
    write_cohort(out, options, workers=1, progress=False)
    with pytest.raises(ScanWriteError, match="not empty"):
        write_cohort(out, options, workers=1, progress=False)
    write_cohort(
        out,
        CohortOptions(patients=2, seed=1, size=32, slices=4, slice_mm=20.0),
        overwrite=True,
        workers=1,
        progress=False,
    )
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["P0001", "P0002"]


@pytest.mark.parametrize(
    "change",
    [
        {"patients": 0},
        {"female_fraction": 1.5},
        {"fmt": "png"},
        {"size": 4},
        {"slice_mm": 0},
        {"misalign_mm": -1},
    ],
)
def test_bad_options_are_config_errors(tmp_path, change):
    options = CohortOptions(**{"patients": 1, "seed": 0, **change})
    with pytest.raises(ConfigError):
        write_cohort(tmp_path / "x", options, workers=1, progress=False)
    assert not (tmp_path / "x").exists()


def test_parallel_cohort_equals_serial(tmp_path):
    options = CohortOptions(patients=2, seed=4, size=32, slices=4, slice_mm=20.0)
    a = write_cohort(tmp_path / "a", options, workers=1, progress=False)
    b = write_cohort(tmp_path / "b", options, workers=2, progress=False)
    assert (a / "labels.csv").read_text() == (b / "labels.csv").read_text()
    from trainer.data.read import read_volume

    for name in ("P0001/ct.nii.gz", "P0002/mr.nii.gz"):
        np.testing.assert_array_equal(read_volume(a / name).array, read_volume(b / name).array)


def test_dicom_cohort_carries_sex_geometry_and_says_phantom(tmp_path):
    import pydicom

    from trainer.data.read import read_volume

    options = CohortOptions(
        patients=1, seed=2, size=32, slices=5, slice_mm=20.0, female_fraction=1.0, fmt="dicom"
    )
    out = write_cohort(tmp_path / "d", options, workers=1, progress=False)
    manifest = json.loads((out / "P0001" / "study.json").read_text())
    assert (manifest["ct"], manifest["mr"]) == ("ct", "mr")
    files = sorted((out / "P0001" / "ct").iterdir())
    assert len(files) == 5
    ds = pydicom.dcmread(files[0])
    assert ds.PatientSex == "F" and ds.PatientID == "P0001" and ds.Modality == "CT"
    text = " ".join(
        str(ds.get(k, "")) for k in ("SeriesDescription", "DerivationDescription", "ImageComments")
    )
    assert "phantom" in text.lower()
    mr = read_volume(out / "P0001" / "mr")
    nifti_like = render_study(cohort_patients(options)[0], size=32, slices=5, slice_mm=20.0)
    assert mr.modality == "MR" and mr.sex == "F"
    assert mr.spacing_mm == pytest.approx(nifti_like.mr.spacing_mm)
    assert mr.origin_lps_mm == pytest.approx(nifti_like.mr.origin_lps_mm, abs=1e-3)
    # Fractional MR values are kept (16-bit rescale), not rounded to whole units.
    value_range = float(np.ptp(nifti_like.mr.array))
    np.testing.assert_allclose(mr.array, nifti_like.mr.array, atol=1e-4 * value_range)


def test_montage_png(cohort, tmp_path):
    png = render_montage(cohort, tmp_path / "m.png", per_sex=1, levels=(0.2, 0.8))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ScanWriteError):
        render_montage(cohort, png, per_sex=1)


def test_command_line(tmp_path, capsys):
    from medstyle_gui.cli import main

    out = tmp_path / "cli"
    args = ["phantom", str(out), "--patients", "2", "--seed", "1", "--size", "32", "--slices", "4"]
    args += ["--slice-mm", "20", "--workers", "1", "--quiet", "--montage", str(tmp_path / "m.png")]
    assert main(args) == 0
    assert (out / "P0002" / "study.json").is_file() and (tmp_path / "m.png").is_file()
    assert main(["phantom", str(out), "--patients", "2", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0]
    assert main(["phantom-montage", str(out), str(tmp_path / "m2.png")]) == 0


def test_separable_warp_equals_the_plain_one():
    from trainer.data.phantom.render import Warp

    warp = Warp.random(np.random.default_rng(1))
    x = np.linspace(-200, 200, 40, dtype=np.float32)
    y = np.linspace(-190, 210, 30, dtype=np.float32)
    yaw = 0.05
    u = math.cos(yaw) * x[None, :] + math.sin(yaw) * y[:, None]
    v = -math.sin(yaw) * x[None, :] + math.cos(yaw) * y[:, None]
    moved_u, moved_v = warp.displace(u, v, 30.0)
    du, dv = warp.displace_grid(x, y, yaw, 30.0)
    np.testing.assert_allclose(moved_u - u, du, atol=1e-3)
    np.testing.assert_allclose(moved_v - v, dv, atol=1e-3)
    assert 0 < np.abs(du).max() <= warp.max_mm
