"""Spot interruption notices: a worker on EC2 asks the instance metadata service whether its instance is
about to be taken back, and stops gracefully when it is (as on SIGTERM).

EC2 posts the notice two minutes before it stops a Spot instance: `GET
/latest/meta-data/spot/instance-action` answers 404 until then, and then 200 with
{"action": "terminate" | "stop" | "hibernate", "time": "...Z"}. AWS Batch sends SIGTERM only when
the container is stopped, much later in those two minutes; acting on the notice gives a worker
the whole of them to finish its files in flight and give the rest back.

The service is asked the IMDSv2 way: a session token from `PUT /latest/api/token` (kept until
shortly before its TTL ends, fetched again on a 401), sent with every read. Watching runs in a
daemon thread with short timeouts, so a worker never waits for it to start; where nothing
answers (not on EC2, or a container whose hop limit keeps it from the service) it gives up after
a few tries and says so once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Mapping

import requests

from .settings import Settings

log = logging.getLogger("spotbot.spot")

TOKEN_PATH = "/latest/api/token"  # noqa: S105 -- the IMDSv2 token's path, not a password
NOTICE_PATH = "/latest/meta-data/spot/instance-action"
TOKEN_TTL_SECONDS = 21600  # the longest IMDSv2 allows (6 h)
TIMEOUT = (1.0, 2.0)  # connect, read: the service is on the instance itself
GIVE_UP_AFTER = 3  # tries without any answer before concluding there is no metadata service


def wanted(settings: Settings, environ: Mapping[str, str]) -> bool:
    """Whether a worker watches for notices: SPOTBOT_SPOT_NOTICE on, or auto on an AWS Batch worker."""
    if settings.spot_notice == "on":
        return True
    return settings.spot_notice == "auto" and (settings.launcher == "batch" or bool(environ.get("AWS_BATCH_JOB_ID")))


class SpotNotice:
    """Polls the instance metadata service every `every` seconds; calls `on_notice(reason)` once when a notice appears."""

    def __init__(self, url: str, on_notice: Callable[[str], None], *, every: float, stop: threading.Event):
        self.url = url.rstrip("/")
        self.on_notice = on_notice
        self.every = every
        self.stop = stop
        self.session = requests.Session()
        self.session.trust_env = False  # the service is link-local: never through an HTTP proxy
        self._token = ""
        self._token_until = 0.0
        self._answered = False
        self._misses = 0
        self.thread = threading.Thread(target=self._run, name="spot-notice", daemon=True)

    def start(self) -> "SpotNotice":
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                notice = self.check()
            except requests.RequestException as exc:
                if not self._answered:
                    self._misses += 1
                    if self._misses >= GIVE_UP_AFTER:
                        log.info("no instance metadata service answers at %s (%s): not watching for Spot "
                                 "interruption notices", self.url, type(exc).__name__)
                        return
                else:
                    log.debug("asking %s for a Spot interruption notice failed: %s", self.url, exc)
                notice = None
            if notice is not None:
                self.on_notice(notice)
                return
            self.stop.wait(self.every)

    def check(self) -> str | None:
        """One look: a description of the notice, or None when there is none."""
        answer = self.session.get(self.url + NOTICE_PATH, headers={"X-aws-ec2-metadata-token": self.token()},
                                  timeout=TIMEOUT)
        if answer.status_code == 401:  # the token expired or was revoked: take a new one once
            self._token = ""
            answer = self.session.get(self.url + NOTICE_PATH, headers={"X-aws-ec2-metadata-token": self.token()},
                                      timeout=TIMEOUT)
        self._answered = True
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        try:
            detail = json.loads(answer.text)
        except ValueError:
            detail = {}
        action = detail.get("action", "?") if isinstance(detail, dict) else "?"
        when = detail.get("time", "?") if isinstance(detail, dict) else "?"
        return f"Spot interruption notice: {action} at {when}"

    def token(self) -> str:
        if not self._token or time.monotonic() >= self._token_until:
            answer = self.session.put(self.url + TOKEN_PATH, timeout=TIMEOUT,
                                      headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)})
            answer.raise_for_status()
            self._token = answer.text.strip()
            self._token_until = time.monotonic() + TOKEN_TTL_SECONDS - 60
        return self._token


__all__ = ["SpotNotice", "wanted"]
