"""Report sections are inserted once and replaced on rerun."""

from __future__ import annotations

import pytest

from fastdat.evaluation.report import add_section


def test_add_section_inserts_before_body_and_replaces(tmp_path):
    page = tmp_path / "report.html"
    page.write_text("<html><body><h1>x</h1></body></html>")
    add_section(page, "quant", "<p>first</p>")
    add_section(page, "quant", "<p>second</p>")
    text = page.read_text()
    assert "second" in text and "first" not in text
    assert text.count("<!-- section:quant -->") == 1
    assert text.index("second") < text.index("</body>")
    bad = tmp_path / "bad.html"
    bad.write_text("<p>no body</p>")
    with pytest.raises(ValueError, match="bad.html"):
        add_section(bad, "quant", "x")
