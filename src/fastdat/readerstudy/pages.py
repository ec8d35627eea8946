"""The reader study's three pages (login, reading, admin): inline HTML, CSS and JS, no build step.

Nothing here names a method, study or patient. Scripts and styles carry the per-response CSP
nonce (``$nonce``); the page talks to the JSON API of :mod:`fastdat.readerstudy.server`.

Reading page keys: ``0``-``3`` grade the highlighted striatum (the patient's right first, shown on
the viewer's left as in the image, then the left), ``Enter`` or ``n`` saves both grades and opens
the next case, ``Backspace`` clears the last grade given and, with none left, goes back one case
to revise it. The position lives on the server, so a reload or a new login resumes there.
"""

from __future__ import annotations

from html import escape
from string import Template

_STYLE = """
body{background:#111;color:#ddd;font:15px system-ui,sans-serif;margin:0;padding:12px}
a{color:#8cf}button{font:inherit}
header{display:flex;gap:16px;align-items:center;flex-wrap:wrap}
#bar{flex:1;min-width:120px;height:10px;background:#333;border-radius:5px;overflow:hidden}
#fill{height:100%;background:#4a8;width:0}
#view{margin:12px 0;text-align:center;min-height:120px}
#view img{max-width:100%;image-rendering:pixelated}
.sides{display:flex;gap:24px;justify-content:center;flex-wrap:wrap}
.side{border:3px solid #444;border-radius:8px;padding:8px 16px;min-width:240px}
.side.active{border-color:#fc3}
.side button{font-size:18px;width:44px;margin:2px}
.side button.on{background:#fc3;color:#000}
#msg{min-height:1.4em;color:#fc3;text-align:center;margin:8px}
.help{color:#999;text-align:center}
kbd{background:#333;border-radius:3px;padding:0 4px}
table{border-collapse:collapse}td,th{border:1px solid #444;padding:4px 10px}
"""

LOGIN = Template(
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Reader study</title>
<style nonce="$nonce">"""
    + _STYLE
    + """</style></head><body>
<h1>Reader study</h1>
<form method="post" action="/login">
<label>Personal token <input type="password" name="token" id="token" autocomplete="off"
 autofocus size="40"></label> <button type="submit" id="login">Log in</button>
</form><p id="msg">$error</p></body></html>"""
)

ADMIN = Template(
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Reader study: admin</title>
<style nonce="$nonce">"""
    + _STYLE
    + """</style></head><body>
<header><h1>Reader study: progress</h1>
<form method="post" action="/logout"><button type="submit">Log out</button></form></header>
<table><tr><th>reader</th><th>graded</th><th>reads</th><th>revisions</th><th>last grade (UTC)</th>
</tr>$rows</table>
<p><a href="/api/admin/export.csv">Export the grades (CSV, blinded read ids)</a>.
Unblinded analysis: <code>fastdat reader-study analyze STUDY --out DIR</code>.</p>
</body></html>"""
)

READER = Template(
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Reader study</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style nonce="$nonce">"""
    + _STYLE
    + """</style></head><body>
<header><span>Reader <b id="reader">$reader</b></span>
<div id="bar"><div id="fill"></div></div><span id="count"></span>
<form method="post" action="/logout"><button type="submit" tabindex="-1">Log out</button></form>
</header>
<div id="view"><img id="img" alt="transaxial slices of the current case"></div>
<div class="sides">
<div class="side" id="side-right"><div>Right striatum (image left, <b>R</b>)</div>
<div class="btns" data-side="right"></div></div>
<div class="side" id="side-left"><div>Left striatum (image right, <b>L</b>)</div>
<div class="btns" data-side="left"></div></div>
</div>
<div id="msg"></div>
<p class="help"><kbd>0</kbd>-<kbd>3</kbd> grade the highlighted striatum (0 normal ...
3 severely reduced) &middot; <kbd>Enter</kbd> or <kbd>n</kbd> save and next &middot;
<kbd>Backspace</kbd> undo / previous case</p>
<script nonce="$nonce">
"use strict";
const ORDER = ["right", "left"];
const S = {st: null, g: {right: null, left: null}, active: "right", busy: false};
const el = (id) => document.getElementById(id);
function msg(t) { el("msg").textContent = t || ""; }
async function api(path, body) {
  const opt = {credentials: "same-origin", headers: {}};
  if (body !== undefined) {
    opt.method = "POST";
    opt.headers["Content-Type"] = "application/json";
    opt.body = JSON.stringify(body);
  }
  const r = await fetch(path, opt);
  if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
  if (!r.ok) throw new Error("server answered " + r.status);
  return r.json();
}
function render() {
  for (const side of ORDER) {
    el("side-" + side).classList.toggle("active", S.active === side && !S.st.finished);
    for (const b of document.querySelectorAll('.btns[data-side="' + side + '"] button')) {
      b.classList.toggle("on", Number(b.dataset.v) === S.g[side]);
    }
  }
}
function show(st) {
  S.st = st;
  S.g = {right: st.right, left: st.left};
  S.active = st.right === null ? "right" : "left";
  el("fill").style.width = (100 * st.done / st.total).toFixed(1) + "%";
  if (st.finished) {
    el("count").textContent = st.done + " / " + st.total + " graded";
    el("img").removeAttribute("src");
    msg(st.done === st.total ? "All cases graded: thank you. Backspace goes back to revise."
                             : "Some cases are not graded yet: press Backspace to go back.");
  } else {
    el("count").textContent = "case " + (st.position + 1) + " / " + st.total +
                              " (" + st.done + " graded)";
    el("img").src = "/api/image/" + st.read_id;
    msg("");
  }
  render();
}
function grade(side, v) {
  if (S.st.finished) return;
  S.g[side] = v;
  if (side === "right") S.active = "left";
  render();
}
async function run(fn) {
  if (S.busy) return;
  S.busy = true;
  try { await fn(); } catch (e) { msg("Not saved (" + e.message + "): try again."); }
  finally { S.busy = false; }
}
function next() {
  if (S.st.finished) return;
  if (S.g.right === null || S.g.left === null) { msg("Grade both striata first."); return; }
  run(async () => show(await api("/api/grade",
      {read_id: S.st.read_id, left: S.g.left, right: S.g.right})));
}
function back() {
  if (!S.st.finished) {
    for (const side of ["left", "right"]) {  // undo the last grade given first
      if (S.g[side] !== null) { S.g[side] = null; S.active = side; render(); return; }
    }
  }
  run(async () => show(await api("/api/back", {})));
}
for (const box of document.querySelectorAll(".btns")) {
  for (let v = 0; v <= 3; v++) {
    const b = document.createElement("button");
    b.type = "button"; b.tabIndex = -1; b.textContent = v; b.dataset.v = v;
    b.addEventListener("click", () => grade(box.dataset.side, v));
    box.appendChild(b);
  }
}
document.addEventListener("keydown", (e) => {
  if (!S.st || e.ctrlKey || e.metaKey || e.altKey) return;
  if (["0", "1", "2", "3"].includes(e.key)) { e.preventDefault(); grade(S.active, Number(e.key)); }
  else if (e.key === "Enter" || e.key === "n") { e.preventDefault(); next(); }
  else if (e.key === "Backspace") { e.preventDefault(); back(); }
});
run(async () => show(await api("/api/state")));
</script></body></html>"""
)


def login_page(nonce: str, error: str = "") -> str:
    """The login form (``error`` shown under it)."""
    return LOGIN.substitute(nonce=nonce, error=escape(error))


def reader_page(nonce: str, reader: str) -> str:
    """The reading page of ``reader``."""
    return READER.substitute(nonce=nonce, reader=escape(reader))


def admin_page(nonce: str, progress: list[dict]) -> str:
    """The admin page: one table row per reader."""
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(p[k] if p[k] is not None else ''))}</td>"
            for k in ("name", "done", "total", "revisions", "last_grade")
        )
        + "</tr>"
        for p in progress
    )
    return ADMIN.substitute(nonce=nonce, rows=rows)
