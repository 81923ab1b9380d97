// The console's shell: the signed-in key, the API client, the router and the page chrome.
// Every page is a module under pages/ exporting `render(view, params)`; it builds DOM with `h`
// (never HTML parsed from data, so a log's content is shown as text, never run).
import { api, signedIn, signIn, signOut, onSignedOut } from "./api.js";
import { h, showError, clearBanner } from "./dom.js";

const PAGES = {
  signin: () => import("./pages/signin.js"),
  logs: () => import("./pages/logs.js"),
  datasets: () => import("./pages/datasets.js"),
  dataset: () => import("./pages/dataset.js"),
  models: () => import("./pages/models.js"),
  model: () => import("./pages/model.js"),
  criteria: () => import("./pages/criteria.js"),
  criterion: () => import("./pages/criterion.js"),
  evals: () => import("./pages/evals.js"),
  eval: () => import("./pages/eval.js"),
  usage: () => import("./pages/usage.js"),
  settings: () => import("./pages/settings.js"),
};

let rendering = 0;

export function go(path) {
  if (location.hash === `#${path}`) route();
  else location.hash = path;
}

function parse() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || "logs", args: parts.slice(1), query: new URLSearchParams(query || "") };
}

async function route() {
  const view = document.getElementById("view");
  const ticket = ++rendering;
  clearBanner();
  let { page, args, query } = parse();
  if (!signedIn()) page = "signin";
  const top = document.getElementById("top");
  top.hidden = page === "signin";
  // A detail page lights up its list's tab.
  const tab = { dataset: "datasets", model: "models", criterion: "criteria", eval: "evals" }[page] || page;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === tab);
  const load = PAGES[page];
  if (!load) {
    view.replaceChildren(h("p", {}, `No page "${page}".`));
    return;
  }
  const mod = await load();
  if (ticket !== rendering) return; // the user moved on
  // Each visit renders into its own element: a page still loading when the user moves on fills
  // an element that is no longer shown, never the next page.
  const root = h("div", { class: "page", dataset: { page } });
  window.dispatchEvent(new Event("console:leave"));
  view.replaceChildren(root);
  try {
    await mod.render(root, { args, query });
  } catch (err) {
    if (ticket === rendering) showError(err);
  }
}

async function whoAmI() {
  if (!signedIn()) return;
  try {
    const me = await api.get("/project");
    const who = document.getElementById("who");
    who.replaceChildren(h("span", { class: "project" }, me.name),
      me.readOnly ? h("span", { class: "pill warn", title: "This key can read but not change anything" }, "read-only") : "");
    document.body.classList.toggle("read-only", me.readOnly);
  } catch (err) {
    showError(err);
  }
}

document.getElementById("signout").addEventListener("click", () => signOut("You signed out."));
onSignedOut((message) => {
  document.getElementById("who").replaceChildren();
  document.body.classList.remove("read-only");
  go("/signin" + (message ? `?m=${encodeURIComponent(message)}` : ""));
});
window.addEventListener("hashchange", route);
window.addEventListener("console:signedin", () => { whoAmI(); go("/logs"); });
export { signIn };
whoAmI();
route();
