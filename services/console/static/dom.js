// DOM helpers: `h` builds elements with text children (data is never parsed as HTML).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false || child === "") continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function showError(err) {
  const banner = document.getElementById("banner");
  banner.hidden = false;
  banner.className = "error";
  banner.replaceChildren(h("span", {}, err && err.message ? err.message : String(err)),
    h("button", { type: "button", class: "quiet", onclick: clearBanner, "aria-label": "Dismiss" }, "×"));
}

export function showNotice(text) {
  const banner = document.getElementById("banner");
  banner.hidden = false;
  banner.className = "notice";
  banner.replaceChildren(h("span", {}, text),
    h("button", { type: "button", class: "quiet", onclick: clearBanner, "aria-label": "Dismiss" }, "×"));
}

export function clearBanner() {
  const banner = document.getElementById("banner");
  banner.hidden = true;
  banner.replaceChildren();
}

// Runs an action from a button: disables it meanwhile and shows a failure in the banner.
export async function act(button, fn) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

export function pretty(value) {
  if (value === undefined || value === null) return "—";
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}

// A chat message as text: its content (text parts joined), then its tool calls as name(arguments).
export function messageText(m) {
  if (!m) return "";
  const content = Array.isArray(m.content) ? m.content.map((p) => p.text || "").join("") : (m.content ?? "");
  const calls = (m.tool_calls || []).map((c) => `${c.function?.name}(${c.function?.arguments})`).join("\n");
  return [content, calls].filter(Boolean).join("\n");
}

export function when(value) {
  if (value === undefined || value === null || value === "") return "—";
  const date = typeof value === "number" ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

export function money(value) {
  return value === undefined || value === null ? "—" : `$${Number(value).toFixed(value < 0.01 && value > 0 ? 6 : 4)}`;
}

// Pager for server-side paging: "1–50 of 12,345" with previous / next.
export function pager({ offset, limit, total, onPage }) {
  const first = total === 0 ? 0 : offset + 1;
  const last = Math.min(offset + limit, total);
  return h("div", { class: "pager" },
    h("button", { type: "button", disabled: offset === 0, onclick: () => onPage(Math.max(0, offset - limit)) }, "‹ Previous"),
    h("span", { class: "range" }, `${first.toLocaleString()}–${last.toLocaleString()} of ${total.toLocaleString()}`),
    h("button", { type: "button", disabled: last >= total, onclick: () => onPage(offset + limit) }, "Next ›"));
}

// Wraps a fetching function so that only the newest call's answer counts: an answer that arrives
// after a later call started resolves to null (a slow first load must not overwrite a search).
export function newest(fn) {
  let latest = 0;
  return async (...args) => {
    const mine = ++latest;
    const out = await fn(...args);
    return mine === latest ? out : null;
  };
}

// Repeats `fn` every `ms` until the page is left, `anchor` (an element of the page) is no longer
// shown, or `fn` returns false.
export function poll(fn, ms, anchor) {
  let stopped = false;
  let timer = null;
  const stop = () => { stopped = true; clearTimeout(timer); };
  window.addEventListener("console:leave", stop, { once: true });
  const tick = async () => {
    if (stopped || (anchor && !anchor.isConnected && anchor.dataset.started)) return;
    if (anchor) anchor.dataset.started = "1";
    let again = true;
    try { again = (await fn()) !== false; } catch (err) { showError(err); }
    if (again && !stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return stop;
}
