"""Results as pandas DataFrames (``.to_frame()``): the ``to_dict()`` document flattened, one row or one per item.

Nested mappings become dotted columns (``breakdown_s.compute``) through ``pandas.json_normalize``; lists are
left out of one-row frames (they have their own ``rows``). pandas is imported only when a frame is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def frame(document: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """One row of ``document``'s scalars and nested mappings, or one row per item of ``rows``."""
    import pandas as pd

    if rows is not None:
        return pd.json_normalize([dict(r) for r in rows])
    scalars = {k: v for k, v in document.items() if not isinstance(v, list | tuple)}
    return pd.json_normalize([scalars])
