"""Base models named by path: only directories under the configured roots, and every other path a
400 (INVALID_ARGUMENT) naming `trainingConfig.baseModel`, whatever the file system would say."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from model_registry.base_models import RefusedBaseModel, check_base_model
from model_registry.servicer import RegistryServicer
from model_registry.settings import RegistrySettings
from model_registry.store import RegistryStore
from refinery.rpc import models_pb2


def _model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    return [tmp_path / "models"]


def test_a_model_directory_under_a_root_is_accepted(roots: list[Path]) -> None:
    check_base_model(str(_model_dir(roots[0] / "my-base")), roots)


@pytest.mark.parametrize(("base", "words"), [
    ("/" + "a" * 5000, "at most 300"),
    ("/" + "/".join(["b" * 250] * 1), None),  # outside the roots: refused on its text alone
    ("models/my-base", "unknown base model"),  # a hub id shape, not bundled
    ("./my-base", "relative path"),
    ("../models/my-base", "relative path"),
    ("~/models/my-base", "relative path"),
    ("/etc\x00/passwd", "control characters"),
    ("/srv/models\n", "control characters"),
])
def test_odd_paths_are_refused_with_the_field_named(roots: list[Path], base: str, words: str | None) -> None:
    with pytest.raises(RefusedBaseModel, match=r"trainingConfig\.baseModel") as refused:
        check_base_model(base, roots)
    if words:
        assert words in str(refused.value)


def test_a_directory_outside_the_roots_is_refused_even_with_a_config(roots: list[Path], tmp_path: Path) -> None:
    outside = _model_dir(tmp_path / "elsewhere")
    with pytest.raises(RefusedBaseModel, match="outside the directories base models may be read from"):
        check_base_model(str(outside), roots)
    (roots[0]).mkdir(parents=True)
    (roots[0] / "link").symlink_to(outside)  # inside by name, outside in fact
    with pytest.raises(RefusedBaseModel, match="leads outside"):
        check_base_model(str(roots[0] / "link"), roots)
    with pytest.raises(RefusedBaseModel, match=r"'\.' or '\.\.'"):
        check_base_model(f"{roots[0]}/../elsewhere", roots)


def test_over_long_segments_and_missing_configs_inside_a_root(roots: list[Path]) -> None:
    with pytest.raises(RefusedBaseModel, match="longer than 255 bytes"):  # what the file system cannot hold
        check_base_model(f"/r/{'x' * 256}", [Path("/r")])
    (roots[0] / "empty").mkdir(parents=True)
    with pytest.raises(RefusedBaseModel, match=r"no config\.json"):
        check_base_model(str(roots[0] / "empty"), roots)
    with pytest.raises(RefusedBaseModel, match=r"no config\.json"):
        check_base_model(str(roots[0] / "missing"), roots)


def test_the_default_root_is_the_model_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFINERY_DATA_DIR", str(tmp_path / "data"))
    assert RegistrySettings().allowed_base_model_roots() == [(tmp_path / "data" / "models").resolve()]
    monkeypatch.setenv("REFINERY_BASE_MODEL_ROOTS", f'["{tmp_path}/a", "{tmp_path}/b"]')
    assert RegistrySettings().allowed_base_model_roots() == [tmp_path / "a", tmp_path / "b"]


class Aborted(Exception):
    pass


class Context:
    """What the servicer uses of a gRPC context: abort ends the call with a status and a message."""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


class NoDatasets:
    def __getattr__(self, name: str):
        raise AssertionError(f"the dataset service was called ({name}) for a request to refuse")


@pytest.mark.parametrize("base", ["/" + "p" * 5000, "/" + "q" * 290, "relative/../path", "/tmp"])
async def test_create_model_answers_invalid_argument_naming_the_field(tmp_path: Path, roots: list[Path],
                                                                      base: str) -> None:
    servicer = RegistryServicer(RegistryStore(f"sqlite:///{tmp_path / 'r.db'}"), NoDatasets(), roots)
    request = models_pb2.CreateModelRequest(project_id="p1", slug="m", dataset_id="d1", kind="openpipe",
                                            base_model=base, enable_sft=True)
    with pytest.raises(Aborted) as aborted:
        await servicer.CreateModel(request, Context())
    code, details = aborted.value.args
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "trainingConfig.baseModel" in details
