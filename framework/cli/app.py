"""The `spotbot` command group, its context and error handling.

Exit codes: 0 success; 1 unexpected error; 2 bad input or configuration; 3 the job ended
COMPLETED_WITH_ERRORS (--wait); 4 the job ended FAILED or CANCELLED (--wait); 5 not found;
6 Elasticsearch or S3 unreachable; 7 an endpoint or worker could not be started.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click

from .. import settings as settings_module
from ..errors import SpotbotError
from ..models import JobStatus
from ..settings import Settings

# errors name the domain's fields; on the command line they are these flags and arguments
FLAGS = {"input": "--input", "output": "--output", "job_id": "--job-id", "bot": "--bot", "workers": "--bots",
         "concurrency": "--concurrency"}

EXIT_BY_STATUS = {
    JobStatus.COMPLETED: 0,
    JobStatus.COMPLETED_WITH_ERRORS: 3,
    JobStatus.FAILED: 4,
    JobStatus.CANCELLED: 4,
}


class Context:
    """Built lazily, so `--help` and `local` never need a server."""

    def __init__(self, debug: bool):
        self.debug = debug
        self._settings: Settings | None = None
        self._store = None
        self._storage = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    @property
    def store(self):
        if self._store is None:
            from ..store import Store

            self._store = Store.from_settings(self.settings)
        return self._store

    @property
    def storage(self):
        if self._storage is None:
            from ..storage import Storage

            self._storage = Storage(self.settings)
        return self._storage

    def scheduler(self):
        from ..scheduler import Scheduler

        return Scheduler(self.settings, self.store, self.storage)


def handled(command: Callable) -> Callable:
    """Turn spotbot's errors into one line on stderr and the error's exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(Context)
        try:
            return command(*args, **kwargs)
        except SpotbotError as exc:
            if ctx is not None and ctx.debug:
                raise
            message = str(exc)
            field = getattr(exc, "field", None)
            if field in FLAGS and message.startswith(f"{field}:"):
                message = FLAGS[field] + message[len(field):]
            click.echo(f"error: {message}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(epilog="Settings (environment variables):\n\n" + settings_module.describe().replace("\n", "\n\n"))
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """spotbot runs ML bots over the files of an S3 prefix, tracking every file in Elasticsearch.

    \b
    Quick start on one machine:
      spotbot local up
      spotbot bots register bots/doc_ocr/bot_config.json
      spotbot submit --bot doc_ocr --input s3://spotbot-demo/docs/ --output s3://spotbot-demo/out/ --wait
      spotbot results <job id>
    """
    ctx.obj = Context(debug)
