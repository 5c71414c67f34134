// eLock phone app: list the card's keys, open with one tap, update them from the key server.
// The key host puts a per-launch secret in the page; every API call sends it back. A key
// host that listens beyond loopback leaves it out (anyone there could read the page) and
// prints a pairing address instead: the secret in the fragment, which no browser sends.
const SESSION = document.querySelector('meta[name="elock-session"]').content || paired();

function paired() {
  const pair = /^#pair=([A-Za-z0-9_-]{20,100})$/.exec(location.hash);
  if (pair) {
    sessionStorage.setItem("elock-session", pair[1]);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("elock-session") || "";
}
const api = (path, body) => fetch(path, {
  method: body ? "POST" : "GET",
  headers: { "X-ELock": SESSION, ...(body ? { "Content-Type": "application/json" } : {}) },
  body: body ? JSON.stringify(body) : undefined,
}).then(async (r) => ({ ok: r.ok, body: await r.json().catch(() => ({})) }));

const $ = (id) => document.getElementById(id);
const TITLES = { opened: "Opened", refused: "Refused", unreachable: "Lock unreachable",
                 unknown: "No answer from the lock", card: "Card problem", pin: "PIN needed",
                 error: "Error" };

function show(status, message) {
  const box = $("status");
  box.hidden = false;
  box.className = status;
  box.replaceChildren(TITLES[status] || status);
  if (message) { const s = document.createElement("small"); s.textContent = message; box.append(s); }
}

function askPin(key, error) {
  return new Promise((resolve) => {
    const dialog = $("pin-dialog");
    $("pin-key").textContent = key.label;
    $("pin").value = "";
    $("pin-error").hidden = !error;
    $("pin-error").textContent = error || "";
    dialog.onclose = () => resolve(dialog.returnValue === "ok" ? $("pin").value : null);
    dialog.showModal();
  });
}

async function tap(key, button) {
  let pin = null;
  if (key.pin_required) {
    pin = await askPin(key);
    if (pin === null) return;
  }
  document.querySelectorAll(".key").forEach((b) => { b.disabled = true; });
  button.setAttribute("aria-busy", "true");
  button.querySelector(".open").textContent = "Opening…";
  show("pending", "Talking to the lock…");
  try {
    const { body } = await api("/api/open", { id: key.container_id, ...(pin ? { pin } : {}) });
    const extra = body.status === "opened" ? `in ${body.elapsed_ms} ms` : body.message;
    show(body.status || "error", extra);
  } catch (e) {
    show("error", "the key host did not answer");
  } finally {
    document.querySelectorAll(".key").forEach((b) => { b.disabled = false; });
    button.removeAttribute("aria-busy");
    button.querySelector(".open").textContent = "Open";
  }
}

async function load() {
  const { ok, body } = await api("/api/keys");
  const list = $("keys");
  list.replaceChildren();
  if (!ok) { show(body.status || "card", body.message); return; }
  if (body.length === 0) { show("card", "There is no key in this card yet."); return; }
  if ($("status").className === "card") $("status").hidden = true;
  for (const key of body) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.className = "key";
    b.dataset.label = key.label;
    const open = document.createElement("span"); open.className = "open"; open.textContent = "Open";
    const name = document.createElement("strong"); name.textContent = key.label;
    const uri = document.createElement("span"); uri.className = "uri";
    uri.textContent = key.uri + (key.pin_required ? " · PIN" : "");
    b.append(open, name, uri);
    b.addEventListener("click", () => tap(key, b));
    li.append(b);
    list.append(li);
  }
}

// Update keys: the phone dials the key server the card names and relays its TLS session.
// The key list is redrawn only when the card changed: a list redrawn under a finger mis-taps.
async function sync() {
  const button = $("sync"), line = $("sync-status");
  let changed = false, done = false;
  button.disabled = true;
  line.className = "pending";
  line.textContent = "Updating keys…";
  const poll = setInterval(async () => {
    const { body } = await api("/api/sync");
    if (!done && body.running && body.stage) line.textContent = `Updating keys: ${body.stage}…`;
  }, 250);
  try {
    const { body } = await api("/api/sync", {});
    done = true;
    if (body.status === "synced") {
      changed = body.added + body.removed > 0;
      line.className = body.failed ? "failed" : "synced";
      line.textContent = body.failed
        ? `Keys updated in part: ${body.message}`
        : `Keys updated: ${body.added} added, ${body.removed} removed`;
    } else {
      line.className = "failed";
      line.textContent = `Update failed: ${body.message || "no answer"}`;
    }
  } catch (e) {
    done = true;
    line.className = "failed";
    line.textContent = "Update failed: the key host did not answer";
  } finally {
    clearInterval(poll);
    button.disabled = false;
  }
  if (changed) await load();
}

$("sync").addEventListener("click", sync);
if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});
if (SESSION) load().then(sync);
else show("card", "This browser is not paired: open the #pair= address elock-phone printed.");
