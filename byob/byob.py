"""Bring Your Own Bot: register a bot from bot_config.json (the seed's flow).

    python byob.py [path/to/bot_config.json]

Creates the bot, or updates it when a bot of that name exists, then prints the stored
configuration read back from Elasticsearch. `es_url` in the file is honoured (with or
without https://); otherwise SPOTBOT_ES_URL or the embedded stack is used.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from framework.bot_config import read_bot_config
from framework.errors import SpotbotError
from framework.settings import Settings
from framework.store import Store


def es_url_of(value: str) -> str:
    """The seed writes es_url without a scheme (an AWS domain endpoint): that means https."""
    if not value:
        return ""
    return value if "://" in value else f"https://{value}"


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    path = Path(argv[0]) if argv else Path(__file__).resolve().parent / "bot_config.json"
    try:
        config = read_bot_config(path)
        settings = Settings.from_env(es_url=es_url_of(config.es_url) or None)
        stored, created = Store.from_settings(settings).bots.register(config)
    except SpotbotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"{'created' if created else 'updated'} bot {stored.name}", file=sys.stderr)
    print(json.dumps(stored.model_dump(), indent=4, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
