// The Deno side of the eval service's code-grader sandbox; `eval.grading.GraderSandbox` starts it as
// `deno run` with no permission at all and writes one job to its standard input:
//   {"nonce": hex, "source": base64 of the grader module, "rows": [args, ...], "logLimit": chars}
// It answers with lines `\n<nonce> <json>\n` on standard output: {"t": "loading"}, then
// {"t": "load_error"} or {"t": "ready"}, then one {"t": "row", "i": n} per row in order, then {"t": "done"}.
//
// Why it is written the way it is:
// - The job is read, synchronously, before any grader code runs, so a grader can neither read the
//   nonce nor the rows of the job from standard input.
// - Everything the answers go through (JSON.stringify, TextEncoder, stdout.writeSync, the typed array
//   accessors) is captured before the grader is imported: a grader that patches prototypes or globals
//   cannot see the nonce, so whatever it prints itself is not taken for a result.
// - Answers are built as null-prototype objects so an `Object.prototype.toJSON` cannot rewrite them.
// - The grader is a separate module (a data: URL, which Deno transpiles from TypeScript and imports
//   without any permission), so its own top-level `function exactToolCallsMatch` shadows the global
//   one below instead of being a duplicate declaration.
// - Stray errors from timers or unawaited promises are kept from ending the process: they cannot be
//   tied to a row, and ending the process would cost the rows after it a restart.

const apply = Reflect.apply;
const stringify = JSON.stringify;
const parse = JSON.parse;
const inspect = Deno.inspect;
const isNaN = Number.isNaN;
const isFinite = Number.isFinite;
const encoder = new TextEncoder();
const encode = encoder.encode.bind(encoder);
const decode = new TextDecoder().decode.bind(new TextDecoder());
const stdinReadSync = Deno.stdin.readSync.bind(Deno.stdin);
const stdoutWriteSync = Deno.stdout.writeSync.bind(Deno.stdout);
const subarray = Uint8Array.prototype.subarray;
const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype);
const byteLength = Object.getOwnPropertyDescriptor(typedArrayPrototype, "length")!.get!;
const realExit = Deno.exit;

interface Job {
  nonce: string;
  source: string;
  rows: unknown[];
  logLimit: number;
}

function readJob(): Job {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const buffer = new Uint8Array(65536);
    const n = stdinReadSync(buffer);
    if (n === null) break;
    chunks.push(buffer.subarray(0, n));
    total += n;
  }
  const all = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return parse(decode(all)) as Job;
}

const job = readJob();
const nonce = job.nonce;

function emit(message: object): void {
  const bytes = encode("\n" + nonce + " " + stringify(message) + "\n");
  const size = apply(byteLength, bytes, []) as number;
  let written = 0;
  while (written < size) {
    written += stdoutWriteSync(written === 0 ? bytes : apply(subarray, bytes, [written]));
  }
}

// The log of the row being graded: what the grader wrote with console.*, capped at logLimit chars.
let log = "";

function capture(...args: unknown[]): void {
  if (log.length >= job.logLimit) return;
  let line = "";
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    let text: string;
    try {
      text = typeof arg === "string" ? arg : inspect(arg, { colors: false, depth: 4 });
    } catch {
      text = "[value that cannot be shown]";
    }
    line += (i === 0 ? "" : " ") + text;
  }
  log += (log === "" ? "" : "\n") + line;
  if (log.length > job.logLimit) log = log.slice(0, job.logLimit);
}

for (const name of ["log", "info", "warn", "error", "debug", "trace"] as const) {
  Object.defineProperty(console, name, { value: capture, writable: true, configurable: true });
}

function refuseExit(): never {
  throw new Error("graders cannot end the sandbox process");
}
Object.defineProperty(Deno, "exit", { value: refuseExit, writable: true, configurable: true });
Object.defineProperty(globalThis, "close", { value: refuseExit, writable: true, configurable: true });

globalThis.addEventListener("unhandledrejection", (event) => event.preventDefault());
globalThis.addEventListener("error", (event) => event.preventDefault());

// The docs' helper, a global that a grader may call without defining it.
interface ToolCall {
  function: { name: string; arguments: string };
}

function exactToolCallsMatch(toolCalls1: ToolCall[] | null, toolCalls2: ToolCall[] | null): boolean {
  if (!toolCalls1 && !toolCalls2) return true;
  if (!toolCalls1 || !toolCalls2) return false;
  if (toolCalls1.length !== toolCalls2.length) return false;
  for (let i = 0; i < toolCalls1.length; i++) {
    const call1 = toolCalls1[i];
    const call2 = toolCalls2[i];
    if (
      call1?.function.name !== call2?.function.name ||
      call1?.function.arguments !== call2?.function.arguments
    ) {
      return false;
    }
  }
  return true;
}

Object.defineProperty(globalThis, "exactToolCallsMatch", {
  value: exactToolCallsMatch,
  writable: true,
  configurable: true,
});

const TEXT_LIMIT = 4000;

function clip(text: string): string {
  return text.length > TEXT_LIMIT ? text.slice(0, TEXT_LIMIT) : text;
}

// What was thrown, as plain strings; reading a thrown object can itself throw (getters, proxies).
function describeThrown(thrown: unknown): { name: string; message: string; stack: string } {
  try {
    if (thrown instanceof Error || (typeof thrown === "object" && thrown !== null && "message" in thrown)) {
      const error = thrown as Error;
      return { name: clip(String(error.name ?? "Error")), message: clip(String(error.message)),
               stack: clip(String(error.stack ?? "")) };
    }
    return { name: "", message: clip(typeof thrown === "string" ? thrown : inspect(thrown)), stack: "" };
  } catch {
    return { name: "", message: "a value that cannot be shown", stack: "" };
  }
}

function describeResult(value: unknown): object {
  if (typeof value === "number") {
    if (isNaN(value)) return { __proto__: null, kind: "nan" };
    if (!isFinite(value)) return { __proto__: null, kind: "infinite", repr: value > 0 ? "Infinity" : "-Infinity" };
    return { __proto__: null, kind: "number", value };
  }
  let repr: string;
  try {
    repr = inspect(value, { colors: false, depth: 2 });
  } catch {
    repr = "a value that cannot be shown";
  }
  return { __proto__: null, kind: "other", type: value === null ? "null" : typeof value, repr: repr.slice(0, 200) };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === "object" || typeof value === "function") && value !== null &&
    typeof (value as { then?: unknown }).then === "function";
}

emit({ __proto__: null, t: "loading" });
let grader: unknown;
try {
  const module = await import("data:application/typescript;base64," + job.source);
  grader = module.__refinery_grader__;
} catch (thrown) {
  emit({ __proto__: null, t: "load_error", ...describeThrown(thrown) });
  realExit(0);
}
if (typeof grader !== "function") {
  emit({ __proto__: null, t: "no_grader", type: grader === null ? "null" : typeof grader });
  realExit(0);
}
const grade = grader as (args: unknown) => unknown;
emit({ __proto__: null, t: "ready" });

for (let i = 0; i < job.rows.length; i++) {
  log = "";
  let result: object;
  try {
    let value = grade(job.rows[i]);
    if (isThenable(value)) value = await value;
    result = describeResult(value);
  } catch (thrown) {
    result = { __proto__: null, kind: "threw", ...describeThrown(thrown) };
  }
  emit({ __proto__: null, t: "row", i, result, log });
}
emit({ __proto__: null, t: "done" });
realExit(0);
