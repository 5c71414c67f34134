// The eLock admin console: plain DOM, every value written with textContent (never HTML),
// the API token in this tab's sessionStorage only, each change through the same API.
"use strict";

const TOKEN = "elock-token";
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const $ = (selector) => document.querySelector(selector);
let me = null;
let locks = [];
let cards = [];

class ProblemError extends Error {}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const where = (data.errors || []).map((e) => `${e.loc.slice(1).join(".")}: ${e.msg}`);
    const more = where.length ? ` (${where.join("; ")})` : "";
    throw new ProblemError(`${data.title || response.status}: ${data.detail || ""}${more}`);
  }
  return data;
}

function showError(error) {
  const box = $("#error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

function guarded(action) {
  return async (...args) => {
    showError(null);
    try { await action(...args); } catch (error) { showError(error); }
  };
}

function cell(row, value, className) {
  const td = row.insertCell();
  td.textContent = value === null || value === undefined ? "—" : String(value);
  if (className) td.className = className;
  return td;
}

function button(label, onClick, { changes = false } = {}) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", guarded(onClick));
  if (changes) markChanging(b);
  return b;
}

function markChanging(b) {
  b.classList.add("changes");
  if (me && me.role !== "admin") {
    b.disabled = true;
    b.title = "auditor token: read only";
  }
}

function table(id, headings) {
  const t = $(id);
  t.replaceChildren();
  const head = t.createTHead().insertRow();
  for (const h of headings) {
    const th = document.createElement("th");
    th.textContent = h;
    head.appendChild(th);
  }
  return t.createTBody();
}

const when = (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) + "Z" : null);
const lockName = (id) => (locks.find((l) => l.id === id) || { name: id }).name;
const cardName = (id) => (cards.find((c) => c.id === id) || { seid: id }).seid;

function showView(name) {
  for (const tab of document.querySelectorAll("nav button")) {
    tab.setAttribute("aria-selected", String(tab.dataset.view === name));
  }
  for (const section of document.querySelectorAll("main section")) {
    section.hidden = section.dataset.view !== name;
  }
}

// A lock accepts a clock this far from the key server's by default (its
// sync.max_clock_skew_seconds); each lock tells its own when it connects.
const CLOCK_BOUND_SECONDS = 300;

function duration(seconds) {
  const a = Math.abs(seconds);
  if (a >= 86400) return `${(a / 86400).toFixed(1)} days`;
  if (a >= 3600) return `${(a / 3600).toFixed(1)} h`;
  return `${a.toFixed(1)} s`;
}

function clockText(offset) {
  if (offset === null || offset === undefined) return "not measured yet";
  if (Math.abs(offset) < 0.05) return "0.0 s";
  return `${duration(offset)} ${offset > 0 ? "ahead" : "behind"}`;
}

// The lock's own bound (it tells it at each connection); the default before it has.
function clockBound(lock) {
  return lock.max_clock_skew_seconds ?? CLOCK_BOUND_SECONDS;
}

function clockSkewed(lock) {
  const offset = lock.clock_offset_seconds;
  return offset !== null && Math.abs(offset) > clockBound(lock);
}

function lockWarnings(lock) {
  const warnings = [];
  if (!lock.connected) warnings.push("not connected to the key server");
  if (clockSkewed(lock)) {
    warnings.push(`clock ${clockText(lock.clock_offset_seconds)}: beyond ${clockBound(lock)} s, time-bounded keys are refused`);
  }
  return warnings;
}

async function loadLocks() {
  locks = (await api("GET", "/locks?limit=500")).items;
  const body = table("#locks-table",
    ["Name", "Address", "Connected", "Last seen", "Revocation list (lock / server)", "Clock offset", ""]);
  for (const lock of locks) {
    const row = body.insertRow();
    row.dataset.lock = lock.id;
    const warnings = lockWarnings(lock);
    if (warnings.length) {
      row.className = "warn";
      row.title = warnings.join("; ");
    }
    cell(row, lock.name);
    cell(row, `${lock.host}:${lock.port}`);
    cell(row, lock.connected ? "yes" : "no", lock.connected ? "ok" : "bad");
    cell(row, when(lock.last_seen_at) || "never");
    const r = lock.revocation;
    const held = `v${r.confirmed_version} / v${r.version}`;
    cell(row, r.in_sync ? `${held}, in sync` : `${held}, pending${r.last_error ? ": " + r.last_error : ""}`,
      r.in_sync ? "ok" : "bad");
    cell(row, clockText(lock.clock_offset_seconds), clockSkewed(lock) ? "bad" : "");
    const actions = row.insertCell();
    actions.className = "actions";
    actions.append(
      button("Keys", () => { $("#f-lock").value = lock.id; showView("keys"); return loadKeys(); }),
      button("Audit", () => loadAudit({ lock_id: lock.id }, `lock ${lock.name}`)),
      button("Changes", () => loadAdminAudit({ lock_id: lock.id }, `lock ${lock.name}`)),
    );
  }
  fillSelect($("#issue-form [name=lock_id]"), locks.map((l) => [l.id, l.name]));
  fillSelect($("#f-lock"), [["", "any"], ...locks.map((l) => [l.id, l.name])]);
}

async function loadCards() {
  cards = (await api("GET", "/secure-elements?limit=500")).items;
  const body = table("#cards-table", ["SEID", "Label", "Delivered through", "Host last synced", "Certificate"]);
  for (const card of cards) {
    const row = body.insertRow();
    cell(row, card.seid);
    cell(row, card.label);
    cell(row, card.racs_server ? `RACS server ${card.racs_server}` : "its key host");
    cell(row, card.racs_server ? null : when(card.synced_at) || "never");
    cell(row, card.certificate ? `${card.certificate.subject}, until ${when(card.certificate.not_valid_after)}` : "none");
  }
  fillSelect($("#issue-form [name=secure_element_id]"), cards.map((c) => [c.id, c.label ? `${c.seid} (${c.label})` : c.seid]));
}

function fillSelect(select, options) {
  const kept = select.value;
  select.replaceChildren(...options.map(([value, text]) => {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    return o;
  }));
  if (options.some(([value]) => value === kept)) select.value = kept;
}

async function loadKeys() {
  const query = new URLSearchParams({ limit: "200" });
  for (const [name, id] of [["lock_id", "#f-lock"], ["state", "#f-state"], ["label", "#f-label"], ["key_id", "#f-key-id"]]) {
    if ($(id).value) query.set(name, $(id).value);
  }
  const keys = (await api("GET", "/keys?" + query)).items;
  const body = table("#keys-table", ["Label", "Key id", "Lock", "Card", "State", "Push", "Issued", ""]);
  for (const key of keys) keyRow(body.insertRow(), key);
}

function keyRow(row, key) {
  row.replaceChildren();
  row.dataset.key = key.id;
  cell(row, key.label || "");
  cell(row, key.key_id);
  cell(row, lockName(key.lock_id));
  cell(row, cardName(key.secure_element_id));
  cell(row, key.revoke_reason ? `${key.state}: ${key.revoke_reason}` : key.state, key.state === "active" ? "ok" : "");
  cell(row, key.push.last_error ? `${key.push.state} (${key.push.last_error})` : key.push.state, "push");
  cell(row, when(key.issued_at));
  const actions = row.insertCell();
  actions.className = "actions";
  const revoke = button("Revoke", () => askReason(row, key), { changes: true });
  revoke.disabled = revoke.disabled || key.state === "revoked";
  actions.append(
    revoke,
    button("Audit", () => loadAudit({ lock_id: key.lock_id, key_id: key.key_id }, `key ${key.key_id}`)),
    button("Changes", () => loadAdminAudit({ key_uuid: key.id }, `key ${key.key_id}`)),
  );
}

function askReason(row, key) {
  const actions = row.cells[row.cells.length - 1];
  const reason = document.createElement("input");
  reason.placeholder = "reason";
  reason.maxLength = 200;
  reason.setAttribute("aria-label", "revoke reason");
  actions.replaceChildren(reason, button("Confirm revoke", async () => {
    const revoked = await api("POST", `/keys/${key.id}/revoke`, { reason: reason.value });
    keyRow(row, revoked);
    await watchPush(row, revoked);
  }, { changes: true }), button("Cancel", () => keyRow(row, key)));
  reason.focus();
}

async function watchPush(row, key) {
  // Until the card no longer holds the container (or the worker gives up): 60 s at most.
  for (let i = 0; i < 120 && !["removed", "failed"].includes(key.push.state); i++) {
    await new Promise((done) => setTimeout(done, 500));
    key = await api("GET", `/keys/${key.id}`);
    keyRow(row, key);
  }
}

async function issue(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const minutes = (t) => { const [h, m] = t.split(":").map(Number); return h * 60 + m; };
  const instant = (v) => (v ? new Date(v).toISOString() : null);
  const end = form.get("window_end") === "23:59" ? 1440 : minutes(form.get("window_end"));
  const body = {
    lock_id: form.get("lock_id"),
    secure_element_id: form.get("secure_element_id"),
    label: form.get("label"),
    not_before: instant(form.get("not_before")),
    not_after: instant(form.get("not_after")),
    weekdays: DAYS.filter((d) => form.get("day_" + d)),
    window_start: minutes(form.get("window_start")),
    window_end: end,
    max_uses: Number(form.get("max_uses")),
    rights: [form.get("right_open") && "open", form.get("right_admin") && "admin"].filter(Boolean),
  };
  const issued = await api("POST", "/keys", body);
  $("#issued-identity").textContent = issued.identity;
  $("#issued-psk").textContent = issued.psk;
  $("#issued-uri").textContent = issued.uri;
  $("#issued").hidden = false;
  await loadKeys();
}

function forgetIssued() {
  for (const id of ["#issued-identity", "#issued-psk", "#issued-uri"]) $(id).textContent = "";
  $("#issued").hidden = true;
}

async function loadAudit(filter, scope) {
  showView("audit");
  const query = new URLSearchParams({ limit: "200", ...filter });
  $("#audit-scope").textContent = `What the lock recorded, newest first: ${scope}`;
  const rows = (await api("GET", "/audit?" + query)).items;
  const body = table("#audit-table", ["At (lock clock)", "Lock", "Key id", "Peer", "Action", "Outcome", "Reason"]);
  for (const r of rows) {
    const row = body.insertRow();
    for (const v of [when(r.at), lockName(r.lock_id), r.key_id, r.peer, r.action]) cell(row, v);
    cell(row, r.outcome, r.outcome === "granted" ? "ok" : "bad");
    cell(row, r.reason);
  }
}

async function loadAdminAudit(filter, scope) {
  showView("admin-audit");
  const query = new URLSearchParams({ limit: "200", ...filter });
  $("#admin-audit-scope").textContent = `Changes made through the API, newest first: ${scope}`;
  const rows = (await api("GET", "/admin-audit?" + query)).items;
  const body = table("#admin-audit-table", ["At", "Token", "From", "Action", "Lock", "Detail"]);
  for (const r of rows) {
    const row = body.insertRow();
    for (const v of [when(r.at), r.token_name, r.client, r.action, r.lock_id && lockName(r.lock_id), r.detail]) cell(row, v);
  }
}

async function start() {
  me = await api("GET", "/tokens/me");
  $("#who").textContent = `${me.name} (${me.role})`;
  $("#signin").hidden = true;
  $("#app").hidden = false;
  $("#signout").hidden = false;
  $("#readonly").hidden = me.role === "admin";
  for (const b of document.querySelectorAll("button.changes")) markChanging(b);
  await loadLocks();
  await loadCards();
  await loadKeys();
}

function setUp() {
  const days = $("#weekdays");
  for (const d of DAYS) {
    const box = document.createElement("input");
    box.type = "checkbox";
    box.name = "day_" + d;
    box.checked = true;
    box.setAttribute("aria-label", d);
    days.append(box, d + " ");
  }
  $("#signin-form").addEventListener("submit", guarded(async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN, $("#token").value);
    $("#token").value = "";
    try { await start(); } catch (error) { sessionStorage.removeItem(TOKEN); throw error; }
  }));
  $("#signout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN); location.reload(); });
  $("#issue-form").addEventListener("submit", guarded(issue));
  $("#issued-done").addEventListener("click", forgetIssued);
  $("#f-apply").addEventListener("click", guarded(loadKeys));
  for (const tab of document.querySelectorAll("nav button")) {
    tab.addEventListener("click", guarded(async () => {
      showView(tab.dataset.view);
      if (tab.dataset.view === "locks") await loadLocks();
      if (tab.dataset.view === "cards") await loadCards();
      if (tab.dataset.view === "keys") await loadKeys();
      if (tab.dataset.view === "audit") await loadAudit({}, "all locks");
      if (tab.dataset.view === "admin-audit") await loadAdminAudit({}, "everything");
    }));
  }
  if (sessionStorage.getItem(TOKEN)) guarded(start)();
}

setUp();
