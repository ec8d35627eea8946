"""File formats in and out (a leaf: it imports no stage): DICOM NM volumes and projections,
NIfTI, the one image reader (:mod:`.image`) and the atomic writers (:mod:`.atomic`).
"""
