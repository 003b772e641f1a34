"""Procedural paired pelvic CT / T2 MR phantom studies with known sex, age, slice
position and tissue labels: the project's training data and ground truth.

``medstyle phantom OUT_DIR --patients N --seed S`` writes a cohort
(:func:`write_cohort`); :func:`render_study` draws one patient in memory;
:func:`render_montage` draws a PNG of a written cohort. See ``docs/phantom.md``.
"""

from trainer.data.phantom.cohort import CohortOptions, cohort_patients, write_cohort
from trainer.data.phantom.montage import render_montage
from trainer.data.phantom.patient import PatientParams, sample_patient
from trainer.data.phantom.study import PhantomStudy, render_study
from trainer.data.phantom.tissues import TISSUES, Tissue

__all__ = [
    "TISSUES",
    "CohortOptions",
    "PatientParams",
    "PhantomStudy",
    "Tissue",
    "cohort_patients",
    "render_montage",
    "render_study",
    "sample_patient",
    "write_cohort",
]
