// Enrol a lock and register a card, from the console (uses console.js's helpers).
// A lock's bundle holds its secret and the server shows it once: it stays in this
// script's memory until "Done, forget it", leaves the page only as a download (a Blob
// whose object URL is revoked once the click has started it), and never enters
// storage, a URL the server sees, a cookie, or the page's text.
"use strict";

let enrolledBundle = null;

function bundleFileName(name) {
  const safe = name.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[-.]+|-+$/g, "");
  return `${safe || "lock"}.bundle.json`;
}

async function enrol(event) {
  event.preventDefault();
  if (enrolledBundle !== null) {
    // Another enrolment would replace a bundle nobody may have saved: the only copy.
    throw new Error(`First download ${$("#bundle-file").textContent} and click "Done, forget it".`);
  }
  const form = new FormData(event.target);
  const enrolled = await api("POST", "/locks", {
    name: form.get("name"),
    host: form.get("host"),
    port: Number(form.get("port")),
  });
  enrolledBundle = enrolled.bundle;
  const file = bundleFileName(enrolled.lock.name);
  $("#bundle-file").textContent = file;
  $("#bundle-command").textContent = `elock-lock init --dir mylock --bundle ${file}`;
  $("#bundle-shred").textContent = `shred -u ${file}`;
  $("#enrolled").hidden = false;
  event.target.reset();
  await loadLocks();
}

function downloadBundle() {
  if (enrolledBundle === null) return;
  const blob = new Blob([JSON.stringify(enrolledBundle, null, 2) + "\n"], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = $("#bundle-file").textContent;
  link.hidden = true;
  document.body.append(link);
  try {
    link.click();
  } finally {
    link.remove();
    // The click has handed the Blob to the download; the URL is not needed after this task.
    setTimeout(() => URL.revokeObjectURL(url), 0);
  }
}

function forgetBundle() {
  enrolledBundle = null;
  for (const id of ["#bundle-file", "#bundle-command", "#bundle-shred"]) $(id).textContent = "";
  $("#enrolled").hidden = true;
  showError(null);  // an error may name the bundle's file
}

async function registerCard(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const pem = String(form.get("certificate_pem") || "").trim();
  await api("POST", "/secure-elements", {
    seid: form.get("seid"),
    label: form.get("label"),
    racs_server: form.get("delivery") === "racs" ? form.get("racs_server") : null,
    certificate_pem: pem ? pem + "\n" : null,
  });
  event.target.reset();
  followDelivery();
  await loadCards();
}

function followDelivery() {
  const form = $("#card-form");
  form.elements.racs_server.disabled = form.elements.delivery.value !== "racs";
}

function setUpEnrol() {
  $("#enrol-form").addEventListener("submit", guarded(enrol));
  $("#bundle-download").addEventListener("click", downloadBundle);
  $("#enrolled-done").addEventListener("click", forgetBundle);
  $("#card-form").addEventListener("submit", guarded(registerCard));
  $("#card-form").elements.delivery.addEventListener("change", followDelivery);
  // Leaving or reloading the page loses an unsaved bundle: the browser asks first.
  window.addEventListener("beforeunload", (event) => {
    if (enrolledBundle !== null) event.preventDefault();
  });
}

setUpEnrol();
