"""Stage 1 of the data's path: simulated cohorts (phantoms of :mod:`fastdat.anatomy` through the
SPECT physics of :mod:`fastdat.tomo`), their realism report and their export as projection DICOM.
"""
