"""The image convention (README, Containers): every bot has a worker and an endpoint Dockerfile that build from
a public base where there is a registry and from spotbot-base:local here, sharing one first block."""

from __future__ import annotations

import re

from conftest import ROOT

SHARED = re.compile(r"# --- shared by every spotbot image.*?# --- end of the shared part ---\n", re.S)
DOCKERFILES = sorted([*ROOT.glob("bots/*/Dockerfile"), *ROOT.glob("bots/*/endpoint.Dockerfile"),
                      *ROOT.glob("byob/bot_docker/*Dockerfile")])


def test_every_bot_has_a_worker_and_an_endpoint_image():
    bots = sorted(path.name for path in (ROOT / "bots").iterdir() if (path / "task.py").exists())
    assert bots, "no bot folders found"
    for bot in bots:
        assert (ROOT / "bots" / bot / "Dockerfile").exists(), f"bots/{bot} has no Dockerfile"
        assert (ROOT / "bots" / bot / "endpoint.Dockerfile").exists(), f"bots/{bot} has no endpoint.Dockerfile"


def test_every_dockerfile_starts_from_a_replaceable_base_and_shares_the_first_block():
    blocks = {}
    for path in DOCKERFILES:
        lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
        assert lines[:2] == ["ARG BASE_IMAGE=python:3.11-slim", "FROM ${BASE_IMAGE}"], path
        found = SHARED.search(path.read_text())
        assert found, f"{path} lacks the shared block"
        blocks[path] = found.group(0)
    assert len(set(blocks.values())) == 1, "the shared block differs between Dockerfiles; keep it identical"


def test_every_image_ends_as_the_unprivileged_user():
    # the user the image runs as is its last USER; spotbot runs containers as the image's user (never root)
    for path in [*DOCKERFILES, ROOT / "deploy" / "docker" / "base.Dockerfile"]:
        users = re.findall(r"^USER\s+(\S+)", path.read_text(), re.M)
        assert users and users[-1] == "1000:1000", f"{path}: the last USER is {users[-1] if users else 'missing'}, not 1000:1000"
