"""Feature schema and the FeatureMatrix step every model starts with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.atomic import atomic_write
from core.feature_matrix import FeatureMatrix
from core.features import FEATURE_NAMES, canonical_year, to_l_per_100km


def test_unit_conversion_and_year_rule():
    assert to_l_per_100km(23.5214583) == pytest.approx(10.0)
    assert np.allclose(to_l_per_100km(np.array([10.0, 47.0429166])), [23.5214583, 5.0])
    assert canonical_year(70) == 1970 and canonical_year(2015) == 2015


def test_feature_matrix_orders_dataframe_columns_and_passes_arrays():
    row = dict(zip(FEATURE_NAMES, range(1, 8), strict=True))
    shuffled = pd.DataFrame([row])[list(reversed(FEATURE_NAMES))]
    step = FeatureMatrix().fit(None)
    assert step.transform(shuffled).tolist() == [[1, 2, 3, 4, 5, 6, 7]]
    assert step.transform([[1, 2, 3, 4, 5, 6, 7]]).tolist() == [[1, 2, 3, 4, 5, 6, 7]]


def test_feature_matrix_rejects_wrong_shapes_and_missing_columns():
    step = FeatureMatrix().fit(None)
    with pytest.raises(ValueError, match="expected shape"):
        step.transform([[1, 2, 3]])
    with pytest.raises(ValueError, match="weight"):
        step.transform(pd.DataFrame([{n: 1 for n in FEATURE_NAMES if n != "weight"}]))


def test_atomic_write_keeps_previous_content_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("previous")

    def failing(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


@pytest.mark.parametrize("rows", [1, 2, 5])
@pytest.mark.parametrize(("feature", "value"), [("cylinders", 7), ("cylinders", 9), ("origin", 2.5)])
def test_a_value_inside_the_bounds_but_not_allowed_is_refused_for_one_car_and_for_many(feature, value, rows):
    """Mutation testing found that skipping the allowed-values check for a single car survived every test."""
    from core.features import FEATURE_NAMES, domain_problems

    car = [4, 140, 90, 2800, 15.5, 1976, 1]
    matrix = np.array([car] * rows, dtype=float)
    assert domain_problems(matrix) == []
    matrix[-1, FEATURE_NAMES.index(feature)] = value
    assert [(row, name) for row, name, _ in domain_problems(matrix)] == [(rows - 1, feature)]
