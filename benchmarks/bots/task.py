"""Benchmark bot: the same per-file work as the raw floor (S3 GET, endpoint call, S3 PUT of the answer)."""

import json

from framework import bot


def main_task(file_name):
    text = bot.read_input(file_name).decode()
    return json.loads(bot.invoke_endpoint({"text": text}))
