// Sign in by pasting a project API key. The key is checked against the API, then kept in this
// browser tab's session storage (gone when the tab closes), never in a URL.
import { signIn, tryKey } from "../api.js";
import { h } from "../dom.js";

export async function render(view, { query }) {
  const message = query.get("m");
  const input = h("input", { id: "api-key", type: "password", name: "api-key", autocomplete: "off",
    placeholder: "opk-…", required: true, "aria-label": "Project API key" });
  const error = h("p", { class: "error-text", id: "signin-error", role: "alert" });
  const form = h("form", { class: "card signin", onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = "";
    const key = input.value.trim();
    if (!key) return;
    button.disabled = true;
    try {
      await tryKey(key);
      signIn(key);
    } catch (err) {
      error.textContent = err.status === 401 ? "That API key is not valid." : err.message;
    } finally {
      button.disabled = false;
    }
  } });
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  form.append(
    h("h1", {}, "Refinery"),
    h("p", { class: "muted" }, "Sign in with a project API key. It stays in this browser tab only."),
    message ? h("p", { class: "notice-text", id: "signin-message" }, message) : "",
    h("label", { for: "api-key" }, "API key"), input, button, error);
  view.append(form);
  input.focus();
}
