"""Model tarballs unpack as data only, within bounds (issue 14, item 12): real tar.gz files built here, and
downloaded from the embedded S3 where an endpoint gets them."""

from __future__ import annotations

import io
import sys
import tarfile
import types
from configparser import ConfigParser
from pathlib import Path

import pytest
from conftest import ROOT
from packaging.specifiers import SpecifierSet

from framework.endpoints import EndpointManager
from framework.endpoints.model_archive import require_tar_filters, unpack
from framework.errors import EndpointError
from framework.models import EndpointSpec


def tarball(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    """A tar.gz of (name, content) files and ready-made TarInfo entries (links, folders)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def unpacked(folder: Path, data: bytes, **limits) -> Path:
    """Unpack data (written to folder/model.tar.gz) into folder/model, within 1 MB and 100 entries unless told."""
    archive, into = folder / "model.tar.gz", folder / "model"
    into.mkdir(parents=True)
    archive.write_bytes(data)
    unpack(archive, into, source="s3://models/m.tar.gz", **{"max_bytes": 10**6, "max_files": 100, **limits})
    return into


def test_a_tar_bomb_is_refused_at_its_first_entry_past_a_limit_and_leaves_nothing(tmp_path):
    # Given 5 MB of zeros that gzip packs into a few kB, and a limit of 1 MB unpacked
    bomb = tarball([(f"part-{i}.bin", b"\0" * 1_000_000) for i in range(5)])
    assert len(bomb) < 50_000
    with pytest.raises(EndpointError, match=r"unpacks to more than 1000000 bytes \(SPOTBOT_MODEL_MAX_BYTES\)"):
        unpacked(tmp_path, bomb)
    assert list((tmp_path / "model").iterdir()) == []  # the entries before the limit went too

    # and 500 empty files against a limit of 100 entries
    many = tarball([(f"f{i}", b"") for i in range(500)])
    with pytest.raises(EndpointError, match=r"more than 100 entries \(SPOTBOT_MODEL_MAX_FILES\)"):
        unpacked(tmp_path / "many", many)
    assert list((tmp_path / "many" / "model").iterdir()) == []

    # while an archive within both limits unpacks whole
    fine = unpacked(tmp_path / "fine", tarball([("weights.bin", b"\1" * 999_000), ("conf/a.json", b"{}")]))
    assert (fine / "weights.bin").stat().st_size == 999_000 and (fine / "conf" / "a.json").read_bytes() == b"{}"


@pytest.mark.parametrize("entry, why", [
    (("../escaped.py", b"print('out')"), "outside"),
    (link("passwd", "/etc/passwd"), "absolute"),
    (link("up", "../../outside"), "outside"),
    (link("hard", "/etc/passwd", tarfile.LNKTYPE), "absolute"),
])
def test_entries_leaving_the_folder_are_refused_by_the_data_filter(tmp_path, entry, why):
    # Given an archive whose first entry is a plain file, then one that would reach out of the model folder
    data = tarball([("ok.txt", b"fine"), entry])
    with pytest.raises(EndpointError, match="holds an entry a model may not") as caught:
        unpacked(tmp_path, data)
    assert why in str(caught.value).lower() or "link" in str(caught.value).lower(), str(caught.value)
    assert list((tmp_path / "model").iterdir()) == []
    assert not (tmp_path / "escaped.py").exists()


def test_an_absolute_name_lands_inside_the_folder(tmp_path):
    outside = tmp_path / "absolute-escape.py"
    into = unpacked(tmp_path, tarball([(str(outside), b"print('out')")]))
    assert not outside.exists()  # the data filter strips the leading '/': the file stays in the model folder
    assert (into / str(outside).lstrip("/")).read_bytes() == b"print('out')"


def test_a_python_without_tarfile_filters_is_refused_with_a_clear_message():
    with pytest.raises(EndpointError, match=r"cannot unpack model tarballs safely.*3\.10\.12\+, 3\.11\.4\+ or 3\.12\+"):
        require_tar_filters(types.SimpleNamespace())  # a tarfile of 3.11.3: no data_filter
    require_tar_filters()  # this one has them
    # and pip refuses to install spotbot on those Pythons in the first place
    config = ConfigParser()
    config.read(ROOT / "setup.cfg")
    allowed = SpecifierSet(config["options"]["python_requires"])
    assert not any(version in allowed for version in ("3.9.18", "3.10.11", "3.11.0", "3.11.3"))
    assert all(version in allowed for version in ("3.10.12", "3.11.4", "3.12.0", "3.13.1"))
    assert f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}" in allowed


def test_an_endpoints_model_unpacks_to_a_fresh_unguessable_folder_and_the_archive_goes(settings, store, storage, bucket):
    # Given a model archive in S3, and one that is a tar bomb
    storage.write(bucket, "models/m.tar.gz", tarball([("model.bin", b"weights"), ("handler.py", b"x = 1")]))
    storage.write(bucket, "models/bomb.tar.gz", tarball([(f"p{i}", b"\0" * 400_000) for i in range(4)]))
    manager = EndpointManager(settings.model_copy(update={"model_max_bytes": 1_000_000}), store, storage)
    spec = EndpointSpec(name="unpacked", image="python:x.py", model_s3_path=f"s3://{bucket}/models/m.tar.gz")
    root = settings.home / "models" / "unpacked"

    # When the endpoint's model is unpacked twice (two starts)
    first = manager._model_dir(spec)
    second = manager._model_dir(spec)

    # Then each start has its own folder of a random name, not an importable package name; the earlier is gone
    assert first != second and not first.exists() and (second / "model.bin").read_bytes() == b"weights"
    assert second.parent == root.resolve() and second.name.startswith("model-") and not second.name.isidentifier()
    assert [path.name for path in root.iterdir()] == [second.name]  # no archive left beside it
    # and a tar bomb fails the start, naming the endpoint and the setting, with nothing unpacked and no archive
    with pytest.raises(EndpointError, match="SPOTBOT_MODEL_MAX_BYTES") as caught:
        manager._model_dir(spec.model_copy(update={"model_s3_path": f"s3://{bucket}/models/bomb.tar.gz"}))
    assert caught.value.name == "unpacked"
    (left,) = root.iterdir()
    assert left.name.startswith("model-") and list(left.iterdir()) == []
