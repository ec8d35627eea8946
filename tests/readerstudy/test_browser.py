"""End to end in a real browser: Playwright drives Debian's Chromium (``/usr/bin/chromium``,
installed by ``.ci/run``; Playwright's own browser download is never used) against a real
``fastdat reader-study serve`` subprocess."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fastdat.readerstudy.store import connect, grade_rows

CHROMIUM = Path("/usr/bin/chromium")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium, as "
    ".ci/run does) to run the reader-study browser test",
)


@pytest.fixture
def browser():
    args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        yield b
        b.close()


def _grades(study) -> dict[int, tuple[int, int, int]]:
    """position -> (left, right, revisions) of ann's stored grades."""
    conn = connect(study)
    rows = [r for r in grade_rows(conn) if r["reader"] == "ann"]
    conn.close()
    return {r["position"]: (r["grade_left"], r["grade_right"], r["revisions"]) for r in rows}


def _watched(page, errors: list[str]):
    """``page``, collecting its JavaScript errors into ``errors`` (failed loads are expected:
    the refused wrong token's 401 and /favicon.ico's 404)."""
    page.on("pageerror", lambda e: errors.append(str(e)))

    def console(m) -> None:
        if m.type == "error" and "Failed to load resource" not in m.text:
            errors.append(m.text)

    page.on("console", console)
    return page


def test_login_grade_with_keyboard_reload_continue(study, tokens, serve, browser):
    server = serve(study)
    total = sum(
        r["reader"] == "ann" for r in json.loads((study / "key.json").read_text())["reads"].values()
    )
    errors: list[str] = []
    page = _watched(browser.new_page(), errors)
    page.goto(server.url + "/")
    assert page.url.endswith("/login")
    page.fill("#token", "wrong")
    page.click("#login")
    assert "Unknown token" in page.text_content("#msg")
    page.fill("#token", tokens(study)["ann"])
    page.click("#login")
    page.wait_for_selector(f"#count:has-text('case 1 / {total}')")
    assert page.evaluate("document.cookie") == ""  # HttpOnly: the token is out of JS's reach
    page.wait_for_function("document.getElementById('img').naturalWidth > 0")
    assert page.get_attribute("#side-right", "class") == "side active"  # right striatum first

    page.keyboard.press("2")  # patient's right striatum
    assert page.get_attribute("#side-left", "class") == "side active"
    page.keyboard.press("1")  # left
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#count:has-text('case 2 / {total} (1 graded)')")
    assert _grades(study) == {0: (1, 2, 0)}  # committed before the next case is shown

    page.keyboard.press("3")
    page.keyboard.press("Enter")  # one striatum only: refused, nothing sent
    assert "both striata" in page.text_content("#msg")
    page.keyboard.press("0")
    page.keyboard.press("n")
    page.wait_for_selector(f"#count:has-text('case 3 / {total} (2 graded)')")
    width = page.evaluate("document.getElementById('fill').style.width")
    assert width == f"{100 * 2 / total:.1f}%"  # the progress bar

    page.reload()  # the position is the server's: a reload resumes at case 3
    page.wait_for_selector(f"#count:has-text('case 3 / {total} (2 graded)')")
    page.keyboard.press("Backspace")  # nothing graded here: back to case 2, its grades shown
    page.wait_for_selector(f"#count:has-text('case 2 / {total}')")
    on = page.eval_on_selector_all(".btns button.on", "bs => bs.map(b => b.dataset.v)")
    assert on == ["3", "0"]  # right 3, left 0
    page.keyboard.press("Backspace")  # clears the left grade
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#count:has-text('case 3 / {total} (2 graded)')")
    assert _grades(study) == {0: (1, 2, 0), 1: (2, 3, 1)}  # revised, not duplicated

    page.close()  # stop and come back later in a new session: log in again, continue
    page = _watched(browser.new_context().new_page(), errors)
    page.goto(server.url + "/login")
    page.fill("#token", tokens(study)["ann"])
    page.click("#login")
    page.wait_for_selector(f"#count:has-text('case 3 / {total} (2 graded)')")
    page.keyboard.press("1")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#count:has-text('case 4 / {total} (3 graded)')")
    assert _grades(study)[2] == (1, 1, 0)
    assert not errors, errors
