"""The TypeScript code-grader sandbox, run on the real Deno binary: the docs' templates grade as
written, and hostile graders (loops, memory, permissions, bad results, forged output) cost only their
own row an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from eval.grading import LOG_LIMIT_CHARS, GraderSandbox

from tests.grader_templates import ARGUMENT_COMPARISON, EXACT_MATCH


def tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": "call_1", "type": "function",
            "function": {"name": name, "arguments": orjson.dumps(arguments).decode()}}


def row(generated: dict[str, Any] | None, dataset: dict[str, Any] | None) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Classify: great product"}], "tools": None,
            "toolChoice": None, "generatedOutput": generated, "datasetOutput": dataset}


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("grader-sandbox")


@pytest.fixture(scope="module")
def sandbox(work_dir: Path) -> GraderSandbox:
    return GraderSandbox(work_dir=work_dir, timeout_s=1.0, memory_mb=64)


@pytest.fixture(scope="module")
def roomy(work_dir: Path) -> GraderSandbox:
    """Time enough to fill the heap even on a busy machine (V8 collects hard before it gives up)."""
    return GraderSandbox(work_dir=work_dir, timeout_s=4.0, memory_mb=64)


async def score(sandbox: GraderSandbox, source: str, args: dict[str, Any]) -> float | None:
    grade = await sandbox.grade(source, args)
    assert grade.error is None, grade.error
    return grade.score


JUDGED = {"role": "assistant", "content": None,
          "tool_calls": [tool_call("record_judgement", {"explanation": "it is positive", "score": 1})]}


async def test_exact_match_template_as_written(sandbox: GraderSandbox) -> None:
    same = {"role": "assistant", "content": "positive"}
    assert await score(sandbox, EXACT_MATCH, row(same, {"role": "assistant", "content": "positive"})) == 1.0
    assert await score(sandbox, EXACT_MATCH, row(same, {"role": "assistant", "content": "negative"})) == 0.0
    assert await score(sandbox, EXACT_MATCH, row(JUDGED, JUDGED)) == 1.0
    other_args = {**JUDGED, "tool_calls": [tool_call("record_judgement", {"explanation": "x", "score": 1})]}
    assert await score(sandbox, EXACT_MATCH, row(JUDGED, other_args)) == 0.0
    # An empty tool-call list is no tool call, like a message that has none.
    assert await score(sandbox, EXACT_MATCH, row({**same, "tool_calls": []}, same)) == 1.0


async def test_argument_comparison_template_as_written(sandbox: GraderSandbox) -> None:
    other_score = {**JUDGED, "tool_calls": [tool_call("record_judgement", {"explanation": "no", "score": 0})]}
    same_score = {**JUDGED, "tool_calls": [tool_call("record_judgement", {"explanation": "other", "score": 1})]}
    assert await score(sandbox, ARGUMENT_COMPARISON, row(JUDGED, same_score)) == 1.0
    assert await score(sandbox, ARGUMENT_COMPARISON, row(JUDGED, other_score)) == 0.0
    assert await score(sandbox, ARGUMENT_COMPARISON, row({"role": "assistant", "content": "1"}, JUDGED)) == 0.0


async def test_a_grader_calls_exact_tool_calls_match_without_defining_it(sandbox: GraderSandbox) -> None:
    source = """
function grader({ generatedOutput, datasetOutput }: GraderArgs): number {
  return exactToolCallsMatch(generatedOutput.tool_calls, datasetOutput.tool_calls) ? 1 : 0;
}
"""
    assert await score(sandbox, source, row(JUDGED, JUDGED)) == 1.0
    assert await score(sandbox, source, row(JUDGED, {"role": "assistant", "content": "x"})) == 0.0


async def test_a_grader_may_be_async_and_its_console_output_is_its_reasoning(sandbox: GraderSandbox) -> None:
    source = """
export async function grader({ generatedOutput }: { generatedOutput: { content: string } }) {
  console.log("content was", generatedOutput.content, { length: generatedOutput.content.length });
  await new Promise((resolve) => setTimeout(resolve, 1));
  return 0.25;
}
"""
    grade = await sandbox.grade(source, row({"content": "hi"}, None))
    assert (grade.score, grade.error) == (0.25, None)
    assert grade.reasoning == "content was hi { length: 2 }"
    chatty = 'function grader() { for (let i = 0; i < 1000; i++) console.log("x".repeat(100)); return 1; }'
    assert len((await sandbox.grade(chatty, row(None, None))).reasoning) == LOG_LIMIT_CHARS


@pytest.mark.parametrize(("body", "expected"), [
    ("return 2;", "the grader returned 2, outside [0, 1]"),
    ("return -0.5;", "the grader returned -0.5, outside [0, 1]"),
    ('return "x";', 'the grader must return a number between 0 and 1, got string "x"'),
    ("return undefined;", "the grader must return a number between 0 and 1, got undefined undefined"),
    ("return NaN;", "the grader returned NaN; it must return a number between 0 and 1"),
    ("return Infinity;", "the grader returned Infinity, outside [0, 1]"),
])
async def test_results_outside_zero_to_one_are_errors(sandbox: GraderSandbox, body: str, expected: str) -> None:
    grade = await sandbox.grade(f"function grader(): number {{ {body} }}", row(None, None))
    assert (grade.score, grade.error) == (None, expected)


async def test_a_throw_is_the_rows_error_with_its_location(sandbox: GraderSandbox) -> None:
    grade = await sandbox.grade('function grader(): number {\n  throw new Error("boom");\n}', row(None, None))
    assert (grade.score, grade.error) == (None, "Error: boom (grader.ts:2:9)")


async def test_an_endless_loop_times_out(sandbox: GraderSandbox) -> None:
    grade = await sandbox.grade("function grader(): number { while (true) {} }", row(None, None))
    assert (grade.score, grade.error) == (None, "timed out after 1 s")


@pytest.mark.parametrize("allocation", [
    "const a = []; while (true) a.push(new Array(1e6).fill(1));",  # the V8 heap
    "const a = []; while (true) a.push(new Uint8Array(32 << 20).fill(1));",  # outside it: RLIMIT_DATA
])
async def test_unbounded_allocation_runs_out_of_memory(roomy: GraderSandbox, allocation: str) -> None:
    grade = await roomy.grade(f"function grader(): number {{ {allocation} return 1; }}", row(None, None))
    assert grade.score is None
    assert grade.error is not None and "ran out of memory" in grade.error


@pytest.mark.parametrize(("call", "permission"), [
    ('Deno.readTextFileSync("/etc/passwd")', 'read access to "/etc/passwd"'),
    ('Deno.writeTextFileSync("/tmp/grader-was-here", "x")', 'write access to "/tmp/grader-was-here"'),
    ('await Deno.connect({ hostname: "127.0.0.1", port: 22 })', 'net access to "127.0.0.1:22"'),
    ('await fetch("http://example.com/")', 'net access to "example.com:80"'),
    ('Deno.env.get("HOME")', 'env access to "HOME"'),
    ('new Deno.Command("/bin/ls").outputSync()', 'run access to "/bin/ls"'),
    ('Deno.dlopen("libc.so.6", {})', 'ffi access to "libc.so.6"'),
    ('(await import("node:fs")).readFileSync("/etc/hostname")', 'read access to "/etc/hostname"'),
])
async def test_forbidden_operations_are_permission_errors(sandbox: GraderSandbox, call: str, permission: str) -> None:
    grade = await sandbox.grade(f"async function grader() {{ {call}; return 1; }}", row(None, None))
    assert grade.score is None
    assert grade.error is not None
    assert grade.error.startswith(f"permission denied: requires {permission}"), grade.error


async def test_a_grader_cannot_end_the_process_or_hang_on_a_promise(sandbox: GraderSandbox) -> None:
    exits = await sandbox.grade("function grader() { Deno.exit(0); }", row(None, None))
    assert exits.error is not None and "cannot end the sandbox process" in exits.error
    never = await sandbox.grade("async function grader() { await new Promise(() => {}); }", row(None, None))
    assert never.error == "the grader returned a promise that never settles"


async def test_printed_lines_cannot_forge_results(sandbox: GraderSandbox) -> None:
    # The grader patches what output goes through and prints result-shaped lines for the other rows;
    # every row still gets what its own call returned.
    source = r"""
const seen: string[] = [];
const encode = TextEncoder.prototype.encode;
TextEncoder.prototype.encode = function (text?: string) { seen.push(String(text)); return encode.call(this, text); };
(Object.prototype as any).toJSON = function () { return { t: "row", i: 0, result: { kind: "number", value: 1 } }; };
const fakes = [0, 1, 2].map((i) => `x {"t":"row","i":${i},"result":{"kind":"number","value":1}}`);
function grader(): number {
  for (const line of [...seen, ...fakes]) {
    Deno.stdout.writeSync(new TextEncoder().encode("\n" + line.replace(/"value":0/g, '"value":1') + "\n"));
  }
  return 0;
}
"""
    grades = await sandbox.grade_many(source, [row(None, None)] * 3)
    assert [(g.score, g.error) for g in grades] == [(0.0, None)] * 3


async def test_one_rows_failure_does_not_change_its_neighbours(roomy: GraderSandbox) -> None:
    source = """
function grader({ generatedOutput, datasetOutput }: GraderArgs): number {
  const content = generatedOutput.content;
  if (content === "loop") while (true) {}
  if (content === "oom") { const a = []; while (true) a.push(new Array(1e6).fill(1)); }
  if (content === "throw") throw new Error("bad row");
  return content === datasetOutput.content ? 1 : 0;
}
"""
    contents = ["a", "b", "loop", "a", "oom", "b", "throw", "a", "a", "b"]
    rows = [row({"content": content}, {"content": "a"}) for content in contents]
    grades = await roomy.grade_many(source, rows)
    assert [(g.score, g.error) for g in grades] == [
        (1.0, None), (0.0, None), (None, "timed out after 4 s"), (1.0, None),
        (None, "ran out of memory (the limit is 64 MB)"), (0.0, None), (None, "Error: bad row (grader.ts:6:34)"),
        (1.0, None), (1.0, None), (0.0, None)]


async def test_check_accepts_the_templates(sandbox: GraderSandbox) -> None:
    assert await sandbox.check(EXACT_MATCH) is None
    assert await sandbox.check(ARGUMENT_COMPARISON) is None


async def test_check_names_a_syntax_errors_line_and_column(sandbox: GraderSandbox) -> None:
    message = await sandbox.check("function grader(): number {\n  return 1 +;\n}\n")
    assert message is not None
    assert message.startswith("SyntaxError: Expression expected (grader.ts:2:13)"), message
    assert "return 1 +;" in message


@pytest.mark.parametrize(("source", "expected"), [
    ("function grade(): number { return 1; }", "the code does not define a function named `grader`"),
    ("const grader = 3;", "`grader` is a number, not a function"),
    ("", "the grader source is empty"),
])
async def test_check_refuses_code_without_a_grader_function(
        sandbox: GraderSandbox, source: str, expected: str) -> None:
    assert await sandbox.check(source) == expected


@pytest.mark.parametrize(("source", "expected"), [
    ('import x from "https://deno.land/x/a.ts";\nfunction grader() { return 1; }', "--no-remote"),
    ('import x from "npm:lodash";\nfunction grader() { return 1; }', "--no-npm"),
    ('import x from "file:///etc/hostname" with { type: "text" };\nfunction grader() { return 1; }',
     'permission denied: requires read access to "/etc/hostname"'),
    ("function grader() { return 1; }\nwhile (true) {}", "timed out after 1 s while loading the grader"),
])
async def test_check_refuses_imports_and_top_level_loops(sandbox: GraderSandbox, source: str, expected: str) -> None:
    message = await sandbox.check(source)
    assert message is not None and expected in message, message
    grade = await sandbox.grade(source, row(None, None))
    assert (grade.score, grade.error) == (None, message)


async def test_bad_rows_are_refused_before_any_grading(sandbox: GraderSandbox) -> None:
    with pytest.raises(ValueError, match="row 1: grader args have unknown keys \\['output'\\]"):
        await sandbox.grade_many(EXACT_MATCH, [row(None, None), {"output": {}}])


async def test_a_flood_of_output_costs_only_its_own_row(sandbox: GraderSandbox) -> None:
    source = """
function grader({ generatedOutput }: GraderArgs): number {
  if (generatedOutput.content === "flood") {
    const chunk = new TextEncoder().encode("x".repeat(1 << 20));
    for (let i = 0; i < 64; i++) Deno.stdout.writeSync(chunk);
  }
  return 1;
}
"""
    rows = [row({"content": content}, None) for content in ("a", "flood", "b")]
    grades = await sandbox.grade_many(source, rows)
    assert [(g.score, g.error) for g in grades] == [
        (1.0, None), (None, "the grader wrote more than 1 MiB to standard output"), (1.0, None)]
