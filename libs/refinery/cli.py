"""`refinery`: run the platform and manage the running one.

  refinery run                        start everything (what `make run` does)
  refinery project create NAME        create a project; prints its API key
  refinery project list
  refinery provider set PROJECT_ID PROVIDER --base-url URL --api-key KEY
  refinery asyncapi [--format json|yaml]   print the AsyncAPI document of every topic and event
  refinery dead-letters list [--topic T] [--service S] [--pending] [--json]
  refinery dead-letters show ID
  refinery dead-letters replay ID [--value-file FILE]   put it back on its topic (FILE: the fixed record)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

INIT_SETTINGS = ("api_key", "openai_base_url", "openai_api_key", "anthropic_base_url", "anthropic_api_key",
                 "gemini_base_url", "gemini_api_key")


class CliSettings(BaseSettings):
    """What `refinery` reads from the environment (the same `REFINERY_*` names the services read)."""

    model_config = SettingsConfigDict(env_prefix="REFINERY_", extra="ignore")

    data_dir: Path = Path(".refinery")
    port: int = Field(default=8000, description="The gateway's port (REST API and console)")
    admin_token: str | None = None
    init_api_key: str | None = None
    init_openai_base_url: str | None = None
    init_openai_api_key: str | None = None
    init_anthropic_base_url: str | None = None
    init_anthropic_api_key: str | None = None
    init_gemini_base_url: str | None = None
    init_gemini_api_key: str | None = None

    def init_env(self) -> dict[str, str]:
        """The first-start settings handed on to the gateway."""
        return {f"REFINERY_INIT_{name.upper()}": value for name in INIT_SETTINGS
                if (value := getattr(self, f"init_{name}"))}


def _data_dir() -> Path:
    return CliSettings().data_dir.resolve()


def _gateway() -> tuple[str, str]:
    settings = CliSettings()
    data_dir = settings.data_dir.resolve()
    stack = data_dir / "stack.json"
    if stack.exists():
        url = json.loads(stack.read_text())["url"]
    else:
        url = f"http://127.0.0.1:{settings.port}"
    token_file = data_dir / "gateway" / "admin-token"
    token = settings.admin_token or (token_file.read_text().strip() if token_file.exists() else "")
    if not token:
        sys.exit(f"no admin token: is Refinery running with REFINERY_DATA_DIR={data_dir}?")
    return url, token


def _admin(method: str, path: str, body: dict | None = None) -> object:
    url, token = _gateway()
    req = urllib.request.Request(
        url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        sys.exit(f"error {exc.code}: {exc.read().decode(errors='replace')}")
    except urllib.error.URLError as exc:
        sys.exit(f"cannot reach Refinery at {url}: {exc.reason}")


def _default_key(data_dir: Path) -> str:
    """The default project's key when none is given: made on first start, kept (0600)."""
    path = data_dir / "default-api-key"
    if not path.exists():
        import secrets

        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text("opk-" + secrets.token_hex(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _run(_: argparse.Namespace) -> None:
    from refinery.stack.platform import Stack

    settings = CliSettings()
    env = settings.init_env()
    data_dir = settings.data_dir.resolve()
    if not env.get("REFINERY_INIT_API_KEY"):
        env["REFINERY_INIT_API_KEY"] = _default_key(data_dir)
    stack = Stack(data_dir, settings.port, env=env)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    print(f"starting Refinery (data in {stack.data_dir}) ...", flush=True)
    if stack.with_ml:
        print("  (the first start converts the bundled base model once: about half a minute)", flush=True)
    try:
        stack.start(timeout_s=300)
    except KeyboardInterrupt:
        print("\nstopped", flush=True)
        return
    except (RuntimeError, TimeoutError) as exc:
        sys.exit(f"Refinery failed to start: {exc}")
    key = env["REFINERY_INIT_API_KEY"]
    print(
        f"\nRefinery is running at {stack.url}\n"
        f"  API base:     {stack.api_base}\n"
        f"  API key:      {key}\n"
        f"  point the SDKs at it:\n"
        f"    export OPENPIPE_BASE_URL={stack.api_base} OPENPIPE_API_KEY=<API key>\n"
        f"    OpenAI(base_url=\"{stack.api_base}\", api_key=\"<API key>\")\n"
        f"  logs of each service: {stack.log_dir}\n"
        "Ctrl-C stops everything.",
        flush=True,
    )
    try:
        while not stopping.is_set():
            stopping.wait(1.0)
            for name, proc in stack.services.items():
                if not proc.alive:
                    print(f"{name} exited; restarting (log: {proc.log_path})", flush=True)
                    proc.start()
    except KeyboardInterrupt:
        pass
    print("\nstopping ...", flush=True)
    stack.stop()
    print("stopped", flush=True)


def _project_create(args: argparse.Namespace) -> None:
    body = {"name": args.name}
    if args.api_key:
        body["apiKey"] = args.api_key
    out = _admin("POST", "/admin/v1/projects", body)
    assert isinstance(out, dict)
    print(f"project {out['name']} ({out['id']})\napi key: {out['apiKey']}")


def _project_list(_: argparse.Namespace) -> None:
    projects = _admin("GET", "/admin/v1/projects")
    assert isinstance(projects, list)
    for p in projects:
        print(f"{p['id']}  {p['name']}")


def _provider_set(args: argparse.Namespace) -> None:
    _admin("PUT", f"/admin/v1/projects/{args.project_id}/providers/{args.provider}",
           {"baseUrl": args.base_url, "apiKey": args.api_key})
    print(f"provider {args.provider} set for {args.project_id}")


def _asyncapi(args: argparse.Namespace) -> None:
    """Offline: generated from the event catalogue, so it needs no running platform."""
    from refinery.events.asyncapi import asyncapi_document, render

    sys.stdout.write(render(asyncapi_document(), args.format))


def _dead_letters_list(args: argparse.Namespace) -> None:
    query = {name: value for name, value in (("topic", args.topic), ("service", args.service)) if value}
    if args.pending:
        query["replayed"] = "false"
    query["limit"] = "1000"
    out = _admin("GET", "/admin/v1/dead-letters?" + urllib.parse.urlencode(query))
    assert isinstance(out, dict)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for letter in out["data"]:
        replayed = f"replayed x{len(letter['replays'])}" if letter["replays"] else "pending"
        print(f"{letter['id']}  {letter['service']:<14} {letter['topic']}:{letter['partition']}:{letter['offset']}  "
              f"{letter['size']} B  {replayed}\n    {letter['reason']}")
    print(f"{out['total']} dead letter(s)")


def _dead_letters_show(args: argparse.Namespace) -> None:
    print(json.dumps(_admin("GET", f"/admin/v1/dead-letters/{args.id}"), indent=2))


def _dead_letters_replay(args: argparse.Namespace) -> None:
    body: dict | None = None
    if args.value_file:
        raw = Path(args.value_file).read_bytes()
        try:
            body = {"value": json.loads(raw)}
        except ValueError:
            import base64

            body = {"valueBase64": base64.b64encode(raw).decode()}
    out = _admin("POST", f"/admin/v1/dead-letters/{args.id}/replay", body)
    assert isinstance(out, dict)
    spooled = "spooled (the bus is unreachable)"
    where = spooled if out["spooled"] else f"{out['topic']}:{out['partition']}:{out['offset']}"
    fixed = " (fixed)" if out["fixed"] else ""
    print(f"replayed {out['id']}{fixed} to {where}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="refinery", description="Run and manage Refinery.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="start the platform").set_defaults(fn=_run)
    project = sub.add_parser("project", help="manage projects").add_subparsers(dest="sub", required=True)
    create = project.add_parser("create", help="create a project and print its API key")
    create.add_argument("name")
    create.add_argument("--api-key", help="use this key instead of a generated one")
    create.set_defaults(fn=_project_create)
    project.add_parser("list", help="list projects").set_defaults(fn=_project_list)
    provider = sub.add_parser("provider", help="manage provider settings").add_subparsers(dest="sub", required=True)
    pset = provider.add_parser("set", help="set a project's upstream provider")
    pset.add_argument("project_id")
    pset.add_argument("provider", help="openai, anthropic, gemini or a custom name")
    pset.add_argument("--base-url", required=True)
    pset.add_argument("--api-key", required=True)
    pset.set_defaults(fn=_provider_set)
    asyncapi = sub.add_parser("asyncapi", help="print the AsyncAPI document of every topic and event")
    asyncapi.add_argument("--format", choices=("json", "yaml"), default="json")
    asyncapi.set_defaults(fn=_asyncapi)
    letters = sub.add_parser("dead-letters", help="records set aside for good, with why; replay them").add_subparsers(
        dest="sub", required=True)
    dl_list = letters.add_parser("list", help="list dead letters")
    dl_list.add_argument("--topic")
    dl_list.add_argument("--service")
    dl_list.add_argument("--pending", action="store_true", help="only those not replayed yet")
    dl_list.add_argument("--json", action="store_true")
    dl_list.set_defaults(fn=_dead_letters_list)
    dl_show = letters.add_parser("show", help="one dead letter with its record")
    dl_show.add_argument("id")
    dl_show.set_defaults(fn=_dead_letters_show)
    dl_replay = letters.add_parser("replay", help="put a dead letter's record back on its topic")
    dl_replay.add_argument("id")
    dl_replay.add_argument("--value-file", help="the fixed record (JSON, or raw bytes) to replay instead")
    dl_replay.set_defaults(fn=_dead_letters_replay)
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
