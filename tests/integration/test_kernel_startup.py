"""A real service whose gRPC port is taken fails to start, and stops everything it had started.

In-process (the trainer's own `build`, against real Tansu and SeaweedFS): every part started
before the gRPC server is stopped, newest first, and its resources are released (the database
and the spool can be opened again). As a process (log-ingest): it exits non-zero and says why.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from refinery.runtime.kernel import Kernel, StartupFailed
from refinery.stores.eventstore import EventSourcedStore
from trainer.main import build as trainer_build
from trainer.settings import TrainerSettings


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


async def test_trainer_with_a_taken_grpc_port_stops_what_it_started(tansu, seaweed, taken_port, tmp_path) -> None:
    creds = seaweed.credentials
    seaweed.ensure_bucket("refinery-datasets")
    settings = TrainerSettings(
        data_dir=tmp_path, bus_bootstrap=tansu.bootstrap, s3_endpoint=creds.endpoint, s3_access_key=creds.access_key,
        s3_secret_key=creds.secret_key, REFINERY_TRAINER_GRPC_PORT=taken_port)
    kernel = Kernel("trainer", settings)
    with pytest.raises(StartupFailed, match="trainer"):
        await kernel.serve(trainer_build, signals=False)
    stoppable = [name for name in kernel.started if not name.startswith("objects ")]
    assert stoppable == ["JobStore", "producer refinery.dead-letters", "producer refinery.models", "outbox JobStore",
                         "follower trainer refinery.models", "worker"]
    assert kernel.stopped == list(reversed(stoppable))
    # Released: the database takes a new writer at once, and the spool opens again.
    again = EventSourcedStore(settings.db_url())
    again.save_offsets("t", {0: 1})
    assert again.load_offsets("t") == {0: 1}
    again.close()
    from refinery.bus.spool import Spool

    Spool(settings.service_dir("trainer") / "spool").close()


def test_a_service_process_with_a_taken_port_exits_non_zero_and_says_why(tansu, taken_port, tmp_path) -> None:
    env = {"REFINERY_DATA_DIR": str(tmp_path), "REFINERY_BUS_BOOTSTRAP": tansu.bootstrap,
           "REFINERY_LOG_INGEST_GRPC_PORT": str(taken_port), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "log_ingest.main"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "log-ingest failed to start" in proc.stderr
    # the log store, the dead-letter producer, the metadata producer, the ingestor
    assert "stopping the 4 parts started" in proc.stderr
