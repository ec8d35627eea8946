"""The sweep report is generated from fom.csv / iso.csv only: cells, sentences, figures, errors."""

from __future__ import annotations

import csv
import json
import math

import pytest

from fastdat.io.atomic import write_csv
from fastdat.sweep.report import (
    answer,
    ci_below,
    fom_figure,
    fom_label,
    format_iso,
    iso_table_html,
    read_fom_csv,
    read_iso_csv,
    write_sweep_report,
)

METHODS = {"osem": "raw", "gaussian": "filter", "unet4@5min": "network"}
DURATIONS = (2.0, 5.0, 10.0, 25.0)
FOMS = {"cho_auc": True, "sbr_sd_putamen": False, "my_new_fom": True}  # higher is better
UNKNOWN = "my_new_fom"


def _fom_rows() -> list[dict]:
    rows = []
    for i, (method, kind) in enumerate(METHODS.items()):
        for d in DURATIONS:
            for fom, higher in FOMS.items():
                if fom == "sbr_sd_putamen":
                    value = 0.4 / math.sqrt(d) * (1 + 0.1 * i)
                else:
                    value = 0.6 + 0.1 * math.log(d) + 0.02 * i
                no_ci = method == "gaussian" and fom == UNKNOWN
                rows.append(
                    {
                        "method": method,
                        "kind": kind,
                        "duration_min": d,
                        "fom": fom,
                        "value": value,
                        "low": "" if no_ci else value - 0.03,
                        "high": "" if no_ci else value + 0.03,
                        "n": 40,
                        "higher_is_better": higher,
                    }
                )
    return rows


def _iso(method, fom, time, bound, low, low_bound, high, high_bound, ref, share=0.0) -> dict:
    return {
        "method": method,
        "fom": fom,
        "time_min": time,
        "bound": bound,
        "low": low,
        "low_bound": low_bound,
        "high": high,
        "high_bound": high_bound,
        "reference_value": ref,
        "share_beyond": share,
    }


INF = math.inf
ISO = [
    # detection: the network's CI lies entirely below OSEM's, the filter's overlaps
    _iso("osem", "cho_auc", 7.6, "exact", 5.9, "exact", 9.8, "exact", 0.871),
    _iso("gaussian", "cho_auc", 6.2, "exact", 4.4, "exact", 8.9, "exact", 0.871),
    _iso("unet4@5min", "cho_auc", 3.1, "exact", 2.0, "at_most", 4.0, "exact", 0.871),
    # precision: the filter overlaps OSEM, the network needs longer (and is not reached)
    _iso("osem", "sbr_sd_putamen", 12.5, "exact", 9.1, "exact", 17.0, "exact", 0.08),
    _iso("gaussian", "sbr_sd_putamen", 10.3, "exact", 6.0, "exact", 14.2, "exact", 0.08),
    _iso("unet4@5min", "sbr_sd_putamen", INF, "beyond", 18.0, "exact", INF, "beyond", 0.08, 0.6),
    # an unknown FOM: OSEM matches already at the shortest scan
    _iso("osem", UNKNOWN, 2.0, "at_most", 2.0, "at_most", 3.3, "exact", 0.5),
    _iso("gaussian", UNKNOWN, 2.0, "at_most", 2.0, "at_most", 2.0, "at_most", 0.5),
]


@pytest.fixture
def out(tmp_path):
    write_csv(tmp_path / "fom.csv", _fom_rows())
    write_csv(tmp_path / "iso.csv", ISO)
    meta = {
        "n_test_patients": 40,
        "durations": list(DURATIONS),
        "mode": "nested",
        "notes": ["a <b>note</b> & more"],
        "timings": {"measure": 12.5},
        "reference_method": "osem",
        "reference_duration": 25,
    }
    (tmp_path / "sweep.json").write_text(json.dumps(meta))
    return tmp_path


def test_iso_cells_are_formatted_by_bound():
    assert format_iso(ISO[0]) == "7.6 min [5.9, 9.8]"
    assert format_iso(ISO[2]) == "3.1 min [<= 2, 4.0]"
    assert format_iso(ISO[5]) == "> 25 min [18.0, > 25]"
    assert format_iso(ISO[6]) == "<= 2 min [<= 2, 3.3]"
    assert format_iso(ISO[5], longest_min=15) == "> 15 min [18.0, > 15]"
    no_ci = {**ISO[0], "low": "", "high": "", "low_bound": "", "high_bound": ""}
    assert format_iso(no_ci) == "7.6 min"
    table = iso_table_html(ISO, list(METHODS), list(FOMS))
    assert ">7.6 min [5.9, 9.8]</td>" in table
    assert ">&lt;= 2 min [&lt;= 2, 3.3]</td>" in table
    assert ">&gt; 25 min [18.0, &gt; 25]</td>" in table
    assert "60% of bootstrap replicates never reach" in table
    assert "<td>&ndash;</td>" in table  # the network has no row for the unknown FOM
    assert "<th>method</th>" in table and table.count("<tr>") == 1 + len(METHODS) + 1


def test_ci_below_respects_the_bounds():
    assert ci_below(ISO[2], ISO[0])  # [<= 2, 4.0] below [5.9, 9.8]
    assert not ci_below(ISO[1], ISO[0])  # overlap
    assert ci_below(ISO[3], ISO[5])  # [9.1, 17.0] below [18.0, > 25]
    assert not ci_below(ISO[7], ISO[6])  # nothing is below a CI reaching down to <= 2
    touching = {**ISO[1], "high": 5.9}
    assert not ci_below(touching, ISO[0])
    assert not ci_below({**ISO[2], "low": "", "low_bound": ""}, ISO[0])  # no CI: no claim


def test_answer_follows_the_iso_csv():
    text = " ".join(answer(ISO, _fom_rows()))
    assert (
        "For detecting early loss (CHO AUC), 25-min OSEM (0.871) is matched by OSEM at "
        "7.6 min [5.9, 9.8] and by unet4@5min (the shortest iso time of 2 restoration methods) "
        "at 3.1 min [<= 2, 4.0]." in text
    )
    assert (
        "Restoration shortens the scan for CHO AUC: the 95 % CI of unet4@5min "
        "(3.1 min [<= 2, 4.0]) lies entirely below OSEM's [5.9, 9.8]; those of gaussian do not."
        in text
    )
    assert "gaussian (6.2" not in text  # the overlapping filter is not said to shorten it
    label = fom_label("sbr_sd_putamen")
    assert f"For SBR precision ({label}), 25-min OSEM (0.08) is matched by OSEM at 12.5 min" in text
    assert f"For {label}, there is no evidence that restoration shortens the scan" in text
    assert "OSEM's [9.1, 17.0]" in text
    assert f"unet4@5min needs a longer scan than OSEM for {label}" in text
    # the unknown FOM is answered under its own name; OSEM's CI reaches the grid's floor
    assert f"For {UNKNOWN}, 25-min OSEM (0.5) is matched by OSEM at <= 2 min [<= 2, 3.3]" in text
    assert "reaches down to the shortest scan of the sweep" in text
    assert (
        "Overall: restoration shortens the scan, with non-overlapping 95 % CIs, for CHO AUC; "
        f"for {label} and {UNKNOWN} there is no evidence that it does." in text
    )


def test_answer_without_separation_claims_nothing():
    iso = [r for r in ISO if r["method"] != "unet4@5min"]
    text = " ".join(answer(iso, _fom_rows()))
    assert "Restoration shortens" not in text
    assert "For CHO AUC, there is no evidence that restoration shortens the scan" in text
    assert "Overall: no evidence that restoration shortens the scan for any" in text
    assert "by gaussian (the only restoration method with an iso time) at 6.2 min" in text


def test_fom_figure_is_a_png():
    png = fom_figure(_fom_rows(), "cho_auc")
    assert png.startswith(b"\x89PNG")


def test_write_sweep_report(out):
    path = write_sweep_report(out)
    assert path == out / "report.html"
    page = path.read_text()
    # the headline first: answer, then the iso table, then figures, then definitions
    order = [page.index(s) for s in ('class="answer"', 'class="iso"', "<h2>Figures", "<h2>Def")]
    assert order == sorted(order)
    assert "On 40 simulated test patients, durations 2, 5, 10, 25 min." in page
    assert ">7.6 min [5.9, 9.8]</td>" in page
    assert ">&lt;= 2 min [&lt;= 2, 3.3]</td>" in page
    assert ">&gt; 25 min [18.0, &gt; 25]</td>" in page
    assert "lies entirely below OSEM&#x27;s [5.9, 9.8]" in page
    assert "a &lt;b&gt;note&lt;/b&gt; &amp; more" in page  # notes escaped
    assert "binomial thinning" in page  # the nested mode explained
    assert "Noise-free reconstruction" in page and "interpolated linearly in log time" in page
    assert page.count("data:image/png;base64,") == len(FOMS)
    assert f"<code>{UNKNOWN}</code>" in page
    for fom in FOMS:
        png = (out / "figures" / f"{fom}.png").read_bytes()
        assert png.startswith(b"\x89PNG")
    assert not list(out.glob(".tmp-*")) and not list((out / "figures").glob(".tmp-*"))


def test_missing_fom_csv_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="fom.csv"):
        write_sweep_report(tmp_path)


def test_missing_column_is_named(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "duration_min"} for r in _fom_rows()]
    write_csv(tmp_path / "fom.csv", rows)
    with pytest.raises(ValueError, match=r"fom\.csv.*'duration_min'"):
        write_sweep_report(tmp_path)
    write_csv(tmp_path / "fom.csv", _fom_rows())
    write_csv(tmp_path / "iso.csv", [{k: v for k, v in r.items() if k != "bound"} for r in ISO])
    with pytest.raises(ValueError, match=r"iso\.csv.*'bound'"):
        write_sweep_report(tmp_path)


def test_read_back_types(out):
    fom = read_fom_csv(out / "fom.csv")
    assert fom[0]["duration_min"] == 2.0 and fom[0]["higher_is_better"] is True
    gaussian_unknown = next(r for r in fom if r["method"] == "gaussian" and r["fom"] == UNKNOWN)
    assert math.isnan(gaussian_unknown["low"])
    iso = read_iso_csv(out / "iso.csv")
    assert iso[5]["time_min"] == INF and iso[5]["bound"] == "beyond"
    with open(out / "iso.csv", newline="") as f:
        bad = list(csv.DictReader(f))
    bad[0]["bound"] = "roughly"
    write_csv(out / "iso.csv", bad)
    with pytest.raises(ValueError, match="'bound' must be one of"):
        read_iso_csv(out / "iso.csv")
