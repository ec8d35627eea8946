"""The study's evaluation stage: every method on the test split, image quality and SBR, the report.

:func:`fastdat.evaluation.evaluate.evaluate` reads a dataset through
:func:`fastdat.data.read_dataset`, tunes the filters and ranks the networks on validation, restores
every test study once per method and scores the same restorations for image quality
(:mod:`.evaluate`) and for SBR, grading and agreement (:mod:`.sbr_study`); :mod:`.report` writes
the page once from the files the stage leaves.
"""
