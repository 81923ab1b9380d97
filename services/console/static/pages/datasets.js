// Datasets: the project's datasets with their entry counts, and a new one.
import { api } from "../api.js";
import { act, h, when } from "../dom.js";
import { go } from "../app.js";

export async function render(view) {
  const name = h("input", { id: "new-dataset-name", placeholder: "Dataset name", "aria-label": "Dataset name", maxlength: 500 });
  const create = h("button", { type: "submit", class: "primary", id: "create-dataset" }, "Create dataset");
  const form = h("form", { class: "toolbar", onsubmit: (e) => {
    e.preventDefault();
    act(create, async () => {
      if (!name.value.trim()) throw new Error("Name the dataset.");
      const d = await api.post("/datasets", { name: name.value.trim() });
      go(`/dataset/${d.id}`);
    });
  } }, name, create);
  const list = await api.get("/datasets");
  const rows = list.data.map((d) => h("tr", { class: "dataset-row", onclick: () => go(`/dataset/${d.id}`) },
    h("td", {}, h("a", { href: `#/dataset/${encodeURIComponent(d.id)}` }, d.name)),
    h("td", { class: "num" }, d.dataset_entry_count.toLocaleString()),
    h("td", { class: "num" }, d.train_entry_count.toLocaleString()),
    h("td", { class: "num" }, d.test_entry_count.toLocaleString()),
    h("td", { class: "num" }, d.fine_tune_count),
    h("td", { class: "nowrap" }, when(d.updated))));
  view.append(h("div", { class: "page-head" }, h("h1", {}, "Datasets")), form,
    h("table", { class: "grid", id: "datasets" },
      h("thead", {}, h("tr", {}, ["Name", "Entries", "Train", "Test", "Fine-tunes", "Updated"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "muted empty" }, "No datasets yet: create one, upload JSONL or import logs.")))));
}
