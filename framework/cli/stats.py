"""`spotbot stats` (class counts per day and label) and `spotbot evaluate` (labels against known truth)."""

from __future__ import annotations

import click

from .app import Context, emit_json, handled, main


def table(header: list[str], rows: list[list], right: set[int] | None = None) -> list[str]:
    """Plain aligned columns; numbers (the columns in right) aligned right."""
    right = right or set()
    cells = [[("-" if cell is None else str(cell)) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
            for row in cells]


@main.command()
@click.argument("job_id")
@click.option("--by", "by", default="day,label", show_default=True, help="Group by: day, label, status, comma-separated.")
@click.option("--tz", default="UTC", show_default=True, help="Days start at midnight of this UTC offset, like +02:00.")
@click.option("--top", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="Labels per group; the rest are counted as (other).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.pass_obj
@handled
def stats(obj: Context, job_id: str, by: str, tz: str, top: int, as_json: bool) -> None:
    """Files per day and label (seed 001's PredictionsTable), counted by Elasticsearch when asked.

    Day is when the file was completed; a file counts under each of its labels; confidence is the
    average of the files' confidence (when the bot reports one). Only COMPLETED files count, unless
    `status` is one of the groups.

    \b
    Examples:
      spotbot stats image_labeller-20261201-120000-ab12
      spotbot stats bug_priority-20261201-120000-ab12 --by label --json
      spotbot stats JOB --by day,status --tz -05:00
    """
    from ..stats import class_counts, parse_by, parse_offset

    dimensions = parse_by(by)
    result = class_counts(obj.store, job_id, dimensions, offset=parse_offset(tz), top=top)
    if as_json:
        emit_json(result)
        return
    header = [*dimensions, "count", "confidence", "first", "last"]
    rows = [[row.get(name) for name in dimensions] + [row["count"], row["confidence_avg"], row["first_at"], row["last_at"]]
            for row in result["rows"]]
    click.echo(f"job {job_id}: {result['files']} file(s) counted, by {', '.join(dimensions)} (UTC{result['tz']})")
    for line in table(header, rows, right={len(dimensions), len(dimensions) + 1}):
        click.echo(line)


@main.command()
@click.argument("job_id")
@click.option("--truth", required=True, help="CSV of file_key,label rows: s3://bucket/key.csv or a local file.")
@click.option("--labels", "order", help="Order of the classes in the matrix, comma-separated (default: alphabetical).")
@click.option("--json", "as_json", is_flag=True, help="Print the matrix and the figures as JSON.")
@click.pass_obj
@handled
def evaluate(obj: Context, job_id: str, truth: str, order: str | None, as_json: bool) -> None:
    """Compare a job's labels with known ones: confusion matrix, per-class precision and recall, accuracy.

    A file's label is the first its bot gave; keys may be full S3 keys or relative to the job's
    input prefix. A file that ended without a label counts as predicted (none).

    \b
    Example:
      spotbot evaluate bug_priority-20261201-120000-ab12 --truth s3://spotbot-demo/bugs/labels.csv \\
          --labels Optional,Trivial,Minor,Major,Critical,Blocker
    """
    from ..evaluation import NONE, evaluate as run_evaluation, read_truth

    obj.store.jobs.get(job_id)  # an unknown job is the first thing to say
    result = run_evaluation(obj.store, job_id, read_truth(truth, obj.storage),
                            order=[label.strip() for label in order.split(",")] if order else None, source=truth)
    if as_json:
        emit_json(result.as_dict())
        return
    accuracy = "-" if result.accuracy is None else f"{result.accuracy:.3f}"
    click.echo(f"job {job_id}: {result.evaluated} file(s) with a known label, accuracy {accuracy} "
               f"({result.correct}/{result.evaluated}); {result.unpredicted} without a label"
               + (f"; {result.files_without_truth} file(s) of the job not in the truth" if result.files_without_truth else ""))
    click.echo("")
    click.echo("confusion matrix (rows: truth, columns: predicted)")
    columns = [*result.labels, NONE]
    rows = [[label, *(result.matrix[label][column] for column in columns)] for label in result.labels]
    for line in table(["truth \\ predicted", *columns], rows, right=set(range(1, len(columns) + 1))):
        click.echo(line)
    click.echo("")
    rows = [[label, _figure(c["precision"]), _figure(c["recall"]), _figure(c["f1"]), c["support"]]
            for label, c in result.per_class.items()]
    for line in table(["class", "precision", "recall", "f1", "support"], rows, right={1, 2, 3, 4}):
        click.echo(line)


def _figure(value: float | None) -> str | None:
    return None if value is None else f"{value:.3f}"
