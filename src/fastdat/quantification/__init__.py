"""SBR quantification of DaT SPECT images without labels: the ``fastdat quantify`` tool.

:mod:`.sbr` places template VOIs and the Southampton VOIs on an image and computes specific
binding ratios; :mod:`.grading` holds the normal database and the z-score grading rule;
:mod:`.quantify` reads images and folders and writes ``sbr.csv`` and VOI figures.
"""
