// Browser console: noVNC (served locally under /novnc/) through rvd_console's websocket proxy.
import RFB from "/novnc/core/rfb.js";

const el = document.getElementById("console");
const status = document.getElementById("console-status");
const show = (text) => { status.textContent = text; };

if (el) {
  const rfb = new RFB(el, el.dataset.url, { credentials: { password: el.dataset.password } });
  rfb.scaleViewport = true;
  rfb.background = "#111";
  rfb.addEventListener("connect", () => show("Connected"));
  rfb.addEventListener("disconnect", (e) =>
    show(e.detail.clean ? "Disconnected" : "Connection lost — reload the page for a new ticket"));
  rfb.addEventListener("credentialsrequired", () =>
    rfb.sendCredentials({ password: el.dataset.password }));
  rfb.addEventListener("securityfailure", (e) =>
    show(`Authentication failed: ${e.detail.reason || e.detail.status}`));
  rfb.addEventListener("desktopname", (e) => { document.title = `${e.detail.name} · console`; });
  document.getElementById("console-cad")?.addEventListener("click", () => rfb.sendCtrlAltDel());
}
