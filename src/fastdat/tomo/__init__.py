"""SPECT tomography shared by simulated and real acquisitions: projector, collimators, counts, OSEM.

A leaf of the data's path: the simulator (stage 1) and the reconstruction of a site's projection
DICOM both use it; it imports no stage.
"""
