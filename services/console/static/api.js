// The REST client: every call carries the signed-in project's key; a failed call becomes an
// ApiError whose message is the API's error body, readable. A 401 (expired or revoked key)
// signs out and returns to the sign-in page.
const KEY = "refinery.apiKey";
const listeners = [];

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const issues = (body && Array.isArray(body.issues) ? body.issues : []).map((i) => i.message).filter(Boolean);
    const message = (body && body.message) || fallback || `HTTP ${status}`;
    super(issues.length ? `${message}: ${issues.join("; ")}` : message);
    this.status = status;
    this.code = body && body.code;
  }
}

export function signedIn() {
  return Boolean(sessionStorage.getItem(KEY));
}

export function signIn(key) {
  sessionStorage.setItem(KEY, key.trim());
  window.dispatchEvent(new Event("console:signedin"));
}

// The header of a call made without `api` (an upload with progress events).
export function authHeader() {
  const key = sessionStorage.getItem(KEY);
  return key ? `Bearer ${key}` : "";
}

// A 401 seen outside `api` (an upload): signs out the same way.
export function expired() {
  signOut("Your API key is no longer valid (revoked or expired): sign in again.");
}

export function signOut(message) {
  sessionStorage.removeItem(KEY);
  for (const fn of listeners) fn(message);
}

export function onSignedOut(fn) {
  listeners.push(fn);
}

async function request(method, path, { json, body, headers, raw } = {}) {
  const key = sessionStorage.getItem(KEY);
  const init = { method, headers: { ...(headers || {}) } };
  if (key) init.headers.authorization = `Bearer ${key}`;
  if (json !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, init);
  } catch (err) {
    throw new ApiError(0, null, `The server could not be reached (${err.message})`);
  }
  if (resp.status === 401 && key) {
    signOut("Your API key is no longer valid (revoked or expired): sign in again.");
    throw new ApiError(401, null, "Signed out: the API key is no longer valid");
  }
  if (!resp.ok) {
    let parsed = null;
    try { parsed = await resp.json(); } catch { /* not JSON: the status says it */ }
    throw new ApiError(resp.status, parsed, `${method} ${path} failed with HTTP ${resp.status}`);
  }
  if (raw) return resp;
  if (resp.status === 204) return null;
  const type = resp.headers.get("content-type") || "";
  return type.includes("json") && !type.includes("ndjson") ? resp.json() : resp.text();
}

export const api = {
  get: (path, opts) => request("GET", path, opts),
  post: (path, json, opts) => request("POST", path, { ...opts, json }),
  put: (path, json, opts) => request("PUT", path, { ...opts, json }),
  patch: (path, json, opts) => request("PATCH", path, { ...opts, json }),
  del: (path, opts) => request("DELETE", path, opts),
  send: request,
};

// Checks a key before keeping it: the sign-in page's only call.
export async function tryKey(key) {
  const resp = await fetch("/api/v1/project", { headers: { authorization: `Bearer ${key.trim()}` } });
  if (resp.ok) return resp.json();
  let parsed = null;
  try { parsed = await resp.json(); } catch { /* the status says it */ }
  throw new ApiError(resp.status, parsed, `HTTP ${resp.status}`);
}
