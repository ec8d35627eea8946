"""Malformed DICOM fed to the reader: only :class:`DicomInputError` may come out.

Hypothesis mutates two valid reconstructed NM inputs (a multi-frame object and one file of a
single-slice stack) at the byte level (any byte, the value or the length field of the elements
the reader relies on, truncation) and at the attribute level (deleted or absurd values that
pydicom still encodes). Derandomized, so every run tries the same cases.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.filereader import data_element_generator
from pydicom.uid import generate_uid

from fastdat.io.dicom import DicomInputError, Series, read_header, series_volume
from fastdat.io.dicom_write import write_nm_volume

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on absurd values
N_CASES = 2000
WATCHED = (  # the attributes the reader relies on
    "Modality",
    "ImageType",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "NumberOfSlices",
    "SliceVector",
    "PixelSpacing",
    "SpacingBetweenSlices",
    "SliceThickness",
    "RescaleSlope",
    "RescaleIntercept",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "DetectorInformationSequence",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "PixelData",
)
ODD_VALUES = (0, -1, 1, 65535, 2**31 - 1, "", "0", "-3.5", "nan", "inf", "1e309", "a\\b", "\\\\\\")


def _multiframe() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mf.dcm"
        vol = np.random.default_rng(0).random((6, 5, 4)) * 100.0
        write_nm_volume(
            vol,
            np.diag([3.3, 3.3, 3.3, 1.0]),
            path,
            patient_id="P",
            study_uid=generate_uid(),
            series_description="DaT 5 min",
        )
        return path.read_bytes()


def _slice_file() -> bytes:
    ds = pydicom.dcmread(io.BytesIO(_multiframe()))
    det = ds.DetectorInformationSequence[0]
    ds.ImageOrientationPatient = det.ImageOrientationPatient
    ds.ImagePositionPatient = det.ImagePositionPatient
    del ds.DetectorInformationSequence, ds.SliceVector, ds.NumberOfSlices, ds.FrameIncrementPointer
    ds.NumberOfFrames = 1
    ds.PixelData = ds.PixelData[: 2 * ds.Rows * ds.Columns]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


BASES = {"multiframe": _multiframe(), "slice": _slice_file()}


def _elements(data: bytes) -> list[tuple[str, int, int]]:
    """(keyword, value offset, value length) of the top-level elements after the file meta."""
    ds = pydicom.dcmread(io.BytesIO(data))
    start = 132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength)
    fp = io.BytesIO(data)
    fp.seek(start)
    out = []
    for el in data_element_generator(fp, False, True):
        keyword = pydicom.datadict.keyword_for_tag(el.tag)
        if keyword in WATCHED:
            out.append((keyword, el.value_tell, el.length))
    return out


def _mutate_bytes(data: bytes, draw) -> bytes:
    buf = bytearray(data)
    elements = _elements(data)
    kind = draw(st.sampled_from(["value", "length", "flip", "truncate"]))
    if kind == "truncate":
        return bytes(buf[: draw(st.integers(0, len(buf) - 1))])
    if kind == "flip" or not elements:
        for _ in range(draw(st.integers(1, 8))):
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        return bytes(buf)
    keyword, tell, length = draw(st.sampled_from(elements))
    if kind == "length":  # the length field sits just before the value (2 or 4 bytes)
        field = 4 if buf[tell - 6 : tell - 4] == b"\0\0" and length > 0xFFFF else 2
        new = draw(st.integers(0, 2 ** (8 * field) - 1)).to_bytes(field, "little")
        buf[tell - field : tell] = new
        return bytes(buf)
    n = min(length, 64)
    text = draw(st.sampled_from(["-1\\0", "nan", "1e309", "\\\\", "0", "", "x"]))
    raw = draw(st.one_of(st.binary(min_size=n, max_size=n), st.just(text.encode().ljust(n))))
    buf[tell : tell + n] = raw[:n]
    return bytes(buf)


def _mutate_attributes(data: bytes, draw) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for _ in range(draw(st.integers(1, 3))):
        keyword = draw(st.sampled_from(WATCHED))
        target = ds
        if keyword in ("ImageOrientationPatient", "ImagePositionPatient") and ds.get(
            "DetectorInformationSequence"
        ):
            target = ds.DetectorInformationSequence[0]
        if draw(st.booleans()):
            if keyword in target:
                delattr(target, keyword)
            continue
        value = draw(
            st.one_of(
                st.sampled_from(ODD_VALUES),
                st.lists(st.sampled_from(ODD_VALUES[:5] + (0.5, -2.0)), max_size=7),
            )
        )
        try:
            setattr(target, keyword, value)
        except (ValueError, TypeError, OverflowError):
            continue  # pydicom refuses to hold it: nothing to test
    buf = io.BytesIO()
    try:
        ds.save_as(buf)
    except Exception:  # noqa: BLE001 - an unencodable mutation is not a test case
        return data
    return buf.getvalue()


@st.composite
def malformed(draw) -> tuple[str, bytes]:
    """A base input with bad attributes, corrupt bytes, or both (attributes first)."""
    name = draw(st.sampled_from(sorted(BASES)))
    kind = draw(st.sampled_from(["attributes", "bytes", "both"]))
    data = BASES[name]
    if kind != "bytes":
        data = _mutate_attributes(data, draw)
    if kind != "attributes":
        data = _mutate_bytes(data, draw)
    return name, data


def _read(path: Path, name: str) -> None:
    """The reader's whole path: header check, then the volume."""
    ds = read_header(path)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    files = [path] if name == "multiframe" else [path, path.with_name("other.dcm")]
    headers = [ds] if name == "multiframe" else [ds, read_header(files[1])]
    series = Series("P", "s", "u", "", files, headers, multiframe=frames > 1)
    series_volume(series)


def test_the_bases_are_readable(tmp_path):
    for name, data in BASES.items():
        (tmp_path / "case.dcm").write_bytes(data)
        (tmp_path / "other.dcm").write_bytes(_shifted(data))
        _read(tmp_path / "case.dcm", name)


def _shifted(data: bytes) -> bytes:
    """The stack's second slice: the same file one slice further along the normal."""
    ds = pydicom.dcmread(io.BytesIO(data))
    if "ImagePositionPatient" in ds:
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 3.3]
    ds.SOPInstanceUID = generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def test_malformed_dicom_raises_only_dicom_input_error():
    seen, outcomes = [], []
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "case.dcm"
        (Path(d) / "other.dcm").write_bytes(_shifted(BASES["slice"]))

        @settings(
            max_examples=N_CASES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(malformed())
        def case(example):
            name, data = example
            path.write_bytes(data)
            seen.append(data)
            with warnings.catch_warnings(record=True) as shown:
                warnings.simplefilter("always")
                try:
                    _read(path, name)
                    outcomes.append("read")
                except DicomInputError as err:
                    assert str(path) in str(err) or "other.dcm" in str(err)
                    outcomes.append(err.reason.split(" (")[0].split(":")[0][:40])
            # pydicom's warnings about a malformed file stay in the debug log: the user sees
            # the reason or nothing
            assert [str(w.message) for w in shown] == []

        case()
    assert len(seen) >= N_CASES
    assert len(set(seen)) > N_CASES // 2  # mostly distinct cases, not one repeated
    # the cases reach every stage of the reader: many different refusals, some still readable
    assert len(set(outcomes)) >= 12, sorted(set(outcomes))
    assert 0 < outcomes.count("read") < len(outcomes) // 2
