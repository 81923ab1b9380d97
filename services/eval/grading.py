"""Code graders: a user's TypeScript `grader(args): number` run over rows in a Deno sandbox.

A grader is untrusted code. It runs in `deno run` with no permission at all (`--no-prompt`, so a
permission request throws instead of asking): no file system, network, environment, subprocess or
FFI, no remote, JSR or npm imports, no config or lock file. The source and the rows reach the process
on its standard input, never on a command line. Each process is bounded by the wall clock of each row
(`timeout_s`, then it is killed), V8's heap (`--max-old-space-size`) plus an RLIMIT_DATA for what
lives outside it (array buffers, workers' heaps), an RLIMIT_CPU backstop, and a cap on the output
read back.

V8 runs `--jitless`: with the JIT, V8 reserves a 512 MiB writable code range at start, which makes an
RLIMIT_DATA near the heap limit kill every process (RLIMIT_AS is worse: V8 reserves ~40 GiB of address
space), and the JIT and WebAssembly are most of V8's attack surface. Graders are small comparisons;
measured here, JSON-heavy code runs at the same speed and pure arithmetic ~4x slower.

Rows of one grader are batched into one process for speed (process start is most of the cost). A row
that stops the process (a loop past its time, running out of memory) is charged alone: the rows after
it run again in a fresh process, so one row's failure never changes another row's grade. Results come
back as lines tagged with a random per-process nonce that the grader cannot read, so whatever it
prints cannot pass for a result.

Infrastructure failures (no Deno binary, a process that cannot be spawned) raise `SandboxUnavailable`
rather than grading every row as an error, so callers can retry later instead of recording them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.resources
import logging
import math
import os
import re
import resource
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("refinery.eval")

LOG_LIMIT_CHARS = 2000  # of console output kept per row as its reasoning
STARTUP_S = 15.0  # for Deno itself to start and read the job, before the grader's own clock runs
HEAP_SLACK_MB = 192  # RLIMIT_DATA over the heap limit: Deno's runtime, young generation, array buffers
OUTPUT_BYTES = 1 << 20  # of a row's own writes to standard output (not console.log) read and dropped
EXIT_GRACE_S = 2.0  # for a process that finished its job to exit by itself
STDERR_BYTES = 64 << 10  # of standard error kept to explain a process that stopped
MAX_ROWS_PER_PROCESS = 500
MIN_ROWS_PER_PROCESS = 8  # below this, a second process costs more than it saves

GRADER_EXPORT = "__refinery_grader__"
# Appended (never prepended, so the grader's own line numbers stand) to reach a non-exported `grader`.
_EXPORT_SUFFIX = f"\nexport {{ grader as {GRADER_EXPORT} }};\n"
_MODULE_NAME = "grader.ts"
# How Deno names the grader module in messages; stack traces shorten the base64 with "......".
_MODULE_URL = re.compile(r"data:application/typescript;base64,[A-Za-z0-9+/=]*(?:\.{2,}[A-Za-z0-9+/=]*)?")
_LOCATION = re.compile(re.escape(_MODULE_NAME) + r":(\d+):(\d+)")
_PERMISSION_HINT = re.compile(r",? run again with the --allow-[a-z-]+ flag")
_NO_PERMISSIONS = "graders run without file, network, environment, subprocess or FFI access"
_OUTPUT_KEYS = ("content", "refusal", "tool_calls")
_ARG_KEYS = ("messages", "tools", "toolChoice", "generatedOutput", "datasetOutput")


@dataclass(frozen=True)
class Grade:
    score: float | None  # in [0, 1]; None when error is set
    error: str | None  # why the row could not be graded
    reasoning: str = ""  # what the grader wrote with console.log, capped at LOG_LIMIT_CHARS


class SandboxUnavailable(RuntimeError):
    """Deno could not be started at all: nothing was graded, and trying again later may work."""


def grader_args(args: dict[str, Any]) -> dict[str, Any]:
    """The arguments a grader gets: every key present, and both outputs with `content`, `refusal` and
    `tool_calls` (null when absent, and an empty tool-call list is null too), as the docs' interface
    promises, so `generatedOutput.tool_calls?.[0]` and `exactToolCallsMatch` behave on any message."""
    if not isinstance(args, dict):
        raise ValueError(f"grader args must be an object, got {type(args).__name__}")
    unknown = sorted(set(args) - set(_ARG_KEYS))
    if unknown:
        raise ValueError(f"grader args have unknown keys {unknown}; expected {list(_ARG_KEYS)}")
    messages = args.get("messages") or []
    if not isinstance(messages, list):
        raise ValueError("grader args 'messages' must be a list")
    tools = args.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise ValueError("grader args 'tools' must be a list or null")
    return {"messages": messages, "tools": tools, "toolChoice": args.get("toolChoice"),
            "generatedOutput": _output_message(args.get("generatedOutput"), "generatedOutput"),
            "datasetOutput": _output_message(args.get("datasetOutput"), "datasetOutput")}


def _output_message(message: Any, key: str) -> dict[str, Any]:
    if message is None:
        message = {}
    if not isinstance(message, dict):
        raise ValueError(f"grader args '{key}' must be a message object or null, got {type(message).__name__}")
    out = dict(message)
    for name in _OUTPUT_KEYS:
        out.setdefault(name, None)
    if out["tool_calls"] == []:
        out["tool_calls"] = None
    return out


def _module_text(text: str) -> str:
    return _MODULE_URL.sub(_MODULE_NAME, text)


def _location(stack: str) -> str:
    match = _LOCATION.search(_module_text(stack))
    return f" ({match.group(0)})" if match else ""


def _thrown_message(thrown: dict[str, Any]) -> str:
    """A thrown value as the user should read it: permission refusals named as such, running out of
    memory named as such, others as `Name: message (grader.ts:line:col)` (a parse error keeps Deno's
    code frame under it)."""
    name = str(thrown.get("name") or "")
    message = _module_text(str(thrown.get("message") or ""))
    location = _location(message) or _location(str(thrown.get("stack") or ""))
    # Deno puts "at grader.ts:line:col" lines into some messages: the location is shown once, at the end.
    message = "\n".join(line for line in message.splitlines() if not line.strip().startswith("at ")).rstrip()
    if name in ("NotCapable", "PermissionDenied") or message.startswith("Requires "):
        detail = _PERMISSION_HINT.sub("", message)
        return f"permission denied: {detail[:1].lower()}{detail[1:]}; {_NO_PERMISSIONS}"
    if message.startswith("SyntaxError:"):
        first, _, frame = message.partition("\n")
        return f"{first}{location}" + (f"\n{frame}" if frame else "")
    text = (f"{name}: {message}" if name else f"threw {message}") + location
    if name == "RangeError" and "allocation failed" in message:
        return f"ran out of memory outside the heap: {text}"
    return text


def _load_message(answer: dict[str, Any]) -> str:
    if answer.get("t") == "no_grader":
        return f"`grader` is a {answer.get('type')}, not a function"
    message = str(answer.get("message") or "")
    if "Export 'grader' is not defined" in message:
        return "the code does not define a function named `grader`"
    text = _thrown_message(answer)
    return text if text.startswith("SyntaxError") else f"the grader failed while loading: {text}"


def _row_grade(answer: dict[str, Any]) -> Grade:
    """A row's answer from the sandbox, checked here whatever the sandbox said: only a finite number in
    [0, 1] is a score."""
    reasoning = str(answer.get("log") or "")[:LOG_LIMIT_CHARS]
    result = answer.get("result")
    if not isinstance(result, dict):
        return Grade(None, "the sandbox answered without a result", reasoning)
    kind = result.get("kind")
    if kind == "threw":
        return Grade(None, _thrown_message(result), reasoning)
    if kind == "nan":
        return Grade(None, "the grader returned NaN; it must return a number between 0 and 1", reasoning)
    if kind == "infinite":
        return Grade(None, f"the grader returned {result.get('repr')}, outside [0, 1]", reasoning)
    if kind == "other":
        return Grade(None, f"the grader must return a number between 0 and 1, got {result.get('type')} "
                           f"{str(result.get('repr'))[:200]}", reasoning)
    value = result.get("value")
    if kind != "number" or not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return Grade(None, "the sandbox answered with a result it should not have", reasoning)
    if not 0.0 <= value <= 1.0:
        return Grade(None, f"the grader returned {value:g}, outside [0, 1]", reasoning)
    return Grade(float(value), None, reasoning)


class _OutputOverflow(Exception):
    pass


class _Answers:
    """Reads the sandbox's standard output: lines tagged with this process's nonce are answers; anything
    else is what the grader printed itself and is dropped, and more than `cap` bytes of it between two
    answers (so within one row) stops the process."""

    def __init__(self, stream: asyncio.StreamReader, nonce: str, cap: int) -> None:
        self._stream = stream
        self._tag = (nonce + " ").encode()
        self._cap = cap
        self._foreign = 0  # bytes of untagged output since the last answer
        self._buffer = bytearray()  # a line not yet complete
        self._lines: list[bytes] = []

    async def next(self) -> dict[str, Any] | None:
        """The next answer, or None once the process closed its output."""
        while True:
            while self._lines:
                line = self._lines.pop(0)
                if not line.startswith(self._tag):
                    self._foreign += len(line) + 1
                    continue
                self._foreign = 0
                answer = orjson.loads(line[len(self._tag):])
                if not isinstance(answer, dict):
                    raise ValueError("an answer that is not an object")
                return answer
            if self._foreign + len(self._buffer) > self._cap:
                raise _OutputOverflow
            chunk = await self._stream.read(65536)
            if not chunk:
                return None
            self._buffer += chunk
            *complete, rest = self._buffer.split(b"\n")
            self._lines.extend(bytes(line) for line in complete)
            self._buffer = bytearray(rest)


@dataclass
class _Run:
    """What one process did: the grades of the rows it finished, in order, then either the grade of the
    row it stopped on, or an error that stops every row (the grader could not be loaded)."""

    grades: list[Grade]
    stopped: Grade | None = None
    load_error: str | None = None
    finished: bool = False  # the runtime said its last word and exits by itself


class GraderSandbox:
    """Runs TypeScript graders; one instance per service, at most `concurrency` Deno processes at once."""

    def __init__(self, deno: str | Path | None = None, *, work_dir: Path, timeout_s: float = 5.0,
                 memory_mb: int = 128, concurrency: int = 2) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if memory_mb < 16:
            raise ValueError(f"memory_mb must be at least 16, got {memory_mb}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if deno is None:
            import deno as deno_package  # the PyPI package that ships the binary

            deno = deno_package.find_deno_bin()
        self._deno = Path(deno)
        if not (self._deno.is_file() and os.access(self._deno, os.X_OK)):
            raise SandboxUnavailable(f"no executable Deno at {self._deno}")
        self._timeout_s = timeout_s
        self._memory_mb = memory_mb
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        work_dir = Path(work_dir)
        self._cwd = work_dir / "empty"  # the process's working directory: nothing to find there
        self._cwd.mkdir(parents=True, exist_ok=True)
        self._runtime = work_dir / "grader_runtime.ts"
        _install(self._runtime, importlib.resources.files("eval").joinpath("grader_runtime.ts").read_text())
        self._env = {"DENO_DIR": str(work_dir / "deno-dir"), "DENO_NO_UPDATE_CHECK": "1", "DENO_NO_PROMPT": "1",
                     "NO_COLOR": "1", "HOME": str(self._cwd)}
        self._command = [
            str(self._deno), "run", "--no-prompt", "--no-config", "--no-lock", "--no-remote", "--no-npm",
            "--cached-only", "--no-check", f"--v8-flags=--jitless,--max-old-space-size={memory_mb}",
            str(self._runtime)]

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    async def check(self, source: str) -> str | None:
        """None when the grader compiles and defines a function `grader`; else the message naming the
        problem. Loading runs the grader's top-level code, in the same sandbox and limits as grading."""
        if not isinstance(source, str) or not source.strip():
            return "the grader source is empty"
        run = await self._run_process(_encode(source), [])
        return run.load_error

    async def grade(self, source: str, args: dict[str, Any]) -> Grade:
        return (await self.grade_many(source, [args]))[0]

    async def grade_many(self, source: str, rows: list[dict[str, Any]]) -> list[Grade]:
        """Several rows of one grader, in order; rows are split over up to `concurrency` processes."""
        prepared = []
        for index, args in enumerate(rows):
            try:
                prepared.append(grader_args(args))
            except ValueError as error:
                raise ValueError(f"row {index}: {error}") from error
        if not prepared:
            return []
        encoded = _encode(source)
        size = min(MAX_ROWS_PER_PROCESS, max(MIN_ROWS_PER_PROCESS, -(-len(prepared) // self._concurrency)))
        chunks = [prepared[start:start + size] for start in range(0, len(prepared), size)]
        graded = await asyncio.gather(*(self._grade_chunk(encoded, chunk) for chunk in chunks))
        return [grade for chunk_grades in graded for grade in chunk_grades]

    async def _grade_chunk(self, encoded: str, rows: list[dict[str, Any]]) -> list[Grade]:
        grades: list[Grade] = []
        while len(grades) < len(rows):
            run = await self._run_process(encoded, rows[len(grades):])
            if run.load_error is not None:
                grades.extend(Grade(None, run.load_error) for _ in range(len(rows) - len(grades)))
                break
            grades.extend(run.grades)
            if run.stopped is not None:
                grades.append(run.stopped)
        return grades

    async def _run_process(self, encoded: str, rows: list[dict[str, Any]]) -> _Run:
        nonce = secrets.token_hex(16)
        job = orjson.dumps({"nonce": nonce, "source": encoded, "rows": rows, "logLimit": LOG_LIMIT_CHARS})
        async with self._slots:
            try:
                process = await asyncio.create_subprocess_exec(
                    *self._command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, cwd=self._cwd, env=self._env)
            except OSError as error:
                raise SandboxUnavailable(f"could not start Deno ({self._deno}): {error}") from error
            assert process.stdout is not None and process.stderr is not None
            stderr = asyncio.create_task(_read_capped(process.stderr, STDERR_BYTES))
            run: _Run | None = None
            try:
                run = await self._follow(process, stderr, nonce, job, len(rows))
                return run
            finally:
                await _reap(process, stderr, exits_itself=run is not None and run.finished)

    async def _follow(self, process: asyncio.subprocess.Process, stderr: asyncio.Task[bytes], nonce: str,
                      job: bytes, n_rows: int) -> _Run:
        assert process.stdin is not None and process.stdout is not None
        # The limits are set before the job is written, and the runtime imports no grader code before
        # it has read the whole job: grader code never runs unlimited.
        self._limit(process.pid, n_rows)
        feeder = asyncio.create_task(_feed(process.stdin, job))
        answers = _Answers(process.stdout, nonce, OUTPUT_BYTES)
        loop = asyncio.get_running_loop()
        phase = "start"
        deadline = loop.time() + STARTUP_S
        grades: list[Grade] = []
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        answer = await answers.next()
                except TimeoutError:
                    if phase == "start":
                        return _Run([], load_error=f"the sandbox did not start within {STARTUP_S:g} s")
                    reason = f"timed out after {self._timeout_s:g} s"
                    return self._stop(phase, grades, reason + (" while loading the grader" if phase == "load" else ""))
                except _OutputOverflow:
                    reason = f"the grader wrote more than {OUTPUT_BYTES >> 20} MiB to standard output"
                    return self._stop(phase, grades, reason)
                except ValueError as error:
                    return self._stop(phase, grades, f"the sandbox answered out of protocol ({error})")
                if answer is None:
                    return self._stop(phase, grades, await self._ended(process, stderr, deadline, n_rows))
                kind = answer.get("t")
                if kind == "loading":
                    phase = "load"
                elif kind == "ready":
                    phase = "rows"
                elif kind in ("load_error", "no_grader"):
                    return _Run([], load_error=_load_message(answer), finished=True)
                elif kind == "row" and answer.get("i") == len(grades) and len(grades) < n_rows:
                    grades.append(_row_grade(answer))
                elif kind == "done" and len(grades) == n_rows:
                    return _Run(grades, finished=True)
                else:
                    return self._stop(phase, grades, f"the sandbox answered out of protocol ({kind!r})")
                deadline = loop.time() + self._timeout_s
        finally:
            await _finish(feeder)

    @staticmethod
    def _stop(phase: str, grades: list[Grade], reason: str) -> _Run:
        if phase != "rows":
            return _Run([], load_error=reason)
        return _Run(grades, stopped=Grade(None, reason))

    async def _ended(self, process: asyncio.subprocess.Process, stderr: asyncio.Task[bytes], deadline: float,
                     n_rows: int) -> str:
        """Why a process that closed its output stopped. It may close its output and keep running: then
        it is waited for only until the row's deadline."""
        try:
            async with asyncio.timeout_at(deadline):
                returncode = await process.wait()
                text = _module_text((await stderr).decode(errors="replace"))
        except TimeoutError:
            return f"timed out after {self._timeout_s:g} s"
        if "out of memory" in text or "memory allocation of" in text:
            return f"ran out of memory (the limit is {self._memory_mb} MB)"
        if returncode == -signal.SIGXCPU:
            return f"used more than its {self._cpu_seconds(n_rows)} s of CPU time"
        if "promise never resolved" in text:
            return "the grader returned a promise that never settles"
        if returncode == 0:
            return "the sandbox ended without answering for this row (exit status 0)"
        detail = " ".join(text.split())[:300]
        return f"the sandbox stopped unexpectedly (exit status {returncode})" + (f": {detail}" if detail else "")

    def _cpu_seconds(self, n_rows: int) -> int:
        """A backstop behind the wall clock (a row normally hits its timeout first), generous enough for
        Deno's start, the grader's loading and every row at its full time."""
        return math.ceil(STARTUP_S + (n_rows + 1) * self._timeout_s * 1.5)

    def _limit(self, pid: int, n_rows: int) -> None:
        data = (self._memory_mb + HEAP_SLACK_MB) << 20
        cpu = self._cpu_seconds(n_rows)
        try:
            resource.prlimit(pid, resource.RLIMIT_DATA, (data, data))
            resource.prlimit(pid, resource.RLIMIT_CPU, (cpu, cpu + 2))
            resource.prlimit(pid, resource.RLIMIT_CORE, (0, 0))  # V8's abort on OOM must not dump a core
        except ProcessLookupError:
            log.warning("the grader sandbox (pid %s) exited before its limits were set", pid)


def _encode(source: str) -> str:
    if not isinstance(source, str) or not source.strip():
        raise ValueError("the grader source is empty")
    return base64.b64encode((source + _EXPORT_SUFFIX).encode()).decode()


def _install(path: Path, text: str) -> None:
    """Writes the runtime into the work dir unless it is there already (atomically: several sandboxes
    may share one work dir)."""
    if path.exists() and path.read_text() == text:
        return
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    partial.write_text(text)
    partial.replace(path)


async def _feed(stdin: asyncio.StreamWriter, job: bytes) -> None:
    stdin.write(job)
    await stdin.drain()
    stdin.close()


async def _finish(feeder: asyncio.Task[None]) -> None:
    """Stops writing the job; a process that died before reading it all makes the write fail, and that
    death is already what its rows report."""
    feeder.cancel()
    (outcome,) = await asyncio.gather(feeder, return_exceptions=True)
    if isinstance(outcome, OSError):
        log.debug("the grader sandbox stopped before reading its whole job: %s", outcome)
    elif isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
        raise outcome


async def _reap(process: asyncio.subprocess.Process, stderr: asyncio.Task[bytes], *, exits_itself: bool) -> None:
    """Ends a sandbox process and collects it. One that finished its job exits by itself within moments:
    it is given that moment, because killing a process that just exited races asyncio's child watcher
    (Popen's kill reaps it first, and the watcher then logs an unknown child)."""
    assert process.stdout is not None
    # asyncio's wait() returns only once every pipe is closed, and a pipe whose reader stopped reading
    # (a flood of output) never closes: both are read to their end.
    drained = asyncio.gather(_discard(process.stdout), stderr)
    if exits_itself and process.returncode is None:
        try:
            async with asyncio.timeout(EXIT_GRACE_S):
                await process.wait()
        except TimeoutError:
            log.warning("a grader sandbox (pid %s) did not exit after its job; killing it", process.pid)
    if process.returncode is None:
        # It may exit between the check and the kill: then there is nothing left to stop.
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await drained
    await process.wait()


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> bytes:
    """All of a stream, keeping the first `cap` bytes: a process writing without end can neither fill
    the pipe and block, nor the service's memory."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
    return bytes(kept)
