"""The split invariant the gate's fairness rests on: a row keeps its side (training or holdout) however many
rows are added, and equal rows land on the same side."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.data import holdout_split


def _grown(frame: pd.DataFrame, extra: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    new = frame.sample(extra, replace=True, random_state=seed).reset_index(drop=True)
    new["weight"] = (new["weight"] * rng.uniform(0.8, 1.2, extra)).round()
    return pd.concat([new.iloc[: extra // 2], frame, new.iloc[extra // 2 :]], ignore_index=True)  # before and after


def test_a_row_keeps_its_side_when_rows_are_added(dataset, params):
    size, seed = params.split.test_size, params.split.seed
    train, held = holdout_split(dataset.frame, size, seed)
    for extra, draw in ((1, 0), (50, 1), (3000, 2)):
        grown = _grown(dataset.frame, extra, draw)
        train2, held2 = holdout_split(grown, size, seed)
        key = lambda f: set(map(tuple, f[list(dataset.frame.columns)].to_numpy().tolist()))  # noqa: E731
        assert key(held) <= key(held2) and key(train) <= key(train2), f"{extra} rows added moved an old row"
        assert not key(held2) & key(train2), "equal rows on both sides"
    assert 0.1 < len(held) / len(dataset.frame) < 0.3


def test_another_seed_is_another_split(dataset, params):
    _, held = holdout_split(dataset.frame, params.split.test_size, params.split.seed)
    _, other = holdout_split(dataset.frame, params.split.test_size, params.split.seed + 1)
    assert set(held.index) != set(other.index)
