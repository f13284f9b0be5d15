// Ravada VDI front: live progress through the JSON API (long-polling, no page-refresh loops).
import { t } from "./i18n.js";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

async function api(method, url, body) {
  const opts = { method, headers: { "X-CSRFToken": csrf, "Accept": "application/json" },
                 credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(url, opts);
  let data = {};
  try { data = await resp.json(); } catch (e) { data = {}; }
  return { status: resp.status, data };
}

function say(el, text, isError = false) {
  if (!el) return;
  el.hidden = false;
  el.textContent = text;
  el.classList.toggle("error", isError);
}

const LABELS = { requested: t("Queued…"), working: t("Working…"), done: t("Ready"),
                 failed: t("Failed") };

// Wait for a request by long-polling (the server holds each call up to 10 s).
async function follow(requestId, progress, started = performance.now()) {
  for (;;) {
    const { status, data } = await api("GET", `/api/v1/requests/${requestId}?wait=10`);
    if (status === 429) {  // this user already waits on as many requests as allowed
      await new Promise((resolve) => setTimeout(resolve, 1000));
      continue;
    }
    if (status !== 200) throw new Error(data.detail || `HTTP ${status}`);
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    say(progress, `${data.command}: ${LABELS[data.status] || data.status} (${secs} s)`);
    if (data.status === "done") return data;
    if (data.status === "failed") throw new Error(data.error || t("the request failed"));
  }
}

async function startBase(button) {
  const card = button.closest("[data-base]");
  const progress = card.querySelector(".progress");
  button.disabled = true;
  card.dataset.busy = "1";  // the live list leaves this card alone meanwhile
  const started = performance.now();
  try {
    let requestId = button.dataset.pending;
    let machineId = null;
    if (!requestId) {
      say(progress, t("Starting…"));
      const { status, data } = await api("POST", `/api/v1/bases/${button.dataset.start}/start`);
      if (status >= 400) throw new Error(data.detail || `HTTP ${status}`);
      requestId = data.request_id;
      machineId = data.machine_id;
    }
    const req = await follow(requestId, progress, started);
    machineId = machineId || (req.result && req.result.machine_id) || req.machine_id;
    say(progress, t("Ready — opening the display…"));
    // The POST above opened the display; the page shows what that request got (a GET
    // of the page itself never opens anything).
    window.location.assign(`/machine/${machineId}?request=${req.id}`);
  } catch (err) {
    say(progress, t("Could not start: %(reason)s", { reason: err.message }), true);
    button.disabled = false;
    delete card.dataset.busy;
  }
}

// The machine page follows the request its last form queued, in place.
async function followRequest(el) {
  try {
    const req = await follow(el.dataset.follow, el);
    const later = req.result && req.result.next_start && req.result.next_start.length
      ? t(" (at next start: %(changes)s)", { changes: req.result.next_start.join(", ") }) : "";
    say(el, t("%(command)s: done", { command: req.command }) + later);
  } catch (err) {
    say(el, t("Request %(id)s failed: %(reason)s", { id: el.dataset.follow, reason: err.message }),
        true);
  }
}

async function machineAction(button) {
  const box = button.closest("[data-machine]");
  const progress = box.parentElement.querySelector(".progress");
  const action = button.dataset.action;
  box.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  try {
    const { status, data } = await api("POST",
      `/api/v1/machines/${box.dataset.machine}/${action}?wait=10`);
    if (status >= 400) throw new Error(data.detail || `HTTP ${status}`);
    if (data.status !== "done") await follow(data.request_id, progress);
    say(progress, t("%(action)s: done", { action }));
    window.location.reload();
  } catch (err) {
    say(progress, t("%(action)s failed: %(reason)s", { action, reason: err.message }), true);
    box.querySelectorAll("button").forEach((b) => { b.disabled = false; });
  }
}

async function screenshot(img) {
  const note = document.getElementById("thumb-status");
  say(note, t("Taking a screenshot…"));
  try {
    const { status, data } = await api("POST",
      `/api/v1/machines/${img.dataset.screenshot}/screenshot?wait=10`);
    if (status >= 400) throw new Error(data.detail || `HTTP ${status}`);
    const req = data.status === "done" ? data.request : await follow(data.request_id, note);
    img.src = `/api/v1/machines/${img.dataset.screenshot}/screenshot.png?r=${req.id}`;
    img.hidden = false;
    note.hidden = true;
  } catch (err) {
    say(note, t("No screenshot: %(reason)s", { reason: err.message }), true);
  }
}

function accountPage() {
  const form = document.getElementById("token-form");
  if (form) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const { status, data } = await api("POST", "/api/v1/tokens",
        { label: form.elements.label.value });
      const out = document.getElementById("new-token");
      if (status === 201) {
        say(out, t("New token (copy it now, it is shown once): %(token)s", { token: data.token }));
      }
      else say(out, data.detail || `HTTP ${status}`, true);
    });
  }
  document.querySelectorAll("[data-revoke]").forEach((b) => b.addEventListener("click", async () => {
    const { status } = await api("DELETE", `/api/v1/tokens/${b.dataset.revoke}`);
    if (status === 204) b.closest("tr").remove();
  }));
  const pw = document.getElementById("password-form");
  if (pw) {
    pw.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const { status, data } = await api("POST", "/api/v1/password", {
        password: pw.elements.password.value, new_password: pw.elements.new_password.value });
      say(document.getElementById("password-result"),
        status === 204 ? t("Password changed.") : (data.detail || `HTTP ${status}`), status !== 204);
      pw.reset();
    });
  }
}

// Delegated: the live list redraws the cards, their buttons keep working.
document.addEventListener("click", (ev) => {
  const b = ev.target.closest && ev.target.closest("[data-start]");
  if (b && !b.disabled) startBase(b);
});
document.querySelectorAll("[data-start][data-pending]").forEach((b) => startBase(b));
document.querySelectorAll("[data-follow]").forEach((el) => followRequest(el));
document.querySelectorAll("[data-action]").forEach((b) =>
  b.addEventListener("click", () => machineAction(b)));
const thumb = document.querySelector("[data-screenshot]");
if (thumb) {
  screenshot(thumb);
  document.querySelector("[data-refresh-screenshot]")?.addEventListener("click",
    () => screenshot(thumb));
}
document.querySelectorAll("time[datetime]").forEach((t) => {
  const d = new Date(t.getAttribute("datetime"));
  if (!Number.isNaN(d.getTime())) t.textContent = d.toLocaleString();
});
accountPage();
