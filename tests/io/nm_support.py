"""Header pieces of the NM test objects built with pydicom in ``tests/io``."""

from __future__ import annotations

import pydicom


def code(value: str, meaning: str, scheme: str = "SCT") -> pydicom.Dataset:
    """A code sequence item."""
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def add_i123_acquisition(ds: pydicom.Dataset, frame_ms: int) -> None:
    """The 123I photopeak window (159 keV +/- 10 %), the radionuclide and a 120-view, 360-degree
    clockwise rotation of ``frame_ms`` per view, as an NM camera records them."""
    window, limits = pydicom.Dataset(), pydicom.Dataset()
    limits.EnergyWindowLowerLimit, limits.EnergyWindowUpperLimit = "143.1", "174.9"
    window.EnergyWindowRangeSequence, window.EnergyWindowName = [limits], "I123"
    ds.EnergyWindowInformationSequence = [window]
    pharm = pydicom.Dataset()
    pharm.RadionuclideCodeSequence = [code("C-114B7", "^123^Iodine", "SRT")]
    ds.RadiopharmaceuticalInformationSequence = [pharm]
    rot = pydicom.Dataset()
    rot.StartAngle, rot.AngularStep, rot.RotationDirection, rot.ScanArc = "0", "3", "CW", "360"
    rot.ActualFrameDuration, rot.NumberOfFramesInRotation = frame_ms, 120
    ds.RotationInformationSequence = [rot]
