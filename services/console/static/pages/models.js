// Fine-tunes: the project's models with their status, and a new one trained from a dataset
// (base model, SFT / DPO / reward model, hyperparameters with their defaults shown).
import { api } from "../api.js";
import { act, h, when } from "../dom.js";
import { go } from "../app.js";

export const DEFAULT_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct";

export function statusPill(status) {
  const kind = { DEPLOYED: "ok", ERROR: "bad", FAILED: "bad" }[status] || "";
  return h("span", { class: `pill status ${kind}` }, status);
}

export async function render(view) {
  const [models, datasets] = await Promise.all([api.get("/models"), api.get("/datasets")]);
  const slug = h("input", { id: "model-slug", placeholder: "slug (letters, digits, -)", "aria-label": "Slug" });
  const dataset = h("select", { id: "model-dataset", "aria-label": "Dataset" },
    datasets.data.map((d) => h("option", { value: d.id }, `${d.name} (${d.train_entry_count} train)`)));
  const base = h("input", { id: "model-base", value: DEFAULT_BASE, "aria-label": "Base model" });
  const kind = h("select", { id: "model-kind", "aria-label": "Method" },
    h("option", { value: "sft" }, "Supervised fine-tuning (SFT)"),
    h("option", { value: "sft+dpo" }, "SFT, then preference tuning (DPO)"),
    h("option", { value: "dpo" }, "Preference tuning only (DPO)"),
    h("option", { value: "reward" }, "Reward model"));
  const epochs = h("input", { id: "model-epochs", type: "number", min: 1, max: 50, value: 3, "aria-label": "Epochs" });
  const lr = h("input", { id: "model-lr", type: "number", min: 0.0001, max: 100, step: "any", value: 1, "aria-label": "Learning rate multiplier" });
  const batch = h("input", { id: "model-batch", placeholder: "auto", "aria-label": "Batch size" });
  const beta = h("input", { id: "model-beta", type: "number", step: "any", value: 0.1, "aria-label": "DPO beta" });
  const create = h("button", { type: "submit", class: "primary", id: "create-model" }, "Start training");
  const form = h("form", { class: "card form-grid", id: "new-model", onsubmit: (e) => {
    e.preventDefault();
    act(create, async () => {
      if (!dataset.value) throw new Error("Create a dataset with entries first.");
      const hp = { num_epochs: Number(epochs.value), learning_rate_multiplier: Number(lr.value) };
      if (batch.value.trim()) hp.batch_size = batch.value.trim() === "auto" ? "auto" : Number(batch.value);
      const config = { provider: kind.value === "reward" ? "openpipeReward" : "openpipe", baseModel: base.value.trim() };
      if (kind.value !== "reward") {
        config.enable_sft = kind.value !== "dpo";
        config.enable_preference_tuning = kind.value !== "sft";
        if (config.enable_sft) config.sft_hyperparameters = hp;
        if (config.enable_preference_tuning) config.preference_hyperparameters = { ...hp, training_beta: Number(beta.value) };
      } else {
        config.sft_hyperparameters = hp;
      }
      const m = await api.post("/models", { slug: slug.value.trim(), datasetId: dataset.value, trainingConfig: config });
      go(`/model/${m.id}`);
    });
  } },
  h("h2", {}, "New fine-tune"),
  h("label", {}, "Slug", slug), h("label", {}, "Dataset", dataset), h("label", {}, "Base model", base),
  h("label", {}, "Method", kind), h("label", {}, "Epochs (default 3)", epochs),
  h("label", {}, "Learning rate multiplier (default 1)", lr), h("label", {}, "Batch size (default auto)", batch),
  h("label", {}, "DPO beta (default 0.1)", beta), h("div", { class: "toolbar" }, create));
  view.append(h("div", { class: "page-head" }, h("h1", {}, "Fine-tunes")), form,
    h("table", { class: "grid", id: "models" },
      h("thead", {}, h("tr", {}, ["Model", "Status", "Base model", "Dataset", "Created"].map((t) => h("th", {}, t)))),
      h("tbody", {}, models.data.length ? models.data.map((m) => h("tr", { class: "model-row", onclick: () => go(`/model/${m.id}`) },
        h("td", {}, h("a", { href: `#/model/${encodeURIComponent(m.id)}` }, `openpipe:${m.id}`)),
        h("td", {}, statusPill(m.openpipe.status)), h("td", {}, m.openpipe.baseModel),
        h("td", {}, (datasets.data.find((d) => d.id === m.openpipe.datasetId) || {}).name || m.openpipe.datasetId),
        h("td", { class: "nowrap" }, when(m.created))))
        : h("tr", {}, h("td", { colspan: 5, class: "muted empty" }, "No fine-tunes yet.")))));
}
