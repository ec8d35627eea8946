"""``fastdat denoise`` as a site runs it: the output path, the summary, which inputs are denoised,
what the user is told. The network is replaced by a cheap stand-in (files are the subject here;
``test_denoise.py`` runs the real model)."""

from __future__ import annotations

import csv
import errno
import json
import os
import pathlib
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from fastdat.cli import main
from fastdat.inference import files
from fastdat.io import atomic
from fastdat.io.dicom import Series, read_header, series_volume
from fastdat.io.dicom_write import write_nm_volume

AFFINE = np.diag([3.3, 3.3, 3.3, 1.0])


@pytest.fixture
def model(monkeypatch):
    """The network replaced by halving; ``calls`` counts the volumes it was given."""
    calls = []

    def fake(volume, net, device, mode, voxel_mm, *args, **kwargs):
        calls.append(volume.shape)
        return np.asarray(volume, dtype=np.float32) * 0.5, {
            "mode": mode,
            "crop_corner": None,
            "warnings": [],
        }

    monkeypatch.setattr(files, "denoise_volume", fake)
    return calls


def _volume(seed=0, shape=(24, 20, 8)):
    return np.random.default_rng(seed).random(shape).astype(np.float32) * 100


def _nm(folder, name="study.dcm", seed=0, study_uid=None, **kw):
    folder.mkdir(parents=True, exist_ok=True)
    args = {"patient_id": "P1", "study_uid": study_uid or generate_uid()}
    args["series_description"] = "DaT 5min"
    return write_nm_volume(_volume(seed), AFFINE, folder / name, **{**args, **kw})


def _run(*args):
    return main(["denoise", *map(str, args), "--device", "cpu", "--mode", "slice"])


def _summary(path):
    with open(path, newline="") as f:
        return {r["source"]: r for r in csv.DictReader(f)}


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# --- item 3: an --out that cannot be created or written


def test_out_under_a_file_refused_before_any_work(tmp_path, model, capsys):
    src = _nm(tmp_path / "in")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    assert _run(src, "--out", blocker / "out" / "deeper") == 2
    err = capsys.readouterr().err
    assert f"{blocker} is a file, not a folder" in err and "fastdat denoise: error" in err
    assert model == []  # checked before any work
    assert blocker.read_text() == "a file, not a folder"


def test_out_not_permitted_even_for_root(tmp_path, model, capsys):
    out = pathlib.Path("/sys/fastdat-test-out")  # sysfs refuses mkdir, even to root
    if not pathlib.Path("/sys").is_dir() or out.exists():
        pytest.skip("needs a /sys that refuses new folders")
    src = _nm(tmp_path / "in")
    assert _run(src, "--out", out) == 2
    err = capsys.readouterr().err
    assert f"{out}: cannot create the output folder (Operation not permitted)" in err
    assert model == [] and not out.exists()


def test_permission_denied_is_named(tmp_path, model, capsys, monkeypatch):
    src = _nm(tmp_path / "in")
    out = tmp_path / "locked" / "out"
    real = pathlib.Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "locked")):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    assert _run(src, "--out", out) == 2
    err = capsys.readouterr().err
    assert f"{out}: cannot create the output folder (Permission denied)" in err
    assert model == [] and not (tmp_path / "locked").exists()


def test_unwritable_existing_folder_is_named(tmp_path, model, capsys, monkeypatch):
    src = _nm(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()

    def mkstemp(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    assert _run(src, "--out", out) == 2
    err = capsys.readouterr().err
    assert f"{out}: cannot write in the output folder (Read-only file system)" in err
    assert model == [] and _listing(out) == []


def _disk_full(volume, affine, source, path, **kwargs):
    pathlib.Path(path).write_bytes(b"\0" * 1000)  # part of the file, then the disk is full
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_leaves_nothing_half_written(tmp_path, model, capsys, monkeypatch):
    import fastdat.io.dicom_write

    src = _nm(tmp_path / "in")
    out = tmp_path / "out"
    monkeypatch.setattr(fastdat.io.dicom_write, "write_derived_series", _disk_full)
    assert _run(src, "--out", out) == 2  # a traceback would raise here instead
    err = capsys.readouterr().err
    target = out / "study_denoised.dcm"
    assert f"fastdat denoise: error: {target}: could not write it (No space left on device)" in err
    assert _listing(out) == []  # no output, no temporary file, no empty folder


def test_disk_full_on_the_provenance_removes_the_output(tmp_path, model, capsys, monkeypatch):
    src = _nm(tmp_path / "in")
    out = tmp_path / "out"
    real = pathlib.Path.write_text

    def write_text(self, *args, **kwargs):
        if self.suffix == ".json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    assert _run(src, "--out", out) == 2
    assert "study_denoised.json: could not write it (No space left" in capsys.readouterr().err
    assert _listing(out) == []  # the DICOM without its provenance was taken back


def test_disk_full_stops_a_folder_run_and_says_so(tmp_path, model, capsys, monkeypatch):
    import fastdat.io.dicom_write

    root = tmp_path / "in"
    for k in range(3):
        _nm(root / f"s{k}", seed=k)
    out = tmp_path / "out"
    monkeypatch.setattr(fastdat.io.dicom_write, "write_derived_series", _disk_full)
    assert _run(root, "--out", out) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert len(model) == 1  # the first failure stops the run: the disk is full for all
    rows = _summary(out / "denoise_summary.csv")  # written when the disk frees, else not at all
    assert [r["status"] for r in rows.values()] == ["failed", "skipped", "skipped"]
    assert all("No space left" in r["reason"] for r in rows.values())
    assert not list(out.rglob("*.dcm")) and not list(out.rglob(".tmp-*"))


# --- item 4: --out naming an existing file


def test_out_naming_an_existing_file_refused_before_any_work(tmp_path, model, capsys):
    src = _nm(tmp_path / "in")
    existing = tmp_path / "results.dcm"
    existing.write_bytes(b"keep me")
    assert _run(src, "--out", existing) == 2
    err = capsys.readouterr().err
    assert f"{existing}: --out names an existing file; give a folder" in err
    assert "Errno" not in err and model == [] and existing.read_bytes() == b"keep me"
    nii = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(_volume(), AFFINE), nii)
    taken = tmp_path / "taken.nii.gz"
    taken.write_bytes(b"keep me too")
    assert _run(nii, "--out", taken) == 2
    assert f"{taken}: already exists; not overwritten" in capsys.readouterr().err
    assert model == [] and taken.read_bytes() == b"keep me too"


# --- item 5: a PACS export in JPEG Lossless, end to end


def test_jpeg_lossless_export_is_denoised(tmp_path, model):
    gdcm = pytest.importorskip("gdcm")
    raw = _nm(tmp_path / "raw", seed=3)
    reader = gdcm.ImageReader()
    reader.SetFileName(str(raw))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    assert change.Change()
    (tmp_path / "in").mkdir()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(tmp_path / "in" / "jll.dcm"))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    assert _run(tmp_path / "in" / "jll.dcm", "--out", tmp_path / "out") == 0
    out = tmp_path / "out" / "jll_denoised.dcm"
    got, _ = series_volume(Series("", "", "", "", [out], [read_header(out)], True))
    want, _ = series_volume(Series("", "", "", "", [raw], [read_header(raw)], True))
    np.testing.assert_allclose(got, want * 0.5, atol=want.max() / 65535)


# --- item 6: the summary, always


def test_folder_with_one_usable_series_gets_a_summary_of_every_file(tmp_path, model):
    root = tmp_path / "in"
    src = _nm(root / "dat")
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "ct.dcm")
    (root / "notes.txt").write_text("not DICOM")
    assert _run(root, "--out", tmp_path / "out") == 0
    rows = _summary(tmp_path / "out" / "denoise_summary.csv")
    assert set(rows) == {str(src), str(root / "ct.dcm"), str(root / "notes.txt")}
    assert rows[str(src)]["status"] == "ok"
    assert rows[str(src)]["output"] == str(tmp_path / "out" / "dat" / "study_denoised.dcm")
    assert rows[str(root / "ct.dcm")]["reason"] == "modality CT, not NM"
    assert "not a readable DICOM" in rows[str(root / "notes.txt")]["reason"]


def test_folder_whose_one_series_fails_still_gets_its_summary(tmp_path, model, capsys):
    root = tmp_path / "in"
    bad = _nm(root)
    bad.write_bytes(bad.read_bytes()[:-500])
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "ct.dcm")
    assert _run(root, "--out", tmp_path / "out") == 2
    assert "corrupt pixel data" in capsys.readouterr().err
    rows = _summary(tmp_path / "out" / "denoise_summary.csv")
    assert rows[str(bad)]["status"] == "failed" and "corrupt pixel data" in rows[str(bad)]["reason"]
    assert rows[str(root / "ct.dcm")]["status"] == "skipped"


def test_folder_without_usable_series_gets_a_summary_and_an_error(tmp_path, model, capsys):
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "ct.dcm")
    assert _run(root, "--out", tmp_path / "out") == 2
    assert "no reconstructed NM series" in capsys.readouterr().err
    rows = _summary(tmp_path / "out" / "denoise_summary.csv")
    assert rows[str(root / "ct.dcm")]["reason"] == "modality CT, not NM"


def test_a_second_run_keeps_the_first_summary(tmp_path, model):
    root = tmp_path / "in"
    _nm(root / "a")
    _nm(root / "b", seed=1)
    out = tmp_path / "out"
    assert _run(root, "--out", out) == 0
    first = (out / "denoise_summary.csv").read_text()
    _nm(root / "c", seed=2)  # a study added since: denoised; the others exist already
    assert _run(root, "--out", out) == 2
    assert (out / "denoise_summary.csv").read_text() == first
    rows = _summary(out / "denoise_summary_2.csv")
    assert [r["status"] for r in rows.values()] == ["failed", "failed", "ok"]
    assert "already exists; not overwritten" in rows[str(root / "a" / "study.dcm")]["reason"]


# --- item 7: several multi-frame objects in one series


def test_corrupt_first_copy_skipped_and_the_good_one_denoised(tmp_path, model):
    root = tmp_path / "in"
    good = _nm(root, name="b.dcm")
    bad = root / "a.dcm"  # first by file name, and cut short
    bad.write_bytes(good.read_bytes()[:-700])
    assert _run(root, "--out", tmp_path / "out") == 0
    rows = _summary(tmp_path / "out" / "denoise_summary.csv")
    assert rows[str(good)]["status"] == "ok"
    assert "1 other multi-frame object(s) of this series left out" in rows[str(good)]["warnings"]
    assert rows[str(bad)]["status"] == "skipped"
    assert "unusable copy (corrupt pixel data" in rows[str(bad)]["reason"]
    assert f"was denoised from {good}" in rows[str(bad)]["reason"]


def _version(path, when, number, seed):
    """The series' multi-frame object at ``path`` again, as another version (time, pixels)."""
    ds = pydicom.dcmread(path)
    ds.ContentDate, ds.ContentTime, ds.InstanceNumber = when[:8], when[8:], number
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    px = ds.pixel_array.copy()
    px[0, 0, 0] = seed
    ds.PixelData = px.tobytes()
    return ds


def test_of_several_versions_the_newest_is_denoised_and_the_rest_reported(tmp_path, model):
    root = tmp_path / "in"
    first = _nm(root, name="x.dcm")
    copies = {"a.dcm": ("20240101120000", 1), "b.dcm": ("20240301120000", 1)}
    copies |= {"c.dcm": ("20240201120000", 9)}
    for k, (name, (when, number)) in enumerate(copies.items()):
        _version(first, when, number, k).save_as(root / name)
    first.unlink()
    assert _run(root, "--out", tmp_path / "out") == 0
    rows = _summary(tmp_path / "out" / "denoise_summary.csv")
    assert rows[str(root / "b.dcm")]["status"] == "ok"
    assert rows[str(root / "b.dcm")]["output"].endswith("b_denoised.dcm")
    for name in ("a.dcm", "c.dcm"):
        assert rows[str(root / name)]["status"] == "skipped"
        assert f"{root / 'b.dcm'} was denoised (newest" in rows[str(root / name)]["reason"]
    # identical copies: the first by file name, the other named as its copy
    shutil.rmtree(root)
    one = _nm(root, name="d.dcm")
    shutil.copy(one, root / "e.dcm")
    assert _run(root, "--out", tmp_path / "out2") == 0
    rows = _summary(tmp_path / "out2" / "denoise_summary.csv")
    assert rows[str(one)]["status"] == "ok"
    assert rows[str(root / "e.dcm")]["reason"] == f"identical copy of {one}, which was denoised"


# --- item 8: FastDaT's own output is not denoised again


def test_own_output_skipped_unless_forced(tmp_path, model, capsys):
    src = _nm(tmp_path / "in")
    assert _run(src, "--out", tmp_path / "once") == 0
    once = tmp_path / "once" / "study_denoised.dcm"
    capsys.readouterr()
    assert _run(once, "--out", tmp_path / "twice") == 2
    err = capsys.readouterr().err
    assert f"{once}: a series FastDaT already denoised (Derivation Description" in err
    assert "--force" in err and len(model) == 1
    # a folder holding a study and its denoised series: only the study is denoised
    shutil.copy(once, tmp_path / "in" / "study_denoised.dcm")
    assert _run(tmp_path / "in", "--out", tmp_path / "folder") == 0
    rows = _summary(tmp_path / "folder" / "denoise_summary.csv")
    assert rows[str(src)]["status"] == "ok"
    mine = rows[str(tmp_path / "in" / "study_denoised.dcm")]
    assert mine["status"] == "skipped" and "already denoised" in mine["reason"]
    # --force denoises it anyway
    assert _run(once, "--out", tmp_path / "twice", "--force") == 0
    twice = tmp_path / "twice" / "study_denoised_denoised.dcm"
    twice = pydicom.dcmread(twice, stop_before_pixels=True)
    assert twice.SeriesDescription == "DaT 5min FastDaT denoised FastDaT denoised"


def test_own_nifti_output_skipped_unless_forced(tmp_path, model, capsys):
    nii = tmp_path / "in" / "v.nii.gz"
    nii.parent.mkdir()
    nib.save(nib.Nifti1Image(_volume(), AFFINE), nii)
    assert _run(nii, "--out", tmp_path / "once") == 0
    once = tmp_path / "once" / "v_denoised.nii.gz"
    assert bytes(nib.load(once).header["descrip"].item()).startswith(b"FastDaT")
    assert _run(once, "--out", tmp_path / "twice") == 2
    assert "a volume FastDaT already denoised" in capsys.readouterr().err
    assert _run(once, "--out", tmp_path / "twice", "--force") == 0


# --- item 11: messages


def test_number_of_frames_zero_named_as_such(tmp_path, model, capsys):
    src = _nm(tmp_path / "in")
    ds = pydicom.dcmread(src)
    ds.NumberOfFrames = 0
    ds.save_as(src)
    assert _run(src, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"{src}: Number of Frames is 0" in err and "single slice" not in err


def test_header_cut_short_named_truncated(tmp_path, model, capsys):
    src = _nm(tmp_path / "in")
    ds = pydicom.dcmread(src)
    src.write_bytes(src.read_bytes()[: ds["PixelData"].file_tell - 20])
    assert _run(src, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"{src}: truncated file" in err and "no pixel data" not in err


def test_simulated_notice_only_when_something_was_denoised(tmp_path, model, capsys):
    ct = tmp_path / "ct.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), ct)
    assert main(["denoise", str(ct), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "trained on simulated data" not in err and "modality CT" in err
    src = _nm(tmp_path / "in")
    assert main(["denoise", str(src), "--out", str(tmp_path / "o2"), "--device", "cpu"]) == 0
    assert "trained on simulated data" in capsys.readouterr().err


def test_the_user_sees_one_line_and_no_traceback(tmp_path):
    """As a site runs it: a file pydicom warns about, refused; stderr holds the error alone."""
    src = tmp_path / "sc.dcm"  # pydicom: "Expected explicit VR, but found implicit VR"
    shutil.copy(get_testdata_file("SC_rgb_jpeg.dcm"), src)
    run = subprocess.run(
        [sys.executable, "-m", "fastdat.cli", "denoise", str(src), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"fastdat denoise: error: {src}: modality OT, not NM"]
    assert not (tmp_path / "o").exists()


def test_provenance_json_still_beside_each_output(tmp_path, model):
    src = _nm(tmp_path / "in")
    assert _run(src, "--out", tmp_path / "out") == 0
    doc = json.loads((tmp_path / "out" / "study_denoised.json").read_text())
    assert doc["stage"] == "denoise" and doc["inputs"] == [str(src.resolve())]
