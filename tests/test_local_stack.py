"""The embedded stack's own promises: a restarted server answers where its clients already look."""

from __future__ import annotations

from urllib.parse import urlparse

from framework.local import _ephemeral_low


def test_servers_listen_below_the_ephemeral_range_and_a_restart_keeps_the_address(local_stack):
    before = local_stack.up()
    low = _ephemeral_low()
    s3_port = urlparse(before["s3_endpoint_url"]).port
    base = local_stack.state()["s3_base_port"]
    # an outgoing connection never takes one of these ports while the server is down
    assert urlparse(before["es_url"]).port < low
    assert base + 7 < low and base + 10007 < low and s3_port == base + 3

    local_stack.stop_s3()
    assert not local_stack.status()["s3_running"]
    after = local_stack.up()
    assert after["s3_running"] and after["s3_endpoint_url"] == before["s3_endpoint_url"]
