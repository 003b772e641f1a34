"""The paper's experiments (Fetty et al. 2020) as functions returning tables, and the
report that sets them beside the paper's numbers.

* :func:`modality_sweep`: modality by manipulation along the "modality" direction (Fig. 3)
* :func:`slice_walk`: slice position by manipulation along the "slice" direction (Fig. 4)
* :func:`style_transfer`: modality by style mixing, per injection layer (the paper's table)
* :func:`curvature_table`: curvature of the directions' decision surfaces
* :func:`evaluate`: any of them on a model and a dataset, written as REPORT_DIR
"""

from medstyle_gui.core.evaluate.curvature import CurvatureResult, curvature_table
from medstyle_gui.core.evaluate.data import EvalData, open_eval_data
from medstyle_gui.core.evaluate.mixing import MixingResult, layer_masks, style_transfer
from medstyle_gui.core.evaluate.modality import ModalityResult, modality_sweep
from medstyle_gui.core.evaluate.run import (
    EXPERIMENTS,
    FULL,
    MEDIUM,
    QUICK,
    SIZES,
    EvalSettings,
    evaluate,
    parse_experiments,
)
from medstyle_gui.core.evaluate.scoring import Truths, mean_ci, render
from medstyle_gui.core.evaluate.slice_walk import SliceWalkResult, slice_walk

__all__ = [
    "EXPERIMENTS",
    "FULL",
    "MEDIUM",
    "QUICK",
    "SIZES",
    "CurvatureResult",
    "EvalData",
    "EvalSettings",
    "MixingResult",
    "ModalityResult",
    "SliceWalkResult",
    "Truths",
    "curvature_table",
    "evaluate",
    "layer_masks",
    "mean_ci",
    "modality_sweep",
    "open_eval_data",
    "parse_experiments",
    "render",
    "slice_walk",
    "style_transfer",
]
