"""Redis faults against servers of our own: stalled, killed and restarted, password/ACL, unreachable."""

from __future__ import annotations

import asyncio
import os
import signal

import orjson
import pytest
import redis.asyncio as aioredis
from publish_helpers import Subscriber, n_of, sample, wait_until

from p9cli.errors import EXIT_UNAVAILABLE, ServiceUnavailable
from p9cli.publish import FUSION_DATA, MARKET_CONTEXT, Publisher
from p9cli.publish.embedded import free_port


async def _get(url: str, key: str) -> dict | None:
    client = aioredis.Redis.from_url(url)
    try:
        raw = await client.get(key)
    finally:
        await client.aclose()
    return orjson.loads(raw) if raw else None


async def test_stalled_redis_keeps_only_the_newest_payload_per_channel(private_redis):
    server = private_redis()
    chans = [sample(FUSION_DATA, ex, "btcusdt")[0] for ex in ("binance", "bybit", "okx")]
    lines: list[str] = []
    async with Subscriber(server.url, chans) as sub, Publisher(
        server.url, flush_interval_s=0.05, flush_timeout_s=0.5, log=lines.append
    ) as pub:
        for i, ch in enumerate(chans):
            pub.offer(ch, sample(FUSION_DATA, ch.split(":")[1], "btcusdt", -1 - i)[1])
        await sub.wait_for(lambda: all(sub.messages[c] for c in chans))
        os.kill(server.pid, signal.SIGSTOP)  # Redis stalls: the flush in flight never gets its replies
        try:
            for n in range(2000):
                for ch in chans:
                    pub.offer(ch, sample(FUSION_DATA, ch.split(":")[1], "btcusdt", n)[1])
                assert pub.pending_count() <= len(chans)  # never a backlog
                assert pub.held_count() <= 2 * len(chans)
                if n % 200 == 0:
                    await asyncio.sleep(0.05)
            await wait_until(lambda: pub.in_outage, 10, "the stall to be noticed")
            await asyncio.sleep(0.3)
            assert pub.pending_count() == len(chans)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        await sub.wait_for(lambda: all(n_of(sub.messages[c][-1]) == 1999 for c in chans), 15)
        await wait_until(lambda: not pub.in_outage, 10, "the publisher to come back")
    for ch in chans:
        after_stall = [n_of(m) for m in sub.messages[ch] if n_of(m) >= 0]
        # a flush stuck at the stall may carry one early value; the rest was coalesced away
        assert after_stall[-1] == 1999 and len(after_stall) <= 2, after_stall
        seqs = [m["seq"] for m in sub.messages[ch]]
        assert seqs == sorted(set(seqs))  # increasing (a gap marks the lost flush)
        assert n_of(await _get(server.url, ch)) == 1999
    assert pub.stats.outages == 1
    assert len([ln for ln in lines if "reconnecting" in ln]) == 1, lines
    assert len([ln for ln in lines if "is back after" in ln]) == 1, lines


async def test_redis_restarted_mid_run_resumes_with_one_outage_and_bounded_memory(private_redis):
    server = private_redis()
    port = server.port
    channels = [sample(k, ex, s)[0] for k in (FUSION_DATA, MARKET_CONTEXT) for ex in ("binance", "okx")
                for s in ("btcusdt", "ethusdt", "solusdt")]
    lines: list[str] = []
    stop = asyncio.Event()
    produced = 0

    async def produce(pub: Publisher) -> None:
        nonlocal produced
        while not stop.is_set():
            for ch in channels:
                kind, ex, sym = ch.split(":")
                pub.offer(ch, sample(kind, ex, sym, produced)[1])
            produced += 1
            assert pub.pending_count() <= len(channels)
            await asyncio.sleep(0.002)

    async with Publisher(server.url, flush_interval_s=0.05, flush_timeout_s=0.5, backoff_cap_s=0.5,
                         log=lines.append) as pub:
        task = asyncio.create_task(produce(pub))
        await wait_until(lambda: len(pub.stats.published) == len(channels), 10, "first publishes")
        server.proc.kill()  # the server dies: no goodbye, the socket just closes
        server.proc.wait()
        await wait_until(lambda: pub.in_outage, 10, "the outage to be noticed")
        before = produced
        await asyncio.sleep(1.0)  # the producer keeps going at full speed through the outage
        assert produced - before > 50
        assert pub.pending_count() == len(channels)
        restarted = private_redis(port=port)  # same port, empty (no persistence)
        await wait_until(lambda: not pub.in_outage, 15, "the publisher to reconnect")
        mark = produced
        await wait_until(lambda: pub.pending_count() == 0 or produced > mark + 20, 5)
        await asyncio.sleep(0.3)
        stop.set()
        await task
        for ch in channels:
            twin = await _get(restarted.url, ch)
            assert twin is not None and n_of(twin) >= mark, ch  # publishing resumed with new data
    assert pub.stats.outages == 1 and pub.stats.outage_ms > 0
    starts = [ln for ln in lines if "reconnecting" in ln]
    ends = [ln for ln in lines if "is back after" in ln]
    assert len(starts) == 1 and len(ends) == 1, lines  # one line each, however many messages
    assert len(lines) == 2, lines


async def test_password_and_acl_urls_work_and_no_secret_is_ever_printed(private_redis, capsys):
    admin_pw, user_pw = "adm1n-Secret!9", "al1ce/Secret:7"
    server = private_redis(extra_args=("--requirepass", admin_pw,
                                       "--user", "alice", "on", f">{user_pw}", "~*", "&*", "+@all"))
    enc_user_pw = user_pw.replace("/", "%2F").replace(":", "%3A")
    lines: list[str] = []
    urls = {
        "password": f"redis://:{admin_pw}@127.0.0.1:{server.port}/0",
        "acl": f"redis://alice:{enc_user_pw}@127.0.0.1:{server.port}/0",
    }
    for what, url in urls.items():
        ch, payload = sample(FUSION_DATA, "binance", "btcusdt", 7)
        async with Publisher(url, flush_interval_s=0.05, log=lines.append) as pub:
            pub.offer(ch, payload)
            await wait_until(lambda p=pub, c=ch: p.stats.published.get(c) == 1, 10, f"{what} publish")
            assert admin_pw not in pub.safe_url and "al1ce" not in pub.safe_url
            assert admin_pw not in repr(pub.redis) and user_pw not in repr(pub.redis)
        assert n_of(await _get(url, ch)) == 7

    # wrong password / wrong user: one clear line, exit code 69, no secret in it
    for url in (f"redis://:wrong-{admin_pw}@127.0.0.1:{server.port}/0",
                f"redis://alice:nope-{enc_user_pw}@127.0.0.1:{server.port}/0",
                f"redis://127.0.0.1:{server.port}/0"):
        with pytest.raises(ServiceUnavailable) as info:
            await Publisher(url, log=lines.append).start()
        msg = str(info.value)
        assert info.value.exit_code == EXIT_UNAVAILABLE == 69
        assert "\n" not in msg and "authentication" in msg and "P9_REDIS_URL" in msg, msg
        lines.append(msg)

    # an outage on an authenticated connection: the lines name the server, never the password
    url = urls["acl"]
    async with Publisher(url, flush_interval_s=0.05, flush_timeout_s=0.5, log=lines.append) as pub:
        server.proc.kill()
        server.proc.wait()
        pub.offer(*sample(FUSION_DATA, "okx", "btcusdt"))
        await wait_until(lambda: pub.in_outage, 10, "outage")
    out = capsys.readouterr()
    printed = "\n".join(lines) + out.out + out.err
    assert any("reconnecting" in ln for ln in lines)
    for secret in (admin_pw, user_pw, enc_user_pw, "wrong-", "nope-"):
        assert secret not in printed, (secret, printed)
    assert "alice:***@" in printed


async def test_configured_url_that_does_not_answer_is_one_clear_line():
    port = free_port()
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    with pytest.raises(ServiceUnavailable) as info:
        await Publisher(url, connect_timeout_s=1).start()
    msg = str(info.value)
    assert msg.startswith(f"redis at redis://:***@127.0.0.1:{port}/0 is not reachable (")
    assert "hunter2" not in msg and "\n" not in msg and info.value.exit_code == 69


async def test_rediss_url_against_a_plain_server_is_one_clear_line(private_redis):
    server = private_redis()
    url = f"rediss://bob:t0ps3cret@127.0.0.1:{server.port}/0"
    with pytest.raises(ServiceUnavailable) as info:
        await Publisher(url, connect_timeout_s=2).start()
    msg = str(info.value)
    assert "t0ps3cret" not in msg and "\n" not in msg and f"rediss://bob:***@127.0.0.1:{server.port}/0" in msg


async def test_rediss_url_with_password_publishes_over_tls(private_redis, tmp_path):
    """A TLS server of our own (self-signed certificate made with openssl); the CA goes in the URL."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    tls_port = free_port()
    try:
        server = private_redis(extra_args=(
            "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no", "--requirepass", "tls-Secret-1"))
    except Exception as exc:  # noqa: BLE001 - a server binary built without TLS
        pytest.skip(f"this Redis server has no TLS support: {exc}")
    url = f"rediss://:tls-Secret-1@127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}"
    lines: list[str] = []
    ch, payload = sample(FUSION_DATA, "okx", "btcusdt", 3)
    async with Publisher(url, flush_interval_s=0.05, log=lines.append) as pub:
        pub.offer(ch, payload)
        await wait_until(lambda: pub.stats.published.get(ch) == 1, 10, "TLS publish")
    plain = f"redis://:tls-Secret-1@127.0.0.1:{server.port}/0"
    assert n_of(await _get(plain, ch)) == 3  # the same server, read over its plain port
    assert pub.safe_url.startswith("rediss://:***@127.0.0.1:") and not lines


#: the least a p9 user needs (docs/redis.md)
P9_ACL = ("on", ">pub-Secret-5", "resetkeys", "~market_context:*", "~fusion_data:*", "~precision9_context:*",
          "~structure:*", "~precision9_fusion_status*", "resetchannels", "&market_context:*", "&fusion_data:*",
          "&precision9_context:*", "&structure:*", "&precision9_fusion_status*", "-@all", "+ping", "+auth",
          "+hello", "+select", "+client|setname", "+set", "+get", "+mget", "+del", "+publish", "+scan",
          "+evalsha", "+eval", "+script|load")


async def test_the_documented_least_privilege_acl_is_enough_and_a_refused_write_is_one_line(private_redis):
    from p9cli.publish import STATUS, WorkerInfo, publishing

    # "narrow" may not publish on fusion_data channels: every such PUBLISH is refused (NOPERM)
    narrow = tuple(a for a in P9_ACL if a != "&fusion_data:*")
    server = private_redis(extra_args=("--user", "p9", *P9_ACL, "--user", "narrow", *narrow))
    for user, expect_refusals in (("p9", False), ("narrow", True)):
        url = f"redis://{user}:pub-Secret-5@127.0.0.1:{server.port}/3"
        lines: list[str] = []
        worker = WorkerInfo.create(f"w-{user}", ("binance",), (f"{user}usdt",))
        async with publishing(url, worker, status_interval_s=0.1, flush_interval_s=0.05, log=lines.append) as pub:
            for n in range(5):
                for kind in (FUSION_DATA, MARKET_CONTEXT):
                    pub.offer(*sample(kind, "binance", f"{user}usdt", n))
                await asyncio.sleep(0.06)
            await wait_until(lambda p=pub: p.stats.published.get(STATUS, 0) >= 2, 10, "status")
        fd, mc = (sample(k, "binance", f"{user}usdt")[0] for k in (FUSION_DATA, MARKET_CONTEXT))
        assert pub.stats.published.get(mc, 0) >= 1 and pub.stats.outages == 0
        if expect_refusals:
            assert fd not in pub.stats.published and pub.stats.errors >= 1
            assert len(lines) == 1 and "refused a write to fusion_data:binance:narrowusdt" in lines[0], lines
            assert "no permissions" in lines[0] and "pub-Secret-5" not in lines[0]
        else:
            assert pub.stats.published.get(fd, 0) >= 1 and pub.stats.errors == 0 and not lines, lines
