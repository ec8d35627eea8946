from __future__ import annotations

import pytest

from fastdat.simulate.cohort import resolve_config, simulate_cohort

# A tiny simulated cohort (8 mm voxels, 32 x 32 x 20 grid): realistic enough to locate striata.
TINY_SIM = [
    "cohort.n_studies=4",
    "cohort.balanced=true",
    "grid.voxel_mm=8.0",
    "grid.size=32",
    "grid.n_slices=20",
    "acquisition.detector_size=40",
    "acquisition.n_views=30",
    "acquisition.orbit_radius_mm=140",
    "recon.iterations=2",
    "recon.subsets=5",
    "phantom.supersample=1",
]


@pytest.fixture(scope="session")
def tiny_sim_sets():
    """``--set`` overrides of the tiny cohort."""
    return list(TINY_SIM)


@pytest.fixture(scope="session")
def cohort(tmp_path_factory):
    """The tiny cohort's directory (``manifest.csv``, ``studies/...``)."""
    out = tmp_path_factory.mktemp("sim")
    simulate_cohort(resolve_config({}, TINY_SIM), out, progress=False)
    return out
