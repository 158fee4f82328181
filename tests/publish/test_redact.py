"""No secret of a Redis URL survives redaction."""

from __future__ import annotations

import pytest

from p9cli.publish.redact import redact, redact_url, url_secrets


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw1@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://alice:pw%2F2@h:6379/1", "redis://alice:***@h:6379/1"),
        ("rediss://bob:s3@h.example:6380/0?ssl_ca_certs=/etc/ca.pem", "rediss://bob:***@h.example:6380/0?ssl_ca_certs=/etc/ca.pem"),
        ("redis://h:6379/0?password=pw3", "redis://h:6379/0?password=***"),
        ("redis://lonely@h:6379/0", "redis://***@h:6379/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_text_removes_raw_and_encoded_secrets():
    secrets = url_secrets("redis://alice:p%2Fw%3A1@h:1/0?password=zz9")
    text = "failed with p/w:1 and p%2Fw%3A1 and zz9"
    assert redact(text, secrets) == "failed with *** and *** and ***"
