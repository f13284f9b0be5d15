// ISO library: chunked, resumable uploads with a progress bar; transfer progress in place.
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
      if (attempt >= RETRIES) throw new Error(`network error at byte ${offset}: ${e.message}`);
      say(`Connection lost at ${mib(offset)}; retrying…`, true);
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
  if (offset) say(`Resuming at ${mib(offset)}…`);
  bar.hidden = false;
  bar.max = file.size;
  const began = performance.now();
  while (offset < file.size) {
    const got = await sendChunk(row.id, file, offset, chunk);
    if (got.state && got.state !== "uploading") { offset = file.size; break; }
    offset = got.received;
    bar.value = offset;
    const rate = offset / Math.max(0.001, (performance.now() - began) / 1000);
    say(`${mib(offset)} of ${mib(file.size)} (${Math.round((100 * offset) / file.size)} %, ${mib(rate)}/s)`);
  }
  bar.value = file.size;
  say(`Uploaded ${file.name}; the server is checking it…`);
  return row.id;
}

// Follow one ISO until it is ready or failed. The backend writes progress once a second,
// so asking every two seconds loses nothing; nothing is asked once the transfer ends.
async function watch(id) {
  for (;;) {
    const resp = await fetch(`${table.dataset.url.replace(/\/$/, "")}/${id}`, { credentials: "same-origin" });
    if (resp.status === 404) return null;
    const iso = await json(resp);
    if (!resp.ok) throw new Error(iso.detail || `HTTP ${resp.status}`);
    const tr = table.querySelector(`tr[data-iso="${id}"]`);
    const prog = tr?.querySelector("progress");
    if (prog) { prog.max = iso.size || 1; prog.value = iso.received; }
    if (iso.state === "ready" || iso.state === "failed") return iso;
    await sleep(2000);
  }
}

form?.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = form.elements.file.files[0];
  if (!file) return;
  if (file.size > Number(form.dataset.max)) {
    say(`${file.name} is larger than the limit (${mib(Number(form.dataset.max))}).`, true);
    return;
  }
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const id = await upload(file, form.elements.sha256.value.trim().toLowerCase());
    const iso = await watch(id);
    if (iso && iso.state === "ready") {
      say(`${iso.name} is ready. SHA-256 ${iso.sha256}`);
    } else {
      say(`${file.name} was refused: ${iso ? iso.error : "removed"}`, true);
    }
    setTimeout(() => window.location.reload(), 1500);
  } catch (e) {
    say(`Upload failed: ${e.message}`, true);
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
