// Browser console: noVNC (served locally under /novnc/) through rvd_console's websocket proxy.
import RFB from "/novnc/core/rfb.js";
import { t } from "./i18n.js";

const el = document.getElementById("console");
const status = document.getElementById("console-status");
const show = (text) => { status.textContent = text; };

if (el) {
  const rfb = new RFB(el, el.dataset.url, { credentials: { password: el.dataset.password } });
  rfb.scaleViewport = true;
  rfb.background = "#111";
  rfb.addEventListener("connect", () => show(t("Connected")));
  rfb.addEventListener("disconnect", (e) =>
    show(e.detail.clean ? t("Disconnected")
      : t("Connection lost — reload the page for a new ticket")));
  rfb.addEventListener("credentialsrequired", () =>
    rfb.sendCredentials({ password: el.dataset.password }));
  rfb.addEventListener("securityfailure", (e) =>
    show(t("Authentication failed: %(reason)s", { reason: e.detail.reason || e.detail.status })));
  rfb.addEventListener("desktopname", (e) => { document.title = t("%(name)s · console", { name: e.detail.name }); });
  document.getElementById("console-cad")?.addEventListener("click", () => rfb.sendCtrlAltDel());
}
