"""Train the bug_priority model: fastText supervised classification, as SageMaker's BlazingText does.

Reads `__label__N text` lines (N = 1 Optional ... 6 Blocker; # starts a comment), holds out a
stratified validation split, trains on the rest, reports the validation accuracy, and writes
model.bin (a fastText model, the file a BlazingText model.tar.gz holds), metrics.json and
model.tar.gz (both packed: the bot's model_s3_path) to --out.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import random
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from priority_text import PRIORITIES, normalize  # noqa: E402  (a sibling, also when run as a script)

DEFAULT_DATA = HERE / "data" / "bug_reports.txt"
MODEL_FILE = "model.bin"
EXAMPLES = """
examples:
  python bots/bug_priority/train.py                                    # train on the shipped reports, into ./bug_priority_model
  python bots/bug_priority/train.py --data my_reports.txt --epoch 25 --out /tmp/model
  python bots/bug_priority/train.py --upload s3://spotbot-models/bug_priority/model.tar.gz \\
      --holdout s3://spotbot-demo/bugs/                               # also: the validation reports and their labels.csv
"""


class DataError(ValueError):
    """The training file is not `__label__N text` lines."""


def read_examples(path: Path) -> list[tuple[str, str]]:
    """(label, normalized text) per report; the error names the file and the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    examples = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        label, _, text = line.partition(" ")
        if label not in PRIORITIES:
            raise DataError(f"{path} line {number}: starts with {label[:40]!r}, not one of {', '.join(PRIORITIES)}")
        words = normalize(text)
        if not words:
            raise DataError(f"{path} line {number}: {label} has no text")
        examples.append((label, words))
    if len({label for label, _ in examples}) < 2:
        raise DataError(f"{path}: a classifier needs reports of at least two labels")
    return examples


def split(examples: list[tuple[str, str]], fraction: float, seed: int) -> tuple[list, list]:
    """A stratified split: `fraction` of each label's reports (at least one, when it has two) held out."""
    rng = random.Random(seed)
    train, held = [], []
    by_label: dict[str, list] = {}
    for example in examples:
        by_label.setdefault(example[0], []).append(example)
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        count = round(len(group) * fraction)
        if fraction > 0 and len(group) >= 2:
            count = max(1, min(count, len(group) - 1))
        held += group[:count]
        train += group[count:]
    rng.shuffle(train)
    return train, held


def train(examples: list[tuple[str, str]], *, epoch: int, lr: float, word_ngrams: int, dim: int, bucket: int, seed: int):
    import fasttext

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "train.txt"
        path.write_text("".join(f"{label} {text}\n" for label, text in examples), encoding="utf-8")
        # one thread: with several, fastText's updates race and two runs give different models
        return fasttext.train_supervised(input=str(path), epoch=epoch, lr=lr, wordNgrams=word_ngrams, dim=dim,
                                         bucket=bucket, minCount=1, loss="softmax", thread=1, seed=seed, verbose=0)


def measure(model, examples: list[tuple[str, str]]) -> dict:
    """Accuracy, per-label precision/recall and the confusion counts of the model on these examples."""
    if not examples:
        return {"examples": 0, "accuracy": None}
    predicted, _ = model.predict([text for _, text in examples], k=1)
    pairs = [(truth, guess[0] if guess else "") for (truth, _), guess in zip(examples, predicted)]
    correct = sum(truth == guess for truth, guess in pairs)
    per_label = {}
    for label in PRIORITIES:
        support = sum(truth == label for truth, _ in pairs)
        as_label = sum(guess == label for _, guess in pairs)
        hits = sum(truth == guess == label for truth, guess in pairs)
        per_label[PRIORITIES[label]] = {"support": support, "precision": round(hits / as_label, 4) if as_label else None,
                                        "recall": round(hits / support, 4) if support else None}
    confusion = Counter(f"{PRIORITIES[truth]}->{PRIORITIES.get(guess, guess)}" for truth, guess in pairs)
    return {"examples": len(pairs), "correct": correct, "accuracy": round(correct / len(pairs), 4),
            "per_label": per_label, "confusion": dict(sorted(confusion.items()))}


def pack(out: Path) -> Path:
    archive = out / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in (MODEL_FILE, "metrics.json"):
            tar.add(out / name, arcname=name)
    return archive


def upload(archive: Path, uri: str) -> str:
    """Put the archive at an s3:// URI with spotbot's settings (the embedded stack's S3 when it is up)."""
    from framework.settings import Settings
    from framework.storage import Storage, parse_uri

    location = parse_uri(uri, field="--upload")
    storage = Storage(Settings.from_env())
    storage.ensure_bucket(location.bucket)
    return storage.write(location.bucket, location.prefix, archive.read_bytes(), "application/gzip")


def write_holdout(held: list[tuple[str, str]], raw: dict[str, str], uri: str) -> tuple[str, str]:
    """The held-out reports as <uri>reports/NNN.txt and their priorities as <uri>labels.csv (for spotbot evaluate)."""
    from framework.settings import Settings
    from framework.storage import Storage, parse_uri

    location = parse_uri(uri, field="--holdout")
    storage = Storage(Settings.from_env())
    storage.ensure_bucket(location.bucket)
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["file_key", "label"])
    for number, (label, text) in enumerate(held, start=1):
        key = location.key(f"reports/{number:03d}.txt")
        storage.write(location.bucket, key, raw[text].encode(), "text/plain; charset=utf-8")
        writer.writerow([key, PRIORITIES[label]])
    labels_key = location.key("labels.csv")
    storage.write(location.bucket, labels_key, rows.getvalue().encode(), "text/csv")
    return location.key("reports/"), labels_key


def raw_texts(path: Path) -> dict[str, str]:
    """normalized text -> the report as written (the held-out files are the reports, not their normal form)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        label, _, text = line.strip().partition(" ")
        if label in PRIORITIES:
            out.setdefault(normalize(text), text)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled reports (default: the shipped set)")
    parser.add_argument("--out", type=Path, default=Path("bug_priority_model"), help="where the model goes")
    parser.add_argument("--validation", type=float, default=0.2, help="fraction of each label held out (default 0.2)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the split and of training (default 7)")
    parser.add_argument("--epoch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--word-ngrams", type=int, default=2, help="word n-grams as features (default 2: bigrams)")
    parser.add_argument("--dim", type=int, default=32, help="embedding size (default 32)")
    parser.add_argument("--bucket", type=int, default=50000, help="hash buckets for the n-grams (default 50000)")
    parser.add_argument("--upload", metavar="S3_URI", help="also put model.tar.gz there (the bot's model_s3_path)")
    parser.add_argument("--holdout", metavar="S3_PREFIX", help="also write the validation reports and labels.csv there")
    parser.add_argument("--json", action="store_true", help="print metrics.json instead of a summary")
    args = parser.parse_args(argv)
    if not 0 <= args.validation < 1:
        parser.error("--validation must be at least 0 and below 1")
    for name in ("epoch", "word_ngrams", "dim", "bucket"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    try:
        examples = read_examples(args.data)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    train_set, held = split(examples, args.validation, args.seed)
    started = time.monotonic()
    model = train(train_set, epoch=args.epoch, lr=args.lr, word_ngrams=args.word_ngrams, dim=args.dim,
                  bucket=args.bucket, seed=args.seed)
    seconds = time.monotonic() - started
    metrics = {
        "data": str(args.data), "data_sha256": hashlib.sha256(args.data.read_bytes()).hexdigest(),
        "labels": PRIORITIES, "train_examples": len(train_set), "training_seconds": round(seconds, 2),
        "params": {"epoch": args.epoch, "lr": args.lr, "wordNgrams": args.word_ngrams, "dim": args.dim,
                   "bucket": args.bucket, "seed": args.seed, "loss": "softmax", "validation": args.validation},
        "train": measure(model, train_set), "validation": measure(model, held),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_model(str(args.out / MODEL_FILE))
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    archive = pack(args.out)
    from framework.errors import SpotbotError

    try:
        if args.upload:
            metrics["uploaded"] = upload(archive, args.upload)
        if args.holdout:
            reports, labels = write_holdout(held, raw_texts(args.data), args.holdout)
            metrics["holdout"] = {"reports": reports, "labels": labels}
    except SpotbotError as exc:  # a bad URI, S3 away: one line, the model is on disk all the same
        print(f"error: {exc} (the model is in {archive})", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    validation = metrics["validation"]
    print(f"trained on {len(train_set)} reports in {seconds:.1f}s; training accuracy {metrics['train']['accuracy']}")
    if validation["examples"]:
        print(f"validation accuracy {validation['accuracy']} ({validation['correct']}/{validation['examples']} held-out reports)")
    print(f"model: {archive} ({archive.stat().st_size // 1024} KiB)")
    for name in ("uploaded", "holdout"):
        if name in metrics:
            print(f"{name}: {metrics[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
