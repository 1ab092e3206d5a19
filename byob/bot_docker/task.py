"""Your bot: fill in main_task. The framework finds the files, calls this once per file,
writes what you return to s3://<output>/<file key>.json and records the file's status.

    from framework import bot
    bot.read_input(file_name)          -> the file's bytes
    bot.invoke_endpoint(body, content_type="application/json", endpoint_name=None) -> response bytes
    bot.write_output(name, data)       -> s3:// URI of an extra output object

Return a dict (written as JSON; a "labels" list in it is indexed and searchable), a str or
bytes. Raise to fail the attempt: the file is retried, then marked ERROR with your message.
"""

import hashlib
import json

from framework import bot


def main_task(file_name):
    data = bot.read_input(file_name)
    answer = json.loads(bot.invoke_endpoint({"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
    return {"file": file_name, "endpoint_said": answer, "labels": [answer["kind"]]}
