"""docs/deployment.md's nginx, HAProxy and Caddy configurations, taken from the Markdown as they
stand (addresses and TLS swapped for loopback ones), run in front of a real pushwire, and
checked by `pushwire doctor`; and nginx as it is without them. Skipped where nginx or
haproxy or caddy is not installed (`apt-get install nginx-light haproxy caddy`)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from tests.doctor_run import ALL_PASS, doctor, statuses
from tests.servers import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "deployment.md"


def _block(language: str) -> str:
    """The docs' first code block in `language`."""
    match = re.search(rf"```{language}\n(.*?)```", DOCS.read_text(), re.S)
    assert match is not None, language
    return match[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _nginx_conf(folder: Path, front: int, server: ServerProcess, http_block: str) -> Path:
    paths = "\n".join(
        f"{name} {folder / name};"
        for name in (
            "client_body_temp_path",
            "proxy_temp_path",
            "fastcgi_temp_path",
            "uwsgi_temp_path",
            "scgi_temp_path",
        )
    )
    conf = folder / "nginx.conf"
    conf.write_text(
        f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'};\n"
        f"events {{}}\nhttp {{\n{paths}\n{http_block}\n}}\n"
    )
    return conf


def _docs_nginx(folder: Path, front: int, server: ServerProcess) -> str:
    block = _block("nginx")
    block = block.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{server.port};")
    block = block.replace("listen 443 ssl;", f"listen 127.0.0.1:{front};")
    block = block.replace("/var/log/nginx/pushwire.log", str(folder / "access.log"))
    return "\n".join(line for line in block.splitlines() if "ssl_certificate" not in line)


@contextmanager
def _running(command: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    """`command` in the foreground until the end of the block; ready once `port` accepts."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    assert process.stdout is not None
                    raise RuntimeError(process.stdout.read().decode()) from None
                time.sleep(0.05)  # polling a port the child has not opened yet
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _nginx(conf: Path, port: int) -> AbstractContextManager[None]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed")
    return _running([nginx, "-c", str(conf), "-g", "daemon off;"], port)


async def test_the_docs_nginx_configuration_passes_every_check(
    server: ServerProcess, tmp_path: Path
) -> None:
    front = _free_port()
    conf = _nginx_conf(tmp_path, front, server, _docs_nginx(tmp_path, front, server))
    with _nginx(conf, front):
        status, lines, output = await doctor(f"http://127.0.0.1:{front}")
    assert statuses(lines) == ALL_PASS, output
    assert status == 0
    # The access log holds no query string: the sse transport's hello (and a token) is in it.
    log = (tmp_path / "access.log").read_text()
    assert "/echo/sse " in log
    assert "hello" not in log


async def test_nginx_without_the_upgrade_settings_fails_websocket(
    server: ServerProcess, tmp_path: Path
) -> None:
    front = _free_port()
    bare = (
        f"server {{ listen 127.0.0.1:{front};\n"
        f"  location / {{ proxy_pass http://127.0.0.1:{server.port}; }} }}"
    )
    conf = _nginx_conf(tmp_path, front, server, bare)
    with _nginx(conf, front):
        status, lines, output = await doctor(f"http://127.0.0.1:{front}")
    assert status == 1, output
    assert lines["websocket"].startswith("FAIL upgrade to /echo refused: HTTP 4"), output
    assert "fix: nginx: proxy_http_version 1.1;" in output


async def test_nginx_compressing_the_streams_fails_sse_and_stream(
    server: ServerProcess, tmp_path: Path
) -> None:
    # Buffering on (X-Accel-Buffering ignored) and gzip for the streams: gzip holds what it
    # compresses until its buffer fills. The doctor asks for gzip, as a browser does. (In nginx
    # 1.22 either one alone still passed each event on at once.)
    front = _free_port()
    block = (
        _docs_nginx(tmp_path, front, server)
        .replace("gzip off;", "gzip on; gzip_types text/event-stream application/x-ndjson;")
        .replace(
            "proxy_buffering off;", "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;"
        )
    )
    conf = _nginx_conf(tmp_path, front, server, block)
    with _nginx(conf, front):
        status, lines, output = await doctor(f"http://127.0.0.1:{front}")
    assert status == 1, output
    assert statuses(lines) == {**ALL_PASS, "sse": "FAIL", "stream": "FAIL"}, output
    assert "gzip off" in output


async def test_the_docs_haproxy_configuration_passes_every_check(
    server: ServerProcess, tmp_path: Path
) -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.skip("haproxy is not installed")
    front = _free_port()
    block = _block("haproxy")
    block = re.sub(r"bind :443 ssl crt \S+ alpn http/1.1", f"bind 127.0.0.1:{front}", block)
    block = block.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(block)
    with _running([haproxy, "-db", "-f", str(conf)], front):
        status, lines, output = await doctor(f"http://127.0.0.1:{front}")
    assert statuses(lines) == ALL_PASS, output
    assert status == 0


async def test_the_docs_caddy_configuration_passes_every_check(
    server: ServerProcess, tmp_path: Path
) -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed")
    front = _free_port()
    # Plain HTTP on a loopback port instead of the public name (whose certificate Caddy
    # would fetch), no admin endpoint; the site block as the docs give it.
    block = _block("caddy").replace("rt.example.com {", f"http://127.0.0.1:{front} {{")
    block = block.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    conf = tmp_path / "Caddyfile"
    conf.write_text("{\n\tadmin off\n\tauto_https off\n}\n" + block)
    command = [caddy, "run", "--config", str(conf), "--adapter", "caddyfile"]
    with _running(command, front, {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)}):
        status, lines, output = await doctor(f"http://127.0.0.1:{front}")
    assert statuses(lines) == ALL_PASS, output
    assert status == 0
