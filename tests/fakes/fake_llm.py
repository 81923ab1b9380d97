"""A deterministic fake of the OpenAI and Anthropic HTTP APIs, for tests and benchmarks.

It speaks the real wire formats (JSON, SSE chunks, error bodies) so the official SDKs and
Refinery's proxy are exercised for real; only the model is fake. Answers echo the last user
message; the delay before any byte is configurable per request (`x-fake-delay-ms`).

    python -m tests.fakes.fake_llm --port P [--delay-ms N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import time
from typing import Any

import orjson
from aiohttp import web

_ids = itertools.count(1)
NOT_FOUND_MODEL = "gpt-4o-error"


def _id(prefix: str) -> str:
    return f"{prefix}{next(_ids):024x}"


def _openai_error(status: int, message: str, code: str, typ: str = "invalid_request_error") -> web.Response:
    body = {"error": {"message": message, "type": typ, "param": None, "code": code}}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _last_user_text(messages: list) -> str:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return _text_of(msg.get("content"))
    for msg in reversed(messages):
        if isinstance(msg, dict):
            return _text_of(msg.get("content"))
    return "Hello"


def _value_for(name: str, schema: dict) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    t = schema.get("type")
    if t == "string":
        return "San Francisco, CA" if "location" in name else "value"
    if t in ("number", "integer"):
        return 1
    if t == "boolean":
        return True
    if t == "array":
        return []
    if t == "object":
        return _object_for(schema)
    return "value"


def _object_for(schema: dict) -> dict:
    props = schema.get("properties") or {}
    keys = schema.get("required") or list(props)
    return {k: _value_for(k, props.get(k, {})) for k in keys}


class FakeLLM:
    def __init__(self, delay_ms: float, api_keys: tuple[str, ...]) -> None:
        self.delay_ms = delay_ms
        self.api_keys = set(api_keys)
        self.requests = 0

    async def _delay(self, request: web.Request) -> None:
        ms = float(request.headers.get("x-fake-delay-ms", self.delay_ms))
        if ms > 0:
            await asyncio.sleep(ms / 1000)

    def _key(self, request: web.Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return request.headers.get("x-api-key")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await self._delay(request)
        key = self._key(request)
        if key not in self.api_keys:
            return _openai_error(401, f"Incorrect API key provided: {key}.", "invalid_api_key")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _openai_error(400, "We could not parse the JSON body of your request.", "invalid_json")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _openai_error(400, "you must provide a model parameter", "missing_model")
        if not isinstance(body.get("messages"), list):
            return _openai_error(400, "Missing required parameter: 'messages'.", "missing_messages")
        model = body["model"]
        if model == NOT_FOUND_MODEL:
            return _openai_error(
                404, f"The model `{model}` does not exist or you do not have access to it.", "model_not_found"
            )
        if model == "fail-500":
            return _openai_error(500, "The server had an error while processing your request.", "server_error",
                                 "server_error")
        choices = [self._choice(body, i) for i in range(int(body.get("n") or 1))]
        prompt_tokens = sum(len(_text_of(m.get("content")).split()) + 4 for m in body["messages"]
                            if isinstance(m, dict))
        completion_tokens = sum(len((c["message"].get("content") or "").split()) or 1 for c in choices)
        completion = {
            "id": _id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_fake", "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        if body.get("stream") is True:
            return await self._stream(request, body, completion)
        return web.Response(body=orjson.dumps(completion), content_type="application/json")

    def _choice(self, body: dict, index: int) -> dict:
        tools = body.get("tools")
        functions = body.get("functions")
        if tools and body.get("tool_choice") != "none":
            forced = body.get("tool_choice")
            fn = tools[0].get("function", {})
            if isinstance(forced, dict):
                name = forced.get("function", {}).get("name")
                fn = next((t["function"] for t in tools if t.get("function", {}).get("name") == name), fn)
            args = orjson.dumps(_object_for(fn.get("parameters") or {})).decode()
            call = {"id": _id("call_"), "type": "function", "function": {"name": fn.get("name"), "arguments": args}}
            return {"index": index, "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                    "finish_reason": "tool_calls", "logprobs": None}
        if functions:
            forced = body.get("function_call")
            fn = functions[0]
            if isinstance(forced, dict):
                fn = next((f for f in functions if f.get("name") == forced.get("name")), fn)
            args = orjson.dumps(_object_for(fn.get("parameters") or {})).decode()
            return {"index": index, "message": {"role": "assistant", "content": None,
                                                "function_call": {"name": fn.get("name"), "arguments": args}},
                    "finish_reason": "function_call", "logprobs": None}
        text = "Echo: " + _last_user_text(body["messages"])
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            # Spaced like real model output, so max_tokens truncation applies to JSON too.
            text = json.dumps(_object_for((fmt.get("json_schema") or {}).get("schema") or {}))
        elif fmt.get("type") == "json_object":
            text = orjson.dumps({"echo": _last_user_text(body["messages"])}).decode()
        if index:
            text += f" (choice {index})"
        finish = "stop"
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(limit, int) and len(text.split()) > limit:
            text, finish = " ".join(text.split()[:limit]), "length"
        return {"index": index, "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": finish, "logprobs": None}

    async def _stream(self, request: web.Request, body: dict, completion: dict) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        base = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint")}
        base["object"] = "chat.completion.chunk"

        async def send(choices: list, **extra: Any) -> None:
            await resp.write(b"data: " + orjson.dumps({**base, "choices": choices, **extra}) + b"\n\n")

        for choice in completion["choices"]:
            i, msg = choice["index"], choice["message"]
            if msg.get("tool_calls"):
                call = msg["tool_calls"][0]
                args = call["function"]["arguments"]
                first = {"index": 0, "id": call["id"], "type": "function",
                         "function": {"name": call["function"]["name"], "arguments": ""}}
                await send([{"index": i, "delta": {"role": "assistant", "content": None, "tool_calls": [first]},
                             "finish_reason": None}])
                for piece in (args[: len(args) // 2], args[len(args) // 2:]):
                    await send([{"index": i, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]},
                                 "finish_reason": None}])
            elif msg.get("function_call"):
                fc = msg["function_call"]
                args = fc["arguments"]
                await send([{"index": i, "delta": {"role": "assistant", "content": None,
                                                   "function_call": {"name": fc["name"], "arguments": ""}},
                             "finish_reason": None}])
                for piece in (args[: len(args) // 2], args[len(args) // 2:]):
                    await send([{"index": i, "delta": {"function_call": {"arguments": piece}}, "finish_reason": None}])
            else:
                await send([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
                words = (msg.get("content") or "").split(" ")
                for n, word in enumerate(words):
                    piece = word if n == len(words) - 1 else word + " "
                    await send([{"index": i, "delta": {"content": piece}, "finish_reason": None}])
            await send([{"index": i, "delta": {}, "finish_reason": choice["finish_reason"]}])
        if (body.get("stream_options") or {}).get("include_usage"):
            await send([], usage=completion["usage"])
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def messages(self, request: web.Request) -> web.Response:
        """Anthropic Messages API (non-streaming)."""
        self.requests += 1
        await self._delay(request)
        if self._key(request) not in self.api_keys:
            body = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
            return web.Response(body=orjson.dumps(body), status=401, content_type="application/json")
        body = orjson.loads(await request.read())
        text = "Echo: " + _last_user_text(body.get("messages") or [])
        content: list[dict] = [{"type": "text", "text": text, "citations": None}]
        stop = "end_turn"
        if body.get("tools"):
            tool = body["tools"][0]
            content = [{"type": "tool_use", "id": _id("toolu_"), "name": tool["name"],
                        "input": _object_for(tool.get("input_schema") or {})}]
            stop = "tool_use"
        msg = {"id": _id("msg_"), "type": "message", "role": "assistant", "model": body.get("model"),
               "content": content, "stop_reason": stop, "stop_sequence": None,
               "usage": {"input_tokens": 10, "output_tokens": len(text.split()),
                         "cache_creation_input_tokens": None, "cache_read_input_tokens": None}}
        return web.Response(body=orjson.dumps(msg), content_type="application/json")

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests})

    async def reset(self, _: web.Request) -> web.Response:
        self.requests = 0
        return web.json_response({"requests": 0})


def build_app(delay_ms: float = 300.0, api_keys: tuple[str, ...] = ("sk-fake", "ak-fake")) -> web.Application:
    fake = FakeLLM(delay_ms, api_keys)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app["fake"] = fake
    app.router.add_post("/v1/chat/completions", fake.chat)
    app.router.add_post("/v1/messages", fake.messages)
    app.router.add_get("/fake/stats", fake.stats)
    app.router.add_post("/fake/reset", fake.reset)
    app.router.add_get("/health", lambda _: web.Response(text="ok"))
    return app


async def _serve(host: str, port: int, delay_ms: float, keys: tuple[str, ...]) -> None:
    runner = web.AppRunner(build_app(delay_ms, keys), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"fake-llm listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=300.0)
    parser.add_argument("--api-key", action="append", default=None)
    args = parser.parse_args()
    asyncio.run(_serve(args.host, args.port, args.delay_ms, tuple(args.api_key or ("sk-fake", "ak-fake"))))


if __name__ == "__main__":
    main()
