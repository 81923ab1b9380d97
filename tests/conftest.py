"""Fixtures shared by every suite: one session fixture per real server, stopped after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.running import running_fake_llm


@pytest.fixture(scope="session")
def fake_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake OpenAI/Anthropic upstream behind the stack's providers: returns its base URL (no /v1)."""
    with running_fake_llm(tmp_path_factory.mktemp("fake-llm"), delay_ms=20) as url:
        yield url


# --- production images (testcontainers), selected with --production-images -------------------

CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server:24.8"
MINIO_IMAGE = "minio/minio:RELEASE.2025-09-07T16-13-09Z"
KAFKA_IMAGE = "apache/kafka:3.9.1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--production-images", action="store_true", default=False,
        help="also run the storage contract suites against the production images (ClickHouse, MinIO, "
             "Kafka) through testcontainers; needs a Docker engine",
    )


def _production_images(request: pytest.FixtureRequest) -> None:
    """Skip, saying why, unless the production images were asked for and Docker answers."""
    if not request.config.getoption("--production-images"):
        pytest.skip("production images not selected (run pytest with --production-images)")
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:  # no engine, no socket, no permission: all mean the same here
        pytest.skip(f"--production-images needs a Docker engine, and none answers here: {exc}")


@pytest.fixture(scope="session")
def clickhouse_container_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    _production_images(request)
    from testcontainers.clickhouse import ClickHouseContainer

    with ClickHouseContainer(CLICKHOUSE_IMAGE, port=8123) as ch:
        host, port = ch.get_container_host_ip(), ch.get_exposed_port(8123)
        yield f"clickhouse://{ch.username}:{ch.password}@{host}:{port}/"


@pytest.fixture(scope="session")
def minio_container(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """{endpoint, access_key, secret_key} of a MinIO server."""
    _production_images(request)
    from testcontainers.minio import MinioContainer

    with MinioContainer(MINIO_IMAGE) as minio:
        yield minio.get_config()


@pytest.fixture(scope="session")
def kafka_container_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    _production_images(request)
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka:
        yield kafka.get_bootstrap_server()
