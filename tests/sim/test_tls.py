"""``p9 sim --tls``: https:// and wss:// on the exchange ports (plain http/ws still answer
there), a CA generated at start and reused on restart, and the banner says how to trust it."""

from __future__ import annotations

import json
import os
import signal
import ssl
import stat

import httpx
import websockets
from simutil import FROZEN_SPEED

from p9cli.sim.testing import free_port_base, sim_subprocess


async def test_https_and_wss_on_the_same_ports(sim_factory, tmp_path):
    handle = sim_factory(speed=FROZEN_SPEED, tls=True, tls_dir=tmp_path)
    files = handle.tls
    assert files.generated and files.ca.read_bytes() in files.bundle.read_bytes()
    assert stat.S_IMODE(os.stat(files.key).st_mode) == 0o600
    ctx = ssl.create_default_context(cafile=str(files.ca))
    async with httpx.AsyncClient(verify=ctx) as client:
        secure = await client.get(handle.https_url("okx") + "/api/v5/public/time")
        plain = await client.get(handle.rest_url("okx") + "/api/v5/public/time")
    assert secure.status_code == plain.status_code == 200 and secure.json()["code"] == "0"
    async with websockets.connect(handle.wss_url("binance") + "/ws", ssl=ctx) as ws:
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        assert json.loads(await ws.recv()) == {"result": [], "id": 1}
    async with websockets.connect(handle.ws_url("bybit") + "/v5/public/spot") as ws:
        await ws.send(json.dumps({"op": "ping"}))
        assert json.loads(await ws.recv())["ret_msg"] == "pong"
    # an untrusted client is refused (the certificate is really checked)
    async with httpx.AsyncClient() as client:
        try:
            await client.get(handle.https_url("bybit") + "/v5/market/time")
        except httpx.ConnectError as exc:
            assert "CERTIFICATE_VERIFY_FAILED" in str(exc)
        else:
            raise AssertionError("an unknown CA must not be trusted")
    # a restart reuses the files: clients keep their trust
    again = sim_factory(speed=FROZEN_SPEED, tls=True, tls_dir=tmp_path)
    assert not again.tls.generated and again.tls.ca.read_bytes() == files.ca.read_bytes()


def test_cli_banner_tells_how_to_trust_the_ca(tmp_path):
    base = free_port_base()
    proc = sim_subprocess(base, ["--tls", "--tls-dir", str(tmp_path), "--speed", "1e-9"])
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C"):
                break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    text = "\n".join(lines)
    assert proc.returncode == 0, text
    assert f"export SSL_CERT_FILE={tmp_path / 'bundle.pem'}" in text
    assert f"export REQUESTS_CA_BUNDLE={tmp_path / 'bundle.pem'}" in text
    assert f"wss://127.0.0.1:{base + 3}" in text and f"https://127.0.0.1:{base + 1}" in text
    assert (tmp_path / "ca.pem").exists()


def test_unusable_tls_dir_is_one_line_and_exit_1(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = sim_subprocess(free_port_base(), ["--tls", "--tls-dir", str(blocker / "tls")])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert err.strip().count("\n") == 0 and "--tls: cannot prepare the certificate" in err
    assert "Traceback" not in err + out
