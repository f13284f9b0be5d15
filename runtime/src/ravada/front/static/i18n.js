// The page's language for scripts: base.html embeds the translations of every text the
// scripts show (front/i18n.py SCRIPT_TEXTS) as JSON; t() looks one up and fills in values.
const texts = JSON.parse(document.getElementById("script-texts")?.textContent || "{}");

export function t(text, values = {}) {
  return (texts[text] || text).replace(/%\((\w+)\)s/g, (_, key) => String(values[key] ?? ""));
}
