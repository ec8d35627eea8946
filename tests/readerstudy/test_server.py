"""Security of the web app: authentication, roles, cross-reader isolation, no leaks, loopback."""

from __future__ import annotations

import inspect
import json
import re

import pytest
from rs_support import READERS

from fastdat.readerstudy.render import png_chunks
from fastdat.readerstudy.store import connect, grade_rows

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture
def client(study):
    pytest.importorskip("fastapi", reason="fastapi missing: pip install -e '.[dev]'")
    from fastapi.testclient import TestClient

    from fastdat.readerstudy.server import create_app

    with TestClient(create_app(study), follow_redirects=False) as c:
        yield c


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _reads(study, name: str) -> list[str]:
    key = json.loads((study / "key.json").read_text())
    reads = [(r["position"], rid) for rid, r in key["reads"].items() if r["reader"] == name]
    return [rid for _, rid in sorted(reads)]


READER_GETS = ["/api/state", "/api/image/{rid}"]
READER_POSTS = ["/api/grade", "/api/back"]
ADMIN_GETS = ["/api/admin/progress", "/api/admin/export.csv"]


def test_requests_without_a_valid_token_are_refused(client, study, tokens):
    rid = _reads(study, "ann")[0]
    body = {"read_id": rid, "left": 1, "right": 1}
    for headers in ({}, _auth("not-a-token"), _auth(""), {"Authorization": "Basic abc"}):
        client.cookies.clear()
        for path in READER_GETS + ADMIN_GETS:
            r = client.get(path.format(rid=rid), headers=headers)
            assert r.status_code == 401, (path, headers)
            assert r.headers["www-authenticate"] == "Bearer"
        for path in READER_POSTS:
            assert client.post(path, json=body, headers=headers).status_code == 401
        r = client.get("/", headers=headers)
        assert r.status_code == 303 and r.headers["location"] == "/login"
    client.cookies.set("fastdat_reader", "forged")
    assert client.get("/api/state").status_code == 401
    assert grade_rows(connect(study)) == []
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404


def test_roles(client, study, tokens):
    t = tokens(study)
    rid = _reads(study, "ann")[0]
    for path in ADMIN_GETS:
        assert client.get(path, headers=_auth(t["ann"])).status_code == 403
        assert client.get(path, headers=_auth(t["admin"])).status_code == 200
    for path in READER_GETS:
        assert client.get(path.format(rid=rid), headers=_auth(t["admin"])).status_code == 403
    assert client.post("/api/back", headers=_auth(t["admin"])).status_code == 403


def test_a_reader_cannot_read_or_change_another_readers_grades(client, study, tokens):
    t = tokens(study)
    ann, bob = _auth(t["ann"]), _auth(t["bob"])
    ann_read = _reads(study, "ann")[0]
    r = client.post("/api/grade", json={"read_id": ann_read, "left": 2, "right": 3}, headers=ann)
    assert r.status_code == 200
    r = client.post("/api/grade", json={"read_id": ann_read, "left": 0, "right": 0}, headers=bob)
    assert r.status_code == 404
    assert client.get(f"/api/image/{ann_read}", headers=bob).status_code == 404
    s = client.get("/api/state", headers=bob).json()
    assert s["reader"] == "bob" and s["done"] == 0 and s["read_id"] in _reads(study, "bob")
    assert ann_read not in json.dumps(s)
    rows = grade_rows(connect(study))
    assert [(r["reader"], r["grade_left"], r["grade_right"]) for r in rows] == [("ann", 2, 3)]
    # ann's own view still holds her grades after bob's attempts
    client.post("/api/back", headers=ann)
    s = client.get("/api/state", headers=ann).json()
    assert (s["read_id"], s["left"], s["right"]) == (ann_read, 2, 3)


@pytest.mark.parametrize(
    "body",
    [
        {"read_id": "x", "left": 4, "right": 0},
        {"read_id": "x", "left": -1, "right": 0},
        {"read_id": "x", "left": "2", "right": 0},
        {"read_id": "x", "left": 1.5, "right": 0},
        {"read_id": "x", "left": True, "right": 0},
        {"read_id": "x" * 65, "left": 1, "right": 0},
        {"left": 1, "right": 0},
    ],
)
def test_malformed_grades_are_rejected(client, study, tokens, body):
    rid = _reads(study, "ann")[0]
    body = {**body, "read_id": rid} if body.get("read_id") == "x" else body
    r = client.post("/api/grade", json=body, headers=_auth(tokens(study)["ann"]))
    assert r.status_code == 422
    assert grade_rows(connect(study)) == []


def test_form_posts_cannot_grade(client, study, tokens):
    """Only JSON is accepted (a cross-site form cannot send it without CORS)."""
    rid = _reads(study, "ann")[0]
    r = client.post(
        "/api/grade",
        content=f"read_id={rid}&left=1&right=1",
        headers={
            **_auth(tokens(study)["ann"]),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert r.status_code == 422


def test_login_cookie(client, study, tokens):
    t = tokens(study)
    r = client.post("/login", content="token=wrong", headers={"Content-Type": "x"})
    assert r.status_code == 401 and "set-cookie" not in r.headers
    r = client.post("/login", data={"token": t["bob"]})
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert client.get("/api/state").json()["reader"] == "bob"  # the cookie authenticates
    page = client.get("/")
    assert page.status_code == 200 and "Reader <b" in page.text
    client.post("/logout")
    assert client.get("/api/state").status_code == 401


def _crawl(client, study, tokens) -> list[tuple[str, bytes, dict]]:
    """Every page, answer and image a user can reach (and the refusals), with their headers."""
    t = tokens(study)
    out = []

    def keep(what, r):
        out.append((what, r.content, dict(r.headers)))
        return r

    keep("login", client.get("/login"))
    keep("bad login", client.post("/login", data={"token": "nope"}))
    for name in READERS:
        h = _auth(t[name])
        keep("page", client.get("/", headers=h))
        for i, rid in enumerate(_reads(study, name)):
            r = keep("image", client.get(f"/api/image/{rid}", headers=h))
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            assert set(png_chunks(r.content)) <= {"IHDR", "PLTE", "IDAT", "IEND"}
            if i < 8:
                keep("state", client.get("/api/state", headers=h))
                body = {"read_id": rid, "left": i % 4, "right": 3 - i % 4}
                keep("grade", client.post("/api/grade", json=body, headers=h))
        keep("back", client.post("/api/back", headers=h))
        keep("not found", client.get("/api/image/0123456789abcdef01234567", headers=h))
        keep("bad grade", client.post("/api/grade", json={"read_id": "zz"}, headers=h))
    h = _auth(t["admin"])
    keep("admin page", client.get("/", headers=h))
    for path in ADMIN_GETS:
        keep(path, client.get(path, headers=h))
    keep("401", client.get("/api/state"))
    keep("403", client.get("/api/admin/progress", headers=_auth(t["ann"])))
    keep("404", client.get("/nowhere", headers=h))
    return out


def test_no_response_leaks_method_study_or_patient(client, study, tokens):
    key = json.loads((study / "key.json").read_text())
    secrets_ = {"5min", "25min", "5-min", "25-min", "unet", "gaussian", "repeat"}
    for case, c in key["cases"].items():
        secrets_ |= {case, c["study_id"], c["patient_id"]}
    secrets_ |= {i["image"] for i in key["images"]}  # the image files stay server-side too
    responses = _crawl(client, study, tokens)
    assert len(responses) > 3 * 40
    for what, body, headers in responses:
        text = (body + json.dumps(headers).encode()).lower()
        found = [s for s in secrets_ if s.lower().encode() in text]
        assert not found, (what, found)
        assert "etag" not in headers and "last-modified" not in headers, what
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" in headers
    export = next(b for w, b, _ in responses if w == "/api/admin/export.csv").decode()
    assert export.splitlines()[0].startswith("reader,read_id,position,grade_left")
    assert len(export.splitlines()) == 1 + 8 * len(READERS)


def test_pages_run_inline_code_only_with_the_nonce(client, study, tokens):
    page = client.get("/", headers=_auth(tokens(study)["ann"]))
    nonce = re.search(r"script-src 'nonce-([^']+)'", page.headers["content-security-policy"])
    assert nonce and f'<script nonce="{nonce.group(1)}">' in page.text
    again = client.get("/", headers=_auth(tokens(study)["ann"]))
    assert nonce.group(1) not in again.headers["content-security-policy"]  # fresh per page
    assert "http://" not in page.text and "https://" not in page.text  # nothing external


def test_binds_loopback_by_default(monkeypatch, study):
    uvicorn = pytest.importorskip("uvicorn", reason="uvicorn missing: pip install -e '.[dev]'")

    from fastdat.cli import build_parser
    from fastdat.readerstudy.server import serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert build_parser().parse_args(["reader-study", "serve", "S"]).host == "127.0.0.1"
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    serve(study)
    assert seen["host"] == "127.0.0.1" and seen["server_header"] is False
