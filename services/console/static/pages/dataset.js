// One dataset: entries (split and metadata filters, server-side paging, the pruned preview, editing
// an output by hand), JSONL upload with a progress bar and every bad line listed, pruning rules,
// relabelling with progress, standing import rules, snapshots and export.
import { api, authHeader, expired, ApiError } from "../api.js";
import { act, h, newest, pager, poll, pretty, showError, showNotice, when } from "../dom.js";
import { go } from "../app.js";

const PAGE = 50;

function outputOf(entry) {
  const messages = entry.messages || [];
  const last = messages[messages.length - 1];
  return last && last.role === "assistant" ? last : null;
}

function snippet(message) {
  if (!message) return "—";
  const text = message.content ? String(message.content)
    : (message.tool_calls || []).map((c) => `${c.function?.name}(${c.function?.arguments})`).join(", ");
  return text.length > 140 ? `${text.slice(0, 137)}…` : text;
}

function inputSnippet(entry) {
  const user = [...(entry.messages || [])].reverse().find((m) => m.role === "user");
  return snippet(user);
}

async function download(path, filename) {
  const resp = await api.send("GET", path, { raw: true });
  const url = URL.createObjectURL(await resp.blob());
  const a = h("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// The upload itself, with progress events (fetch has none for request bodies).
function sendFile(datasetId, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/v1/datasets/${encodeURIComponent(datasetId)}/uploads?filename=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader("authorization", authHeader());
    xhr.setRequestHeader("content-type", "application/x-ndjson");
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
    xhr.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* the status says it */ }
      if (xhr.status === 401) { expired(); reject(new ApiError(401, body)); return; }
      if (xhr.status >= 400) reject(new ApiError(xhr.status, body, `Upload failed with HTTP ${xhr.status}`));
      else resolve(body);
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, null, "The upload was interrupted")));
    xhr.send(file);
  });
}

export async function render(view, { args }) {
  const id = args[0];
  const base = `/datasets/${encodeURIComponent(id)}`;
  const dataset = await api.get(base);
  const filters = { split: "", key: "", value: "", offset: 0 };
  const tabs = ["Entries", "Upload", "Pruning rules", "Relabel", "Import rules", "Snapshots"];
  const body = h("div", { id: "dataset-body" });
  const tabBar = h("div", { class: "tabs", role: "tablist" }, tabs.map((t) =>
    h("button", { type: "button", role: "tab", class: "tab", dataset: { tab: t }, onclick: () => show(t) }, t)));

  async function show(tab) {
    for (const b of tabBar.children) b.classList.toggle("active", b.dataset.tab === tab);
    body.replaceChildren();
    window.dispatchEvent(new Event("console:leave"));
    try {
      await { Entries: entries, Upload: upload, "Pruning rules": pruning, Relabel: relabel,
        "Import rules": importRules, Snapshots: snapshots }[tab]();
    } catch (err) {
      showError(err);
    }
  }

  // ---- entries ----------------------------------------------------------------------------
  async function entries() {
    const split = h("select", { id: "entry-split", "aria-label": "Split" },
      ["", "TRAIN", "TEST"].map((s) => h("option", { value: s, selected: s === filters.split }, s || "All splits")));
    const key = h("input", { id: "entry-meta-key", placeholder: "metadata key", value: filters.key, "aria-label": "Metadata key" });
    const value = h("input", { id: "entry-meta-value", placeholder: "value", value: filters.value, "aria-label": "Metadata value" });
    const list = h("div", { id: "entries" });
    const detail = h("aside", { class: "detail", id: "entry-detail", hidden: true });
    const apply = h("button", { type: "submit", class: "primary" }, "Filter");
    body.append(h("form", { class: "toolbar", onsubmit: (e) => {
      e.preventDefault();
      Object.assign(filters, { split: split.value, key: key.value.trim(), value: value.value, offset: 0 });
      load();
    } }, split, key, value, apply,
    h("button", { type: "button", id: "export-entries", onclick: (e) => act(e.target, () =>
      download(`${base}/export${filters.split ? `?split=${filters.split}` : ""}`, `${dataset.name}.jsonl`)) }, "Export JSONL")),
    h("div", { class: "split" }, list, detail));

    const listEntries = newest((q) => api.get(`${base}/entries?${q}`));

    async function load() {
      const q = new URLSearchParams({ limit: PAGE, offset: filters.offset });
      if (filters.split) q.set("split", filters.split);
      if (filters.key) q.set(`metadata.${filters.key}`, filters.value);
      const page = await listEntries(q);
      if (page === null) return; // a later filter or page is under way
      list.replaceChildren(
        h("table", { class: "grid" },
          h("thead", {}, h("tr", {}, ["Split", "Input", "Output", "Metadata", "Updated"].map((t) => h("th", {}, t)))),
          h("tbody", {}, page.data.length ? page.data.map((entry) => h("tr", { class: "entry-row", dataset: { id: entry.id }, onclick: () => open(entry) },
            h("td", {}, h("span", { class: `pill ${entry.split === "TEST" ? "test" : ""}` }, entry.split)),
            h("td", { class: "text" }, inputSnippet(entry)),
            h("td", { class: "text" }, snippet(outputOf(entry))),
            h("td", { class: "tags" }, Object.entries(entry.metadata || {}).slice(0, 3).map(([k, v]) => h("span", { class: "pill" }, `${k}=${v}`))),
            h("td", { class: "nowrap" }, when(entry.updated_at))))
            : h("tr", {}, h("td", { colspan: 5, class: "muted empty" }, "No entries match.")))),
        pager({ offset: filters.offset, limit: PAGE, total: page.total, onPage: (o) => { filters.offset = o; load(); } }));
    }

    async function open(entry) {
      detail.hidden = false;
      const pruned = await api.get(`${base}/entries/${encodeURIComponent(entry.id)}/pruned`);
      const output = outputOf(entry);
      const editor = h("textarea", { id: "edit-output", rows: 6, "aria-label": "Output" }, output?.content ?? "");
      const keep = h("input", { type: "checkbox", id: "keep-rejected" });
      const save = h("button", { type: "button", class: "primary", id: "save-output", onclick: () => act(save, async () => {
        const messages = [...entry.messages];
        const next = { role: "assistant", content: editor.value };
        if (output) messages[messages.length - 1] = next; else messages.push(next);
        const patch = { messages };
        if (keep.checked && output) patch.rejected_message = output;
        const updated = await api.patch(`${base}/entries/${encodeURIComponent(entry.id)}`, patch);
        showNotice("Output saved.");
        Object.assign(entry, updated);
        load();
      }) }, "Save output");
      detail.replaceChildren(
        h("div", { class: "detail-head" }, h("h2", {}, "Entry"), h("button", { type: "button", class: "quiet", "aria-label": "Close", onclick: () => { detail.hidden = true; } }, "×")),
        h("h3", {}, "Input as trained (pruning rules applied)"),
        h("pre", { class: "json", id: "pruned-preview" }, pretty(pruned.messages)),
        entry.tools ? [h("h3", {}, "Tools"), h("pre", { class: "json" }, pretty(entry.tools))] : "",
        h("h3", {}, "Output"), editor,
        h("label", { class: "inline" }, keep, "keep the old output as rejected_message (for preference tuning)"),
        h("div", { class: "toolbar" }, save),
        entry.rejected_message ? [h("h3", {}, "Rejected output"), h("pre", { class: "json" }, pretty(entry.rejected_message))] : "");
    }

    await load();
  }

  // ---- upload -----------------------------------------------------------------------------
  async function upload() {
    const file = h("input", { type: "file", id: "upload-file", accept: ".jsonl,.json,application/x-ndjson", "aria-label": "JSONL file" });
    const bar = h("progress", { id: "upload-progress", max: 1, value: 0 });
    const status = h("p", { id: "upload-status", class: "muted" });
    const errors = h("div", { id: "upload-errors" });
    const start = h("button", { type: "button", class: "primary", id: "upload-go", onclick: () => act(start, async () => {
      const chosen = file.files[0];
      if (!chosen) throw new Error("Choose a JSONL file first.");
      errors.replaceChildren();
      status.textContent = "Sending…";
      const u = await sendFile(id, chosen, (f) => { bar.value = f * 0.5; });
      status.textContent = "Validating…";
      poll(async () => {
        const now = await api.get(`${base}/uploads/${encodeURIComponent(u.id)}`);
        const share = now.bytes_total ? now.bytes_processed / now.bytes_total : 0;
        bar.value = 0.5 + share * 0.5;
        status.textContent = `${now.status}: ${now.lines_processed.toLocaleString()} lines read, ` +
          `${now.entries_created.toLocaleString()} entries created, ${now.error_count.toLocaleString()} errors`;
        if (now.error_message) status.textContent += ` (${now.error_message})`;
        const done = now.status === "DONE" || now.status === "FAILED";
        if (done) {
          bar.value = 1;
          errors.replaceChildren(now.errors.length ? h("table", { class: "grid", id: "upload-error-list" },
            h("thead", {}, h("tr", {}, h("th", {}, "Line"), h("th", {}, "Problem"))),
            h("tbody", {}, now.errors.map((e) => h("tr", { class: "upload-error" },
              h("td", { class: "num" }, e.line), h("td", {}, e.message)))))
            : h("p", {}, "Every line was valid."));
        }
        return !done;
      }, 500, bar);
    }) }, "Upload");
    body.append(h("div", { class: "card" },
      h("p", { class: "muted" }, "One JSON object per line in OpenAI's chat fine-tuning format (messages, optional tools, tool_choice, split, metadata)."),
      h("div", { class: "toolbar" }, file, start), bar, status, errors));
  }

  // ---- pruning rules ----------------------------------------------------------------------
  async function pruning() {
    const rules = await api.get(`${base}/pruning-rules`);
    const text = h("textarea", { id: "pruning-text", rows: 3, placeholder: "Static text to remove from every input", "aria-label": "Pruning rule text" });
    const add = h("button", { type: "button", class: "primary", id: "add-pruning-rule", onclick: () => act(add, async () => {
      await api.post(`${base}/pruning-rules`, { text: text.value });
      show("Pruning rules");
    }) }, "Add rule");
    body.append(h("div", { class: "card" }, text, h("div", { class: "toolbar" }, add)),
      h("table", { class: "grid", id: "pruning-rules" }, h("tbody", {}, rules.data.map((r) => h("tr", {},
        h("td", { class: "text" }, h("pre", {}, r.text)), h("td", { class: "nowrap" }, when(r.created)),
        h("td", {}, h("button", { type: "button", class: "danger", onclick: (e) => act(e.target, async () => {
          await api.del(`${base}/pruning-rules/${encodeURIComponent(r.id)}`);
          show("Pruning rules");
        }) }, "Delete")))))));
  }

  // ---- relabel ----------------------------------------------------------------------------
  async function relabel() {
    const model = h("input", { id: "relabel-model", placeholder: "gpt-4o, openpipe:<slug>, anthropic:…", "aria-label": "Model" });
    const split = h("select", { id: "relabel-split", "aria-label": "Split" }, ["", "TRAIN", "TEST"].map((s) => h("option", { value: s }, s || "All entries")));
    const keep = h("input", { type: "checkbox", id: "relabel-keep" });
    const status = h("p", { id: "relabel-status", class: "muted" });
    const bar = h("progress", { max: 1, value: 0, id: "relabel-progress" });
    const start = h("button", { type: "button", class: "primary", id: "relabel-go", onclick: () => act(start, async () => {
      const job = await api.post(`${base}/relabel`, { model: model.value.trim(), ...(split.value ? { split: split.value } : {}), keep_original_as_rejected: keep.checked });
      poll(async () => {
        const now = await api.get(`${base}/relabel-jobs/${encodeURIComponent(job.id)}`);
        bar.value = now.total ? (now.done + now.failed) / now.total : 0;
        status.textContent = `${now.status}: ${now.done} of ${now.total} relabelled` +
          (now.failed ? `, ${now.failed} failed (${now.errors.slice(0, 3).map((e) => e.message).join("; ")})` : "");
        return now.status === "RUNNING";
      }, 700, bar);
    }) }, "Relabel");
    body.append(h("div", { class: "card" }, h("p", { class: "muted" }, "Regenerate outputs with a stronger model."),
      h("div", { class: "toolbar" }, model, split, h("label", { class: "inline" }, keep, "keep the old output as rejected_message"), start), bar, status));
  }

  // ---- import rules -----------------------------------------------------------------------
  async function importRules() {
    const rules = await api.get(`${base}/import-rules`);
    body.append(h("p", { class: "muted" }, "Standing rules import matching logs as they arrive; create them from the Request logs page."),
      h("table", { class: "grid", id: "import-rules" },
        h("thead", {}, h("tr", {}, ["Filters", "Imported", "Created", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rules.data.length ? rules.data.map((r) => h("tr", {},
          h("td", {}, r.filters.map((f) => h("span", { class: "pill" }, `${f.field} ${Object.keys(f).find((k) => k !== "field")} ${JSON.stringify(Object.values(f)[1])}`))),
          h("td", { class: "num" }, r.imported), h("td", { class: "nowrap" }, when(r.created)),
          h("td", {}, h("button", { type: "button", class: "danger", onclick: (e) => act(e.target, async () => {
            await api.del(`${base}/import-rules/${encodeURIComponent(r.id)}`);
            show("Import rules");
          }) }, "Stop")))) : h("tr", {}, h("td", { colspan: 4, class: "muted empty" }, "No standing rules.")))));
  }

  // ---- snapshots --------------------------------------------------------------------------
  async function snapshots() {
    const list = await api.get(`${base}/snapshots`);
    const take = h("button", { type: "button", class: "primary", id: "take-snapshot", onclick: () => act(take, async () => {
      await api.post(`${base}/snapshots`, {});
      show("Snapshots");
    }) }, "Take snapshot");
    body.append(h("div", { class: "toolbar" }, take),
      h("table", { class: "grid", id: "snapshots" }, h("tbody", {}, list.data.map((s) => h("tr", {},
        h("td", {}, s.id), h("td", { class: "num" }, `${s.entry_count} entries`), h("td", { class: "nowrap" }, when(s.created)),
        h("td", {}, h("button", { type: "button", onclick: (e) => act(e.target, () =>
          download(`${base}/snapshots/${encodeURIComponent(s.id)}/content`, `${dataset.name}-${s.id}.jsonl`)) }, "Download")))))));
  }

  const remove = h("button", { type: "button", class: "danger", id: "delete-dataset", onclick: () => act(remove, async () => {
    if (!confirm(`Delete dataset "${dataset.name}" and its entries?`)) return;
    await api.del(base);
    go("/datasets");
  }) }, "Delete");
  view.append(h("div", { class: "page-head" }, h("h1", {}, dataset.name),
    h("span", { class: "muted", id: "dataset-counts" }, `${dataset.dataset_entry_count.toLocaleString()} entries · ${dataset.train_entry_count} train · ${dataset.test_entry_count} test`),
    remove), tabBar, body);
  await show("Entries");
}
