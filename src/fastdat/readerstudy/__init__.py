"""The reader study: blinded grading in the browser and its analysis.

``create_study`` makes a blinded, randomized study folder from an evaluation, ``create_app`` /
``serve`` run the grading web app on it, ``analyze_study`` unblinds and analyses the grades.
The web app needs the ``reader`` extra (``pip install fastdat[reader]``: FastAPI, uvicorn).
"""

from __future__ import annotations

from fastdat.readerstudy.analyze import analyze_study
from fastdat.readerstudy.create import StudyConfig, create_study

__all__ = ["StudyConfig", "analyze_study", "create_app", "create_study", "serve"]


def __getattr__(name: str):
    if name in ("create_app", "serve"):  # FastAPI is an optional extra: import it on use
        from fastdat.readerstudy import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
