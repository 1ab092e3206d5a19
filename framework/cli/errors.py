"""`spotbot errors`: a job's ERROR files grouped by cause (error signature), from one aggregation."""

from __future__ import annotations

import datetime as dt

import click

from .app import Context, emit_json, handled, main


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@main.command()
@click.argument("job_id")
@click.option("--top", type=click.IntRange(1, 1000), default=50, show_default=True, help="How many groups, largest first.")
@click.option("--examples", type=click.IntRange(0, 20), default=3, show_default=True, help="Example files per group.")
@click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON.")
@click.pass_obj
@handled
def errors(obj: Context, job_id: str, top: int, examples: int, as_json: bool) -> None:
    """A job's failed files grouped by cause: signature, count, first and last seen, example files.

    A signature is the error with its variable parts (numbers, paths, S3 keys, ids, addresses)
    masked. Retry one group once its cause is fixed: spotbot retry JOB --signature 'SIGNATURE'.

    \b
    Examples:
      spotbot errors doc_ocr-20261121-120000-ab12
      spotbot errors doc_ocr-20261121-120000-ab12 --json | jq -r '.groups[0].signature'
    """
    obj.store.jobs.get(job_id)
    found = obj.store.reports.error_groups(job_id, size=top, examples=examples)
    if as_json:
        emit_json({
            "job_id": job_id, "errors": found.errors, "other": found.other, "unsigned": found.unsigned,
            "groups": [{"signature": g.signature, "count": g.count, "first_at": g.first_at, "last_at": g.last_at,
                        "first_seen": _when(g.first_at), "last_seen": _when(g.last_at),
                        "examples": [{"file_key": e["file_key"], "error": e.get("error", "")} for e in g.examples]}
                       for g in found.groups],
        })
        return
    if not found.errors:
        click.echo(f"job {job_id} has no failed files")
        return
    click.echo(f"job {job_id}: {found.errors} failed file(s) in {len(found.groups)} group(s)")
    for group in found.groups:
        click.echo(f"\n{group.count:>8}  {group.signature}")
        click.echo(f"          first {_when(group.first_at)}  last {_when(group.last_at)}")
        for example in group.examples:
            click.echo(f"          e.g. {example['file_key']}")
    if found.other:
        click.echo(f"\n{found.other:>8}  in smaller groups (--top shows more)")
    if found.unsigned:
        click.echo(f"\n{found.unsigned:>8}  failed before errors had signatures (spotbot results JOB --status ERROR)")
    click.echo("\nretry one group: spotbot retry JOB --signature 'SIGNATURE'")
