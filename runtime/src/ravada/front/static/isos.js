// ISO library: chunked, resumable uploads with a progress bar; transfer progress in place.
import { t } from "./i18n.js";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
const form = document.getElementById("iso-upload");
const bar = document.getElementById("iso-upload-progress");
const status = document.getElementById("iso-upload-status");
const table = document.getElementById("isos");
const RETRIES = 8;

function say(text, isError = false) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function mib(n) {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

async function json(resp) {
  try { return await resp.json(); } catch (e) { return {}; }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One chunk at `offset`; returns the server's `received` (the next offset). A 409 tells
// where the server is (another tab, a lost reply): carry on from there.
async function sendChunk(id, file, offset, chunk) {
  const body = file.slice(offset, Math.min(offset + chunk, file.size));
  for (let attempt = 0; ; attempt++) {
    let resp;
    try {
      resp = await fetch(`${form.dataset.uploadUrl}/${id}?offset=${offset}`, {
        method: "PUT", credentials: "same-origin", body,
        headers: { "X-CSRFToken": csrf, "Content-Type": "application/octet-stream" },
      });
    } catch (e) {  // the network dropped: wait and send the same chunk again
      if (attempt >= RETRIES) throw new Error(t("network error at byte %(offset)s: %(reason)s",
                                                   { offset, reason: e.message }));
      say(t("Connection lost at %(size)s; retrying…", { size: mib(offset) }), true);
      await sleep(Math.min(30000, 500 * 2 ** attempt));
      continue;
    }
    const data = await json(resp);
    if (resp.ok) return data;
    if (resp.status === 409 && typeof data.received === "number") return data;
    if (resp.status >= 500 && attempt < RETRIES) {
      await sleep(Math.min(30000, 500 * 2 ** attempt));
      continue;
    }
    throw new Error(data.detail || `HTTP ${resp.status}`);
  }
}

async function upload(file, sha256) {
  const start = await fetch(form.dataset.uploadUrl, {
    method: "POST", credentials: "same-origin",
    headers: { "X-CSRFToken": csrf, "Content-Type": "application/json" },
    body: JSON.stringify({ name: file.name, size: file.size, sha256: sha256 || null }),
  });
  const row = await json(start);
  if (!start.ok) throw new Error(row.detail || `HTTP ${start.status}`);
  const chunk = row.chunk_bytes;
  let offset = row.received;
  if (offset) say(t("Resuming at %(size)s…", { size: mib(offset) }));
  bar.hidden = false;
  bar.max = file.size;
  const began = performance.now();
  while (offset < file.size) {
    const got = await sendChunk(row.id, file, offset, chunk);
    if (got.state && got.state !== "uploading") { offset = file.size; break; }
    offset = got.received;
    bar.value = offset;
    const rate = offset / Math.max(0.001, (performance.now() - began) / 1000);
    say(t("%(done)s of %(size)s (%(percent)s, %(rate)s/s)", {
      done: mib(offset), size: mib(file.size),
      percent: `${Math.round((100 * offset) / file.size)} %`,
      rate: mib(rate) }));
  }
  bar.value = file.size;
  say(t("Uploaded %(name)s; the server is checking it…", { name: file.name }));
  return row.id;
}

// Transfers under way follow the backend through the library's long-poll: it answers when
// rvd_back announces a change (each progress write, about once a second; the end of a
// transfer) or after 25 s of quiet. No timer of ours asks in between; a failed request
// backs off (the server's Retry-After, or 2, 4, 8 … s while it is away).
const watched = new Map();  // ISO id -> resolve(the row when it is ready or failed, or null)
let following = false;

function showRow(iso) {
  const prog = table?.querySelector(`tr[data-iso="${iso.id}"] progress`);
  if (prog) { prog.max = iso.size || 1; prog.value = iso.received; }
}

async function follow() {
  if (following) return;
  following = true;
  const live = `${table.dataset.url.replace(/\/$/, "")}/live`;
  let fp = "";
  let failures = 0;
  try {
    while (watched.size) {
      let data;
      try {
        const resp = await fetch(`${live}?after=${encodeURIComponent(fp)}&wait=25`, {
          credentials: "same-origin", headers: { "Accept": "application/json" } });
        if ([401, 403].includes(resp.status)) return;  // logged out: stop
        if (!resp.ok) {
          await sleep(Number(resp.headers.get("Retry-After") || 30) * 1000);
          continue;
        }
        data = await json(resp);
        failures = 0;
      } catch (e) {
        failures += 1;
        await sleep(Math.min(30000, 1000 * 2 ** failures));
        continue;
      }
      fp = data.fp;
      table.dataset.liveFp = fp;  // what the rows show (tests wait on it)
      const rows = new Map((data.isos || []).map((iso) => [String(iso.id), iso]));
      rows.forEach(showRow);
      for (const [id, done] of watched) {
        const iso = rows.get(id);
        if (!iso || iso.state === "ready" || iso.state === "failed") {
          watched.delete(id);
          done(iso || null);
        }
      }
      if (data.retry) await sleep(data.retry * 1000);  // the process has no thread to spare
    }
  } finally {
    following = false;
  }
}

// The row of ISO `id` once it is ready or failed (null when it was removed).
function watch(id) {
  return new Promise((resolve) => {
    watched.set(String(id), resolve);
    follow();
  });
}

form?.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = form.elements.file.files[0];
  if (!file) return;
  if (file.size > Number(form.dataset.max)) {
    say(t("%(name)s is larger than the limit (%(size)s).",
          { name: file.name, size: mib(Number(form.dataset.max)) }), true);
    return;
  }
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const id = await upload(file, form.elements.sha256.value.trim().toLowerCase());
    const iso = await watch(id);
    if (iso && iso.state === "ready") {
      say(t("%(name)s is ready. SHA-256 %(sha256)s", { name: iso.name, sha256: iso.sha256 }));
    } else {
      say(t("%(name)s was refused: %(reason)s",
            { name: file.name, reason: iso ? iso.error : t("removed") }), true);
    }
    setTimeout(() => window.location.reload(), 1500);
  } catch (e) {
    say(t("Upload failed: %(reason)s", { reason: e.message }), true);
  } finally {
    button.disabled = false;
  }
});

// Downloads and checks already under way when the page opened.
for (const tr of table?.querySelectorAll('tr[data-state="downloading"], tr[data-state="verifying"]') || []) {
  watch(tr.dataset.iso).then(() => window.location.reload()).catch(() => {});
}

for (const f of document.querySelectorAll("form.confirm")) {
  f.addEventListener("submit", (ev) => {
    if (!window.confirm(f.dataset.confirm)) ev.preventDefault();
  });
}
