// One fine-tune: status, a live loss chart (train and validation) from the training events, the
// event log, checkpoints, cancel, and a playground that calls the deployed model.
import { api } from "../api.js";
import { act, h, poll, pretty, showNotice, when } from "../dom.js";
import { lineChart } from "../chart.js";
import { go } from "../app.js";
import { statusPill } from "./models.js";

const RUNNING = new Set(["QUEUED", "PENDING", "PROVISIONING", "TRAINING", "DEPLOYING"]);

export async function render(view, { args }) {
  const slug = args[0];
  const base = `/models/${encodeURIComponent(slug)}`;
  const head = h("div", { class: "page-head" });
  const chart = h("div", { class: "chart", id: "loss-chart" });
  const chartNote = h("p", { class: "muted", id: "loss-note" });
  const events = h("ol", { class: "events", id: "training-events" });
  const checkpoints = h("div", { id: "checkpoints" });
  const playground = h("section", { class: "card", id: "playground" });
  let drawnPoints = -1;

  function drawLoss(list) {
    const points = list.filter((e) => e.type === "metrics" && e.data && e.data.step !== undefined);
    if (points.length === drawnPoints) return;
    drawnPoints = points.length;
    if (!points.length) {
      chartNote.textContent = "The loss chart draws as training reports steps.";
      chart.dataset.points = "0";
      return;
    }
    // Steps run on across phases (SFT, then DPO) so the line does not fold back; a step's train and
    // validation losses arrive as separate events and are drawn at the same x.
    let offset = 0;
    let phase = points[0].data.phase;
    let lastStep = 0;
    const byX = new Map();
    for (const e of points) {
      if (e.data.phase !== phase) { offset += lastStep; phase = e.data.phase; }
      lastStep = e.data.step;
      const at = offset + e.data.step;
      const cell = byX.get(at) || { train: null, valid: null };
      if (e.data.train_loss !== undefined && e.data.train_loss !== null) cell.train = e.data.train_loss;
      if (e.data.valid_loss !== undefined && e.data.valid_loss !== null) cell.valid = e.data.valid_loss;
      byX.set(at, cell);
    }
    const x = [...byX.keys()].sort((a, b) => a - b);
    const train = x.map((at) => byX.get(at).train);
    const valid = x.map((at) => byX.get(at).valid);
    chartNote.textContent = `${x.length} steps reported`;
    const series = [{ label: "train loss", values: train }];
    if (valid.some((v) => v !== null)) series.push({ label: "validation loss", values: valid });
    lineChart(chart, { x, series, yLabel: "loss" });
  }

  async function refresh() {
    const [model, ev, cps] = await Promise.all([api.get(base), api.get(`${base}/events`), api.get(`${base}/checkpoints`)]);
    const status = model.openpipe.status;
    const cancel = RUNNING.has(status) && status !== "DEPLOYING"
      ? h("button", { type: "button", class: "danger", id: "cancel-model", onclick: () => act(cancel, async () => {
        await api.post(`${base}/cancel`, {});
        showNotice("Training cancelled.");
      }) }, "Cancel training") : "";
    const remove = h("button", { type: "button", class: "danger", id: "delete-model", onclick: () => act(remove, async () => {
      if (!confirm(`Delete model ${slug}?`)) return;
      await api.del(base);
      go("/models");
    }) }, "Delete");
    head.replaceChildren(h("h1", {}, `openpipe:${slug}`), statusPill(status), cancel, remove);
    if (model.openpipe.errorMessage) head.append(h("p", { class: "bad", id: "model-error" }, model.openpipe.errorMessage));
    drawLoss(ev.data);
    events.replaceChildren(...ev.data.slice(-200).map((e) => h("li", { class: e.level === "error" ? "bad" : "" },
      h("span", { class: "muted nowrap" }, when(e.created_at)), " ", e.message)));
    checkpoints.replaceChildren(cps.data.length ? h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["Checkpoint", "Phase", "Epoch", "Step", "Saved"].map((t) => h("th", {}, t)))),
      h("tbody", {}, cps.data.map((c) => h("tr", {}, h("td", {}, h("code", {}, c.fine_tuned_model_checkpoint)),
        h("td", {}, c.phase), h("td", { class: "num" }, c.epoch), h("td", { class: "num" }, c.step_number), h("td", { class: "nowrap" }, when(c.created_at))))))
      : h("p", { class: "muted" }, "No checkpoints yet (one per epoch)."));
    drawPlayground(status);
    return RUNNING.has(status);
  }

  let playgroundFor = null;
  function drawPlayground(status) {
    if (playgroundFor === status) return;
    playgroundFor = status;
    if (status !== "DEPLOYED") {
      playground.replaceChildren(h("h2", {}, "Playground"), h("p", { class: "muted" }, "Available once the model is DEPLOYED."));
      return;
    }
    const system = h("textarea", { id: "play-system", rows: 2, placeholder: "System prompt (optional)", "aria-label": "System prompt" });
    const prompt = h("textarea", { id: "play-prompt", rows: 3, placeholder: "Ask the model…", "aria-label": "Prompt" });
    const answer = h("pre", { class: "json", id: "play-answer" });
    const send = h("button", { type: "button", class: "primary", id: "play-send", onclick: () => act(send, async () => {
      const messages = [];
      if (system.value.trim()) messages.push({ role: "system", content: system.value });
      messages.push({ role: "user", content: prompt.value });
      answer.textContent = "…";
      const started = performance.now();
      const resp = await api.post("/chat/completions", { model: `openpipe:${slug}`, messages, max_tokens: 128 });
      const message = resp.choices[0].message;
      answer.textContent = `${message.content ?? pretty(message.tool_calls)}\n\n(${Math.round(performance.now() - started)} ms, ${resp.usage?.completion_tokens ?? "?"} tokens)`;
    }) }, "Send");
    playground.replaceChildren(h("h2", {}, "Playground"), system, prompt, h("div", { class: "toolbar" }, send), answer);
  }

  view.append(head, h("section", { class: "card" }, h("h2", {}, "Loss"), chart, chartNote),
    h("div", { class: "columns" }, h("section", { class: "card" }, h("h2", {}, "Training log"), events),
      h("section", { class: "card" }, h("h2", {}, "Checkpoints"), checkpoints)), playground);
  poll(refresh, 1500, chart);
}
