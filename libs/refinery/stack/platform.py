"""The whole platform as one supervised set of processes (`make run`, the e2e tests).

Start order follows dependencies: SeaweedFS, Tansu on it, log-ingest, proxy-router,
dataset, model-registry, trainer and inference (when the ML extra is installed), criteria-judge,
eval, gateway; stop goes the other way. Every port except the gateway's is picked free at start, and
every server binds 127.0.0.1 (the services' defaults); what a client needs (gateway URL) is
written to `<data_dir>/stack.json`.

The internal calls between the services carry one token, made once per data dir and kept in
`<data_dir>/internal-token` (0600, like the admin token), given to every service, so the stack
runs with nothing to configure and a restarted service still speaks to the others.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from refinery import internal_auth
from refinery.config import REQUEST_LOGS_TOPIC
from refinery.stack.infra import SeaweedFS, Tansu
from refinery.stack.process import ManagedProcess, free_port, port_open


class Stack:
    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        durable: bool = True,
        env: dict[str, str] | None = None,
        ml: bool | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = self.data_dir / "logs"
        self.port = port or free_port()
        self.durable = durable
        self.extra_env = env or {}
        self._ml = ml
        # A token the caller gives (or the environment has) wins; else the data dir's, made once.
        given = self.extra_env.get("REFINERY_INTERNAL_TOKEN") or os.environ.get("REFINERY_INTERNAL_TOKEN")
        self.internal_token = given or internal_auth.load_or_create(self.data_dir)
        self.seaweed: SeaweedFS | None = None
        self.tansu: Tansu | None = None
        self.retention: ManagedProcess | None = None
        self.services: dict[str, ManagedProcess] = {}
        self.ports = {
            "log_ingest_grpc": free_port(),
            "gateway_grpc": free_port(),
            "proxy_http": free_port(),
            "proxy_grpc": free_port(),
            "dataset_grpc": free_port(),
            "registry_grpc": free_port(),
            "trainer_grpc": free_port(),
            "inference_http": free_port(),
            "inference_grpc": free_port(),
            "criteria_grpc": free_port(),
            "eval_grpc": free_port(),
            "retention_http": free_port(),
        }

    @property
    def with_ml(self) -> bool:
        """Training and serving need the ML extra (`make install-ml`); without it they do not start.

        `ml=False` leaves them out even where the extra is installed (a stack that only logs)."""
        import importlib.util

        if self._ml is False:
            return False
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "peft", "trl"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/v1"

    def _service_env(self) -> dict[str, str]:
        assert self.tansu is not None
        return {
            "REFINERY_DATA_DIR": str(self.data_dir),
            "REFINERY_BUS_BOOTSTRAP": self.tansu.bootstrap,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
            "REFINERY_INTERNAL_TOKEN": self.internal_token,
        }

    def _python(self, name: str, module: str, env: dict[str, str]) -> ManagedProcess:
        return ManagedProcess(name, [sys.executable, "-m", module], self.log_dir, env={**self._service_env(), **env})

    def start(self, timeout_s: float = 120.0) -> None:
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is in use; set REFINERY_PORT to another port")
        try:
            self._start(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout_s: float) -> None:
        # The object store (uploads, snapshots, adapters) always runs; `durable` is about the bus.
        self.seaweed = SeaweedFS(self.data_dir / "seaweedfs", self.log_dir)
        self.seaweed.start()
        if self.durable:
            self.seaweed.ensure_bucket("tansu")
            self.tansu = Tansu(self.log_dir, self.seaweed.credentials)
        else:
            self.tansu = Tansu(self.log_dir, None)
        self.tansu.start()
        p = self.ports
        self.services["log-ingest"] = self._python(
            "log-ingest", "log_ingest.main", {"REFINERY_LOG_INGEST_GRPC_PORT": str(p["log_ingest_grpc"])}
        )
        ml = self.with_ml
        self.services["proxy-router"] = self._python("proxy-router", "proxy_router.main", {
            "REFINERY_PROXY_PORT": str(p["proxy_http"]),
            "REFINERY_PROXY_GRPC_PORT": str(p["proxy_grpc"]),
            "REFINERY_GATEWAY_GRPC": f"127.0.0.1:{p['gateway_grpc']}",
            "REFINERY_REGISTRY_GRPC": f"127.0.0.1:{p['registry_grpc']}",
            "REFINERY_CRITERIA_GRPC": f"127.0.0.1:{p['criteria_grpc']}",
            **({"REFINERY_INFERENCE_URL": f"http://127.0.0.1:{p['inference_http']}"} if ml else {}),
        })
        s3 = self.seaweed.credentials
        self.services["dataset"] = self._python("dataset", "dataset.main", {
            "REFINERY_DATASET_GRPC_PORT": str(p["dataset_grpc"]),
            "REFINERY_LOG_INGEST_GRPC": f"127.0.0.1:{p['log_ingest_grpc']}",
            "REFINERY_PROXY_ROUTER_URL": f"http://127.0.0.1:{p['proxy_http']}",
            "REFINERY_S3_ENDPOINT": s3.endpoint,
            "REFINERY_S3_ACCESS_KEY": s3.access_key,
            "REFINERY_S3_SECRET_KEY": s3.secret_key,
        })
        self.services["model-registry"] = self._python("model-registry", "model_registry.main", {
            "REFINERY_REGISTRY_GRPC_PORT": str(p["registry_grpc"]),
            "REFINERY_DATASET_GRPC": f"127.0.0.1:{p['dataset_grpc']}",
            **({"REFINERY_INFERENCE_GRPC": f"127.0.0.1:{p['inference_grpc']}"} if ml else {}),
        })
        if ml:
            s3_env = {"REFINERY_S3_ENDPOINT": s3.endpoint, "REFINERY_S3_ACCESS_KEY": s3.access_key,
                      "REFINERY_S3_SECRET_KEY": s3.secret_key}
            self.services["trainer"] = self._python("trainer", "trainer.main", {
                "REFINERY_TRAINER_GRPC_PORT": str(p["trainer_grpc"]), **s3_env})
            self.services["inference"] = self._python("inference", "inference.main", {
                "REFINERY_INFERENCE_PORT": str(p["inference_http"]),
                "REFINERY_INFERENCE_GRPC_PORT": str(p["inference_grpc"]),
                "REFINERY_REGISTRY_GRPC": f"127.0.0.1:{p['registry_grpc']}", **s3_env})
        self.services["criteria-judge"] = self._python("criteria-judge", "criteria_judge.main", {
            "REFINERY_CRITERIA_GRPC_PORT": str(p["criteria_grpc"]),
            "REFINERY_PROXY_ROUTER_URL": f"http://127.0.0.1:{p['proxy_http']}",
            "REFINERY_REGISTRY_GRPC": f"127.0.0.1:{p['registry_grpc']}",
            "REFINERY_DATASET_GRPC": f"127.0.0.1:{p['dataset_grpc']}",
            **({"REFINERY_INFERENCE_GRPC": f"127.0.0.1:{p['inference_grpc']}"} if ml else {}),
        })
        self.services["eval"] = self._python("eval", "eval.main", {
            "REFINERY_EVAL_GRPC_PORT": str(p["eval_grpc"]),
            "REFINERY_PROXY_ROUTER_URL": f"http://127.0.0.1:{p['proxy_http']}",
            "REFINERY_DATASET_GRPC": f"127.0.0.1:{p['dataset_grpc']}",
            "REFINERY_REGISTRY_GRPC": f"127.0.0.1:{p['registry_grpc']}",
            "REFINERY_CRITERIA_GRPC": f"127.0.0.1:{p['criteria_grpc']}",
        })
        self.services["gateway"] = self._python("gateway", "gateway.main", {
            "REFINERY_PORT": str(self.port),
            "REFINERY_GRPC_PORT": str(p["gateway_grpc"]),
            "REFINERY_LOG_INGEST_GRPC": f"127.0.0.1:{p['log_ingest_grpc']}",
            "REFINERY_PROXY_ROUTER_URL": f"http://127.0.0.1:{p['proxy_http']}",
            "REFINERY_PROXY_ROUTER_GRPC": f"127.0.0.1:{p['proxy_grpc']}",
            "REFINERY_DATASET_GRPC": f"127.0.0.1:{p['dataset_grpc']}",
            "REFINERY_REGISTRY_GRPC": f"127.0.0.1:{p['registry_grpc']}",
            "REFINERY_CRITERIA_GRPC": f"127.0.0.1:{p['criteria_grpc']}",
            "REFINERY_EVAL_GRPC": f"127.0.0.1:{p['eval_grpc']}",
            **({"REFINERY_RETENTION_URL": f"http://127.0.0.1:{p['retention_http']}"} if self.durable else {}),
            **({"REFINERY_TRAINER_GRPC": f"127.0.0.1:{p['trainer_grpc']}",
                "REFINERY_INFERENCE_GRPC": f"127.0.0.1:{p['inference_grpc']}"} if ml else {}),
        })
        if self.durable:
            # Tansu's S3 engine has no retention of its own; see refinery.bus.retention.
            self.retention = self._python("retention", "refinery.bus.retention", {
                "REFINERY_RETENTION_BOOTSTRAP": self.tansu.bootstrap,
                "REFINERY_RETENTION_S3_ENDPOINT": s3.endpoint,
                "REFINERY_RETENTION_S3_ACCESS_KEY": s3.access_key,
                "REFINERY_RETENTION_S3_SECRET_KEY": s3.secret_key,
                "REFINERY_RETENTION_S3_REGION": s3.region,
                "REFINERY_RETENTION_TOPIC": self.extra_env.get("REFINERY_REQUEST_LOGS_TOPIC", REQUEST_LOGS_TOPIC),
                "REFINERY_RETENTION_PORT": str(p["retention_http"]),
            })
            self.retention.start()
        for proc in self.services.values():
            proc.start()
        self.services["gateway"].wait_ready(self.healthy, timeout_s, why=self._not_ready)
        (self.data_dir / "stack.json").write_text(json.dumps({"url": self.url, "pid": os.getpid()}))

    def _not_ready(self) -> str:
        """The /health body and the log tails of the services it reports not ready (for a start-up timeout)."""
        body = self.health()
        try:
            waiting = [name.replace("_", "-") for name, ok in json.loads(body).get("services", {}).items() if not ok]
        except (ValueError, AttributeError):
            waiting = []
        tails = [f"--- {n}\n{p.tail(15)}" for n, p in self.services.items()
                 if n.replace("_", "-") in waiting or not p.alive]
        return "\n".join([f"health: {body}", *tails])

    def health(self) -> str:
        """The gateway's /health body, or why it could not be read."""
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            return f"unreachable: {exc}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.healthy():
                return
            time.sleep(0.1)
        for proc in self.services.values():
            proc.dump_stacks()
        time.sleep(0.5)
        raise TimeoutError(f"stack not healthy: {self.health()}\n" + "\n".join(
            f"--- {n} (alive: {p.alive})\n{p.tail(40)}" for n, p in self.services.items()))

    def restart(self, name: str, *, kill: bool = False) -> None:
        """Stop (or kill -9) one part and start it again with the same ports and data."""
        if name == "tansu":
            assert self.tansu is not None
            self.tansu.kill() if kill else self.tansu.stop()
            self.tansu.start()
            return
        proc = self.services[name]
        proc.kill() if kill else proc.stop()
        proc.start()

    def admin_token(self) -> str:
        """The gateway's admin token: the one the stack was given, else the one the gateway keeps."""
        given = self.extra_env.get("REFINERY_ADMIN_TOKEN", "").strip()
        return given or (self.data_dir / "gateway" / "admin-token").read_text().strip()

    def stop(self) -> None:
        for name in ("gateway", "eval", "criteria-judge", "inference", "trainer", "model-registry", "dataset",
                     "proxy-router", "log-ingest"):
            if name in self.services:
                self.services[name].stop()
        if self.retention is not None:
            self.retention.stop()
        if self.tansu is not None:
            self.tansu.stop()
        if self.seaweed is not None:
            self.seaweed.stop()
        (self.data_dir / "stack.json").unlink(missing_ok=True)
