"""Unpacking a model_s3_path tar.gz for an endpoint, without letting the archive do more than hold files.

tarfile's "data" filter refuses what a model has no use for and an attacker does: absolute names,
names or links leading out of the folder, devices, set-uid bits. Before an entry is written its
header is counted against SPOTBOT_MODEL_MAX_FILES and SPOTBOT_MODEL_MAX_BYTES, so a tar bomb (a
small archive of huge or countless entries) stops at its first entry past a limit, and a refused
archive leaves nothing unpacked. Pythons whose tarfile has no filters (3.10 before 3.10.12, 3.11
before 3.11.4) are refused: without them an archive may write anywhere the user can.
"""

from __future__ import annotations

import shutil
import sys
import tarfile
from pathlib import Path

from ..errors import EndpointError


def require_tar_filters(module=tarfile) -> None:
    """EndpointError unless this Python's tarfile can filter what it extracts."""
    if not hasattr(module, "data_filter"):
        raise EndpointError(f"this Python ({sys.version.split()[0]}) cannot unpack model tarballs safely: its tarfile "
                            "has no extraction filters; use Python 3.10.12+, 3.11.4+ or 3.12+ (setup.cfg requires it)")


def unpack(archive: Path, into: Path, *, source: str, max_bytes: int, max_files: int) -> None:
    """Extract a tar(.gz) into the folder `into`, within the limits; on any refusal `into` is left empty.

    source names the archive in errors (its model_s3_path).
    """
    require_tar_filters()
    count = total = 0
    try:
        with tarfile.open(archive) as tar:
            for member in tar:  # header by header: nothing is read ahead of the limits
                count += 1
                total += max(member.size, 0)
                if count > max_files:
                    raise EndpointError(f"model_s3_path {source} holds more than {max_files} entries "
                                        "(SPOTBOT_MODEL_MAX_FILES); nothing was unpacked")
                if total > max_bytes:
                    raise EndpointError(f"model_s3_path {source} unpacks to more than {max_bytes} bytes "
                                        "(SPOTBOT_MODEL_MAX_BYTES); nothing was unpacked")
                tar.extract(member, into, filter="data")
    except tarfile.FilterError as exc:
        _empty(into)
        raise EndpointError(f"model_s3_path {source} holds an entry a model may not: {exc}; nothing was "
                            "unpacked") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        _empty(into)
        raise EndpointError(f"model_s3_path {source} is not a readable tar.gz: {exc}") from None
    except EndpointError:
        _empty(into)
        raise


def _empty(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
