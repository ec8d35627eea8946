"""The reader study web app: blinded grading in the browser (FastAPI, SQLite in WAL mode).

``create_app(STUDY)`` serves one study folder (made by :func:`fastdat.readerstudy.create_study`):

=======================  ======  ===================================================================
path                     who     what
=======================  ======  ===================================================================
``GET /login``           anyone  the login form
``POST /login``          anyone  checks the token, sets an HttpOnly SameSite=Strict cookie
``POST /logout``         anyone  clears the cookie
``GET /``                user    the reading page (readers) or the progress page (admin)
``GET /api/state``       reader  position, total, graded, the current read id and its grades
``POST /api/grade``      reader  ``{"read_id", "left", "right"}`` (0-3): stored, committed, next
``POST /api/back``       reader  one read back, to revise it
``GET /api/image/{id}``  reader  the PNG of one of the reader's own reads
``GET /api/admin/...``   admin   ``progress`` (JSON) and ``export.csv`` (blinded grades)
=======================  ======  ===================================================================

Tokens come as ``Authorization: Bearer TOKEN`` or in the login cookie; the database holds only
their SHA-256. No valid token: 401; the wrong role: 403; another reader's read id: 404, exactly as
an id that does not exist. The server never opens ``key.json``: it knows read ids and opaque image
files only, so no page, JSON answer, header or image can name a method, study or patient. Images
are sent as bytes without ``ETag`` / ``Last-Modified`` (file times could order the methods) and
nothing is cached (``Cache-Control: no-store``). A grade is committed (``synchronous=FULL``)
before its answer is sent. :func:`serve` binds 127.0.0.1 unless told otherwise.

FastAPI and uvicorn are the optional ``reader`` extra; this module is imported only to serve.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

import fastdat.readerstudy.pages as pages
import fastdat.readerstudy.store as st

log = logging.getLogger(__name__)

COOKIE = "fastdat_reader"
_READ_ID = re.compile(r"^[0-9a-f]{8,64}$")
_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_CSP = (
    "default-src 'none'; img-src 'self'; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class GradeIn(BaseModel):
    """A posted grade: the read and the two striata's grades (patient's left and right, 0-3)."""

    read_id: str = Field(max_length=64)
    left: int = Field(ge=0, le=3, strict=True)
    right: int = Field(ge=0, le=3, strict=True)


def create_app(study_dir: str | Path) -> FastAPI:
    """The FastAPI application serving the study in ``study_dir``.

    Raises:
        FileNotFoundError: ``study_dir`` holds no study database.
    """
    study_dir = Path(study_dir).resolve()
    db, image_dir = study_dir / st.DB_NAME, study_dir / "images"
    if not db.is_file():
        raise FileNotFoundError(f"{study_dir}: no {st.DB_NAME} (fastdat reader-study create)")

    app = FastAPI(title="reader study", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def _secure_headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in _HEADERS.items():
            response.headers[k] = v
        response.headers.setdefault("Content-Security-Policy", _CSP)
        for k in ("etag", "last-modified"):
            if k in response.headers:
                del response.headers[k]
        return response

    def token_of(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return request.cookies.get(COOKIE)

    @contextmanager
    def session(request: Request, role: str | None) -> Iterator[tuple]:
        """A connection and the authenticated user; 401 without a valid token, 403 wrong role."""
        conn = st.connect(db)
        try:
            user = st.reader_by_token(conn, token_of(request))
            if user is None:
                raise HTTPException(401, "a valid token is needed", {"WWW-Authenticate": "Bearer"})
            if role is not None and user.role != role:
                raise HTTPException(403, f"this needs a {role} token")
            yield conn, user
        finally:
            conn.close()

    def html(body: str, nonce: str, status: int = 200) -> HTMLResponse:
        csp = f"{_CSP}; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'"
        return HTMLResponse(body, status, headers={"Content-Security-Policy": csp})

    @app.get("/login")
    def login_form() -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        return html(pages.login_page(nonce), nonce)

    @app.post("/login")
    async def login(request: Request):
        body = await request.body()
        token = (parse_qs(body[:4096].decode("utf-8", "replace")).get("token") or [""])[0].strip()
        conn = st.connect(db)
        try:
            user = st.reader_by_token(conn, token)
        finally:
            conn.close()
        if user is None:
            nonce = secrets.token_urlsafe(16)
            return html(pages.login_page(nonce, "Unknown token."), nonce, 401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.post("/logout")
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/")
    def index(request: Request) -> Response:
        try:
            with session(request, None) as (conn, user):
                nonce = secrets.token_urlsafe(16)
                if user.role == "admin":
                    return html(pages.admin_page(nonce, st.progress(conn)), nonce)
                return html(pages.reader_page(nonce, user.name), nonce)
        except HTTPException:
            return RedirectResponse("/login", status_code=303)

    @app.get("/api/state")
    def get_state(request: Request) -> dict:
        with session(request, "reader") as (conn, user):
            return st.state(conn, user)

    @app.post("/api/grade")
    def post_grade(grade: GradeIn, request: Request) -> dict:
        with session(request, "reader") as (conn, user):
            if not _READ_ID.match(grade.read_id):
                raise HTTPException(404, "no such read")
            if not st.save_grade(conn, user, grade.read_id, grade.left, grade.right):
                raise HTTPException(404, "no such read")
            return st.state(conn, user)

    @app.post("/api/back")
    def post_back(request: Request) -> dict:
        with session(request, "reader") as (conn, user):
            st.step_back(conn, user)
            return st.state(conn, user)

    @app.get("/api/image/{read_id}")
    def image(read_id: str, request: Request) -> Response:
        with session(request, "reader") as (conn, user):
            name = st.image_of(conn, user, read_id) if _READ_ID.match(read_id) else None
        if name is None or Path(name).name != name:
            raise HTTPException(404, "no such read")
        return Response((image_dir / name).read_bytes(), media_type="image/png")

    @app.get("/api/admin/progress")
    def admin_progress(request: Request) -> JSONResponse:
        with session(request, "admin") as (conn, _):
            return JSONResponse(st.progress(conn))

    @app.get("/api/admin/export.csv")
    def admin_export(request: Request) -> Response:
        with session(request, "admin") as (conn, _):
            rows = st.grade_rows(conn)
        buf = io.StringIO()
        fields = [
            "reader",
            "read_id",
            "position",
            "grade_left",
            "grade_right",
            "created_at",
            "updated_at",
            "revisions",
        ]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return Response(
            buf.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="grades.csv"'},
        )

    return app


def serve(study_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the study with uvicorn until interrupted (loopback only unless ``host`` says so).

    The app speaks plain HTTP: to open it to other machines put it behind an HTTPS reverse proxy
    (the login cookie is marked ``Secure`` when the proxy forwards HTTPS).
    """
    import uvicorn

    app = create_app(study_dir)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        log.warning(
            "serving on %s: reachable from other machines over plain HTTP; tokens travel in "
            "clear unless an HTTPS proxy fronts the server",
            host,
        )
    uvicorn.run(app, host=host, port=port, server_header=False, log_level="info")
