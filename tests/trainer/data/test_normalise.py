"""The paper's intensity mapping and its inverse."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data.normalise import PAPER, Normalisation
from trainer.errors import ConfigError


@pytest.mark.parametrize(
    ("modality", "native", "unit"),
    [
        ("CT", [-1024.0, 1500.0, 238.0, 4024.0], [-1.0, 1.0, 0.0, 3.0]),
        ("MR", [0.0, 2500.0, 1250.0, -250.0], [-1.0, 1.0, 0.0, -1.2]),
    ],
)
def test_paper_mapping_is_linear_without_clipping(modality, native, unit):
    mapped = PAPER.to_unit(np.array(native, dtype=np.float32), modality)
    np.testing.assert_allclose(mapped, unit, atol=1e-6)
    assert mapped.dtype == np.float32
    np.testing.assert_allclose(PAPER.to_native(mapped, modality), native, rtol=1e-5, atol=1e-3)


def test_constants_round_trip_through_a_record():
    record = PAPER.to_dict()
    assert record["CT"] == {"low": -1024.0, "high": 1500.0}
    assert record["MR"] == {"low": 0.0, "high": 2500.0}
    assert Normalisation.from_dict(record) == PAPER


def test_unknown_modality_and_broken_record_are_clear_errors():
    with pytest.raises(ConfigError, match="PET"):
        PAPER.to_unit(np.zeros(2), "PET")
    with pytest.raises(ConfigError, match="malformed"):
        Normalisation.from_dict({"CT": {"low": 0}})
