from __future__ import annotations

import signal
import sqlite3
import threading
import time

import pytest
from rs_support import READERS

from fastdat.readerstudy import StudyConfig, create_study
from fastdat.readerstudy.store import (
    connect,
    grade_rows,
    progress,
    reader_by_token,
    save_grade,
    state,
    step_back,
)


def _reads(conn, name: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT read_id FROM reads JOIN readers USING (reader_id) WHERE name = ? "
            "ORDER BY position",
            (name,),
        )
    ]


def test_pragmas(study):
    conn = connect(study)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    conn.close()


def test_tokens_authenticate_by_hash(study, tokens):
    conn = connect(study)
    t = tokens(study)
    assert reader_by_token(conn, t["ann"]).name == "ann"
    assert reader_by_token(conn, t["admin"]).role == "admin"
    for bad in (None, "", t["ann"][:-1], t["ann"] + "x", "x" * 1000):
        assert reader_by_token(conn, bad) is None
    conn.close()


def test_regrade_updates_instead_of_duplicating(study, tokens):
    conn = connect(study)
    ann = reader_by_token(conn, tokens(study)["ann"])
    rid = _reads(conn, "ann")[0]
    assert save_grade(conn, ann, rid, 1, 2)
    assert save_grade(conn, ann, rid, 3, 0)
    rows = grade_rows(conn)
    assert len(rows) == 1
    assert (rows[0]["grade_left"], rows[0]["grade_right"], rows[0]["revisions"]) == (3, 0, 1)
    assert rows[0]["created_at"] <= rows[0]["updated_at"]
    log = conn.execute("SELECT grade_left, grade_right FROM grade_log ORDER BY id").fetchall()
    assert [tuple(r) for r in log] == [(1, 2), (3, 0)]  # the audit trail keeps both
    with pytest.raises(sqlite3.IntegrityError):  # the constraint itself, not only the upsert
        conn.execute(
            "INSERT INTO grades (reader_id, read_id, grade_left, grade_right, created_at, "
            "updated_at) VALUES (?, ?, 0, 0, 'x', 'x')",
            (ann.reader_id, rid),
        )
    conn.close()


def test_cross_reader_and_invalid_grades_change_nothing(study, tokens):
    conn = connect(study)
    bob = reader_by_token(conn, tokens(study)["bob"])
    ann_read = _reads(conn, "ann")[0]
    assert not save_grade(conn, bob, ann_read, 1, 1)
    for bad in (4, -1, True, 1.5, "2"):
        with pytest.raises(ValueError):
            save_grade(conn, bob, _reads(conn, "bob")[0], bad, 0)
    assert grade_rows(conn) == []
    assert state(conn, bob)["position"] == 0
    conn.close()


def test_cursor_moves_to_next_ungraded_and_back(study, tokens):
    conn = connect(study)
    ann = reader_by_token(conn, tokens(study)["ann"])
    reads = _reads(conn, "ann")
    s = state(conn, ann)
    assert (s["position"], s["done"], s["total"], s["read_id"]) == (0, 0, len(reads), reads[0])
    save_grade(conn, ann, reads[0], 0, 1)
    save_grade(conn, ann, reads[1], 2, 3)
    assert state(conn, ann)["position"] == 2
    step_back(conn, ann)
    s = state(conn, ann)
    assert (s["position"], s["left"], s["right"]) == (1, 2, 3)  # revisit shows the grades
    save_grade(conn, ann, reads[1], 1, 3)  # revise: on to the first ungraded after it
    assert state(conn, ann)["position"] == 2
    for _ in range(5):
        step_back(conn, ann)
    assert state(conn, ann)["position"] == 0
    for rid in reads:
        save_grade(conn, ann, rid, 0, 0)
    s = state(conn, ann)
    assert s["finished"] and s["done"] == s["total"] and s["read_id"] is None
    p = {r["name"]: r for r in progress(conn)}
    assert p["ann"]["done"] == len(reads) and p["bob"]["done"] == 0 and "admin" not in p
    conn.close()


def _post(client, rid: str, left: int, right: int) -> dict:
    r = client.post("/api/grade", json={"read_id": rid, "left": left, "right": right})
    r.raise_for_status()
    return r.json()


def test_grades_survive_sigkill(study, tokens, serve):
    """Every grade the server acknowledged is on disk after SIGKILL, exactly as posted; the
    reader resumes at the first ungraded read of a fresh server."""
    import httpx

    server = serve(study)
    headers = {"Authorization": f"Bearer {tokens(study)['ann']}"}
    acked: dict[str, tuple[int, int]] = {}
    posted: dict[str, set[tuple[int, int]]] = {}
    stop = threading.Event()

    def reader() -> None:
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as c:
            s = c.get("/api/state").json()
            i = 0
            while not stop.is_set() and not s["finished"]:
                g = (i % 4, (i * 3 + 1) % 4)
                posted.setdefault(s["read_id"], set()).add(g)
                try:
                    nxt = _post(c, s["read_id"], *g)
                except httpx.HTTPError:
                    return  # the server died mid-request: outcome unknown
                acked[s["read_id"]] = g
                s, i = nxt, i + 1

    t = threading.Thread(target=reader)
    t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 15 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.proc.send_signal(signal.SIGKILL)  # mid-session, requests in flight
    server.proc.wait(10)
    stop.set()
    t.join(30)
    assert server.proc.returncode == -signal.SIGKILL
    assert len(acked) >= 15

    conn = connect(study)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {r["read_id"]: (r["grade_left"], r["grade_right"]) for r in grade_rows(conn)}
    conn.close()
    print(
        f"\nSIGKILL after {len(acked)} acknowledged grades: {len(stored)} on disk, "
        f"{len(set(stored) - set(acked))} more that were in flight, "
        f"{len(set(acked) - set(stored))} lost"
    )
    assert {rid: stored.get(rid) for rid in acked} == acked  # nothing acknowledged is lost
    assert set(stored) <= set(posted)  # nothing appears that was never sent
    assert all(g in posted[rid] for rid, g in stored.items())

    again = serve(study)
    with httpx.Client(base_url=again.url, headers=headers, timeout=10) as c:
        s = c.get("/api/state").json()
        assert s["done"] == len(stored) and s["position"] == len(stored)
        _post(c, s["read_id"], 2, 2)  # and grading continues
        assert c.get("/api/state").json()["done"] == len(stored) + 1


@pytest.fixture(scope="module")
def five_reader_study(eval_dir, tmp_path_factory):
    """30 cases x 3 methods + 18 repeats = 108 reads for each of five readers."""
    out = tmp_path_factory.mktemp("five") / "study"
    cfg = StudyConfig(
        cases=30, methods=("5min", "gaussian", "25min"), readers=(*READERS, "dee", "eve"), seed=1
    )
    return create_study(eval_dir, out, cfg)


def test_five_concurrent_readers_500_grades(five_reader_study, tokens, serve, tmp_path):
    """5 readers post 100 grades each at once over loopback, then revise 10 each: 500 rows, none
    lost, none duplicated, each holding the last value its reader posted."""
    import shutil

    import httpx

    study = shutil.copytree(five_reader_study, tmp_path / "study")
    server = serve(study)
    names = [*READERS, "dee", "eve"]
    expected: dict[tuple[str, str], tuple[int, int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(names))

    def reader(r: int, name: str) -> None:
        try:
            headers = {"Authorization": f"Bearer {tokens(study)[name]}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
                s = c.get("/api/state").json()
                barrier.wait()
                done = []
                for i in range(100):
                    g = ((i + r) % 4, (3 * i + r) % 4)
                    rid = s["read_id"]
                    s = _post(c, rid, *g)
                    expected[(name, rid)] = g
                    done.append(rid)
                for rid in done[::10]:  # revisions: must update, not add rows
                    g = (3 - expected[(name, rid)][0], 3 - expected[(name, rid)][1])
                    _post(c, rid, *g)
                    expected[(name, rid)] = g
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=reader, args=(r, n)) for r, n in enumerate(names)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - t0
    assert not errors, errors
    conn = connect(study)
    rows = grade_rows(conn)
    n_log = conn.execute("SELECT COUNT(*) FROM grade_log").fetchone()[0]
    conn.close()
    got = {(r["reader"], r["read_id"]): (r["grade_left"], r["grade_right"]) for r in rows}
    lost = len(set(expected) - set(got))
    duplicated = len(rows) - len(got)
    print(
        f"\n500 grades + 50 revisions from 5 concurrent readers in {elapsed:.2f} s "
        f"({550 / elapsed:.0f} posts/s); lost {lost}, duplicated {duplicated}"
    )
    assert len(expected) == 500 and lost == 0 and duplicated == 0
    assert got == expected
    assert n_log == 550
    assert all(r["revisions"] == (1 if i % 10 == 0 else 0) for i, r in enumerate(rows))
