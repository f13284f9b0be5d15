// Live lists: each element with data-live long-polls its URL; the server answers when the
// rows changed (woken by the backend's events) or after its wait. No timer asks faster.
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function localTimes(root) {
  root.querySelectorAll("time[datetime]").forEach((t) => {
    const d = new Date(t.getAttribute("datetime"));
    if (!Number.isNaN(d.getTime())) t.textContent = d.toLocaleString();
  });
}

async function follow(el) {
  let fp = "";
  let pending = null;  // rows that arrived while someone worked in the list
  const base = el.dataset.live;
  const canSwap = () => !el.querySelector("[data-busy]") && !el.contains(document.activeElement);
  const apply = () => {
    if (pending === null || !canSwap()) return;
    el.innerHTML = pending;
    pending = null;
    localTimes(el);
    el.dispatchEvent(new CustomEvent("live:updated", { bubbles: true }));
  };
  el.addEventListener("focusout", () => setTimeout(apply, 0));
  for (;;) {
    const url = base + (base.includes("?") ? "&" : "?") + `after=${encodeURIComponent(fp)}&wait=25`;
    let data;
    try {
      const resp = await fetch(url, { credentials: "same-origin",
                                      headers: { "Accept": "application/json" } });
      if ([401, 403, 404].includes(resp.status)) return;  // logged out, or it is gone: stop
      if (!resp.ok) { await sleep(Number(resp.headers.get("Retry-After") || 30) * 1000); continue; }
      data = await resp.json();
    } catch (err) {
      await sleep(10000);  // the server is away (a restart): try again later
      continue;
    }
    if (data.fp !== fp) {
      pending = data.html;
      apply();
    }
    fp = data.fp;
    el.dataset.liveFp = fp;  // what the list shows (tests wait on it)
    if (data.retry) await sleep(data.retry * 1000);  // the process has no thread to spare
  }
}

document.querySelectorAll("[data-live]").forEach((el) => { follow(el); });
