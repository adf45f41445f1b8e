"""Functions of a column of log texts, computed once per distinct text: log texts repeat a lot."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def per_distinct_text(texts: np.ndarray, rows: np.ndarray, fn: Any, dtype: Any = bool) -> np.ndarray:
    """`fn` of the text of each row in `rows`, computed once per distinct text; rows outside `rows`, and
    rows without a text, hold the dtype's zero."""
    values = np.zeros(len(texts), dtype=dtype)
    candidates = np.flatnonzero(rows)
    if not len(candidates):
        return values
    codes, uniques = pd.factorize(pd.Series(texts[candidates], dtype=object), use_na_sentinel=True)
    zero = dtype()
    results = np.array(
        [(fn(u) or zero) if isinstance(u, str) else zero for u in uniques] + [zero], dtype=dtype
    )
    values[candidates] = results[codes]
    return values
