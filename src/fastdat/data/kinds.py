"""Image kinds that name a scan time: ``"5min"``, ``"7.5min"``, and ``"rest5min"``, the counts of
an acquisition that its 5-min thinning did not keep (:mod:`fastdat.data.projections`)."""

from __future__ import annotations

REST = "rest"
"""Prefix of a self-supervised target kind: ``rest5min`` is what the ``5min`` thinning left."""


def kind_minutes(kind: str) -> float | None:
    """The scan time of a kind (``"7.5min"`` -> 7.5), ``None`` if it names none.

    ``"rest5min"`` gives ``None``: it is the rest of a 5-min thinning, not a 5-min scan (see
    :func:`thinned_minutes`).
    """
    try:
        value = float(kind.removesuffix("min")) if kind.endswith("min") else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


def thinned_minutes(kind: str) -> float:
    """The thinning a kind is made from: ``"5min"`` and ``"rest5min"`` -> 5.0.

    Raises:
        ValueError: The kind names no scan time.
    """
    value = kind_minutes(kind.removeprefix(REST))
    if value is None:
        raise ValueError(
            f"duration {kind!r}: projections are thinned to durations like '5min' "
            f"(or '{REST}5min', the counts the 5-min thinning left)"
        )
    return value
