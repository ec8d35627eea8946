"""SBR intervals of a restored image: an ensemble's spread, calibrated by conformal prediction.

A deep ensemble (:mod:`fastdat.models.ensemble`) restores an image ``K`` times; its output is the
members' mean. The SBR of the output is measured in VOIs placed once (on the output, or on a
reference image of the subject), and the SBR of every member's image in the same VOIs. The SD of
the members' SBRs, ``sigma``, says how much the restoration itself is unsure of that SBR, but it
is not a calibrated interval: members trained alike agree more than they are right. Split
conformal prediction (:mod:`fastdat.stats.conformal`, normalized scores) turns it into one: on
calibration cases (the validation split's studies at every scan time, reference: the noise-free
reconstruction's SBR in the same VOIs) the quantile ``q`` of ``|SBR_ref - SBR| / sigma`` is
found per measure, and

    [SBR - q sigma, SBR + q sigma]

then holds the reference SBR of a new exchangeable case with probability at least ``level``.
``sigma`` is floored at :data:`SIGMA_FLOOR` (a member set that agrees exactly would otherwise
give a zero-width interval). The calibration is stored in the model's sidecar
(``sbr_intervals``: ``level``, ``n`` and ``q`` per measure) and used by ``fastdat denoise --sbr``.

Measures are pooled over sides (left and right striata are two cases of one patient; the
coverage is per striatum).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fastdat.stats.conformal import Conformal, calibrate

SIGMA_FLOOR = 1e-3
"""Least SBR uncertainty used (SBR units): members that agree to 1e-3 are not exact."""


def member_sigma(member_values: np.ndarray) -> np.ndarray:
    """SD over members (axis 0, ``ddof=1``) of their SBRs, floored at :data:`SIGMA_FLOOR`.

    Args:
        member_values: ``(K, ...)`` the members' SBRs (``K >= 2``).
    """
    v = np.asarray(member_values, dtype=np.float64)
    if v.shape[0] < 2:
        raise ValueError(f"an SBR spread needs at least 2 ensemble members, got {v.shape[0]}")
    return np.maximum(v.std(axis=0, ddof=1), SIGMA_FLOOR)


@dataclass(frozen=True)
class SBRIntervals:
    """Calibrated interval rules, one per measure (``putamen``, ``caudate``...).

    Attributes:
        level: Nominal coverage.
        rules: Measure -> its :class:`~fastdat.stats.conformal.Conformal` rule.
        reference: What the intervals cover (e.g. ``"noise-free reconstruction"``).
    """

    level: float
    rules: dict[str, Conformal]
    reference: str = "noise-free reconstruction"

    def interval(self, measure: str, value, sigma) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper ends for a measure's ``value`` with members' SD ``sigma``."""
        if measure not in self.rules:
            raise KeyError(f"no calibrated interval for {measure!r} (have {sorted(self.rules)})")
        return self.rules[measure].interval(value, np.maximum(sigma, SIGMA_FLOOR))

    def to_dict(self) -> dict[str, Any]:
        """The sidecar form (JSON)."""
        return {
            "level": self.level,
            "reference": self.reference,
            "rules": {k: asdict(r) for k, r in self.rules.items()},
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SBRIntervals:
        """Read :meth:`to_dict`'s form."""
        rules = {
            k: Conformal(float(r["q"]), float(r["level"]), int(r["n"]))
            for k, r in doc["rules"].items()
        }
        return cls(float(doc["level"]), rules, str(doc.get("reference", "")))


def calibrate_intervals(
    cases: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    level: float = 0.9,
    reference: str = "noise-free reconstruction",
) -> SBRIntervals:
    """Calibrate one interval rule per measure.

    Args:
        cases: Measure -> ``(reference, value, sigma)`` arrays of the calibration cases (finite).
        level: Nominal coverage.
        reference: What ``reference`` is, recorded with the rules.
    """
    rules = {}
    for measure, (ref, value, sigma) in cases.items():
        rules[measure] = calibrate(ref, value, np.maximum(sigma, SIGMA_FLOOR), level)
    return SBRIntervals(level, rules, reference)
