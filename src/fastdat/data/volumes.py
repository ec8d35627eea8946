"""The whole volumes a dataset's crops were cut from, read back through the dataset's record.

A dataset records its source (``config.yaml``'s ``source``); the evaluation restores and
quantifies whole volumes, so it asks for them here rather than opening the cohort itself.
"""

from __future__ import annotations

from fastdat.data.dataset import StudySource, sources_from_simulation
from fastdat.data.load import Dataset


def study_sources(ds: Dataset, kinds: tuple[str, ...]) -> list[StudySource]:
    """The studies of ``ds`` as :class:`~fastdat.data.dataset.StudySource` (loaders of each
    kind of ``kinds``, truth and labels), in the source's order.

    Raises:
        ValueError: The source is not a simulated cohort (the only source whose whole volumes,
            truth and labels the study's quantification reads), or it no longer holds the
            dataset's studies.
    """
    if ds.source.get("kind") != "simulation":
        raise ValueError(
            f"{ds.path}: built from a {ds.source.get('kind')!r} source; whole volumes with "
            "their truth are read from simulated cohorts only"
        )
    sources = sources_from_simulation(ds.source["path"], kinds)
    out = [s for s in sources if s.study_id in ds.studies.index]
    if not out:
        raise ValueError(f"{ds.path}: none of its studies is in its source {ds.source['path']}")
    return out
