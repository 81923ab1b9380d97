// Project settings: API keys (issue, list, revoke; read-only keys) and upstream providers. A new key
// is shown once; provider secrets are write-only (the page sees the last four characters).
import { api } from "../api.js";
import { act, h, showNotice, when } from "../dom.js";

const KNOWN = [["openai", "https://api.openai.com/v1"], ["anthropic", "https://api.anthropic.com"],
  ["gemini", "https://generativelanguage.googleapis.com/v1beta/openai"]];

export async function render(view) {
  const [project, keys, providers] = await Promise.all([api.get("/project"), api.get("/keys"), api.get("/providers")]);
  const issued = h("div", { id: "issued-key" });

  const name = h("input", { id: "key-name", placeholder: "Key name", "aria-label": "Key name", maxlength: 200 });
  const readOnly = h("input", { type: "checkbox", id: "key-read-only" });
  const expires = h("input", { id: "key-expires-days", type: "number", min: 1, max: 3650, placeholder: "never",
    "aria-label": "Expires after days" });
  const issue = h("button", { type: "button", class: "primary", id: "issue-key", onclick: () => act(issue, async () => {
    const body = { name: name.value.trim(), readOnly: readOnly.checked };
    if (expires.value) body.expiresInDays = Number(expires.value);
    const k = await api.post("/keys", body);
    issued.replaceChildren(h("div", { class: "card notice-card" },
      h("p", {}, `New ${k.readOnly ? "read-only " : ""}key "${k.name || k.prefix}": copy it now, it is not shown again.`),
      h("code", { id: "new-key", class: "secret" }, k.key)));
    await drawKeys();
  }) }, "Issue key");

  const keyTable = h("table", { class: "grid", id: "keys" });
  async function drawKeys(list) {
    const data = list || (await api.get("/keys")).data;
    keyTable.replaceChildren(
      h("thead", {}, h("tr", {}, ["Name", "Key", "Access", "Created", "Expires", "Status", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, data.map((k) => h("tr", { class: "key-row", dataset: { id: k.id } },
        h("td", {}, k.name || "—"), h("td", {}, h("code", {}, `${k.prefix}…`)),
        h("td", {}, k.readOnly ? "read-only" : "full"), h("td", { class: "nowrap" }, when(k.createdAt)),
        h("td", { class: "nowrap" }, k.expiresAt ? when(k.expiresAt) : "never"),
        h("td", {}, k.revokedAt ? `revoked ${when(k.revokedAt)}` : k.expiresAt && k.expiresAt * 1000 <= Date.now() ? "expired" : "active"),
        h("td", {}, k.revokedAt ? "" : h("button", { type: "button", class: "danger revoke", onclick: (e) => act(e.target, async () => {
          if (!confirm(`Revoke key "${k.name || k.prefix}"? Anything using it stops working at once.`)) return;
          await api.del(`/keys/${encodeURIComponent(k.id)}`);
          showNotice(`Key "${k.name || k.prefix}" revoked.`);
          await drawKeys();
        }) }, "Revoke"))))));
  }
  await drawKeys(keys.data);

  const providerRows = h("tbody", {});
  function drawProviders(list) {
    providerRows.replaceChildren(...(list.length ? list.map((p) => h("tr", { class: "provider-row" },
      h("td", {}, p.provider), h("td", {}, p.baseUrl), h("td", {}, h("code", {}, `••••${p.apiKeyHint}`)),
      h("td", { class: "costs" }, Object.entries(p.modelCosts || {}).map(([m, c]) =>
        h("span", { class: "pill" }, `${m}: $${c.inputPerMTok} / $${c.outputPerMTok}`)))))
      : [h("tr", {}, h("td", { colspan: 4, class: "muted empty" }, "No providers set."))]));
  }
  drawProviders(providers.data);
  const provider = h("input", { id: "provider-name", list: "known-providers", placeholder: "openai, anthropic, gemini or a custom name", "aria-label": "Provider" });
  const baseUrl = h("input", { id: "provider-url", placeholder: "https://…", "aria-label": "Base URL" });
  const secret = h("input", { id: "provider-key", type: "password", autocomplete: "off", placeholder: "API key", "aria-label": "Provider API key" });
  provider.addEventListener("change", () => {
    const known = KNOWN.find(([n]) => n === provider.value.trim());
    if (known && !baseUrl.value) baseUrl.value = known[1];
  });
  const costs = h("textarea", { id: "provider-costs", rows: 2, "aria-label": "Model costs",
    placeholder: "Your prices, one model per line: <model> <input $ per million tokens> <output $ per million tokens>" });
  const save = h("button", { type: "button", class: "primary", id: "save-provider", onclick: () => act(save, async () => {
    const modelCosts = {};
    for (const [n, line] of costs.value.split("\n").entries()) {
      if (!line.trim()) continue;
      const [model, input, output] = line.trim().split(/\s+/);
      if (!model || !Number.isFinite(Number(input)) || !Number.isFinite(Number(output)) || input === undefined || output === undefined) {
        throw new Error(`Model costs, line ${n + 1}: write <model> <input price> <output price>`);
      }
      modelCosts[model] = { inputPerMTok: Number(input), outputPerMTok: Number(output) };
    }
    await api.put(`/providers/${encodeURIComponent(provider.value.trim())}`, { baseUrl: baseUrl.value.trim(), apiKey: secret.value, modelCosts });
    secret.value = "";
    showNotice(`Provider ${provider.value.trim()} saved.`);
    drawProviders((await api.get("/providers")).data);
  }) }, "Save provider");

  view.append(
    h("div", { class: "page-head" }, h("h1", {}, "Settings"), h("span", { class: "muted" }, `Project ${project.name} (${project.id})`)),
    h("section", { class: "card" }, h("h2", {}, "API keys"),
      h("p", { class: "muted" }, "A read-only key can read every page and route but change nothing."),
      h("div", { class: "toolbar" }, name, h("label", { class: "inline" }, readOnly, "read-only"),
        h("label", { class: "inline" }, "expires after", expires, "days"), issue), issued, keyTable),
    h("section", { class: "card" }, h("h2", {}, "Providers"),
      h("p", { class: "muted" }, "Where calls to gpt-*, anthropic:, gemini: and openpipe:<provider>/<model> models go. Keys are stored encrypted and never shown again."),
      h("datalist", { id: "known-providers" }, KNOWN.map(([n]) => h("option", { value: n }))),
      h("div", { class: "toolbar" }, provider, baseUrl, secret), costs, h("div", { class: "toolbar" }, save),
      h("table", { class: "grid", id: "providers" }, h("thead", {}, h("tr", {}, ["Provider", "Base URL", "Key", "Model costs ($ per million tokens in / out)"].map((t) => h("th", {}, t)))), providerRows)));
}
