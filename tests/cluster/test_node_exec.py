"""`kubectl exec` and `kubectl port-forward` on the local node: the API server reaches the
node's kubelet API over TLS and speaks SPDY/3.1 to it, whether kubectl speaks WebSockets to the
API server (the default: the API server translates) or SPDY itself (passed through)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import struct
import subprocess
import termios
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.kube import Kubectl, eventually
from tests.support.ports import free_port

PYTHON = "python:3.11"  # recorded, not pulled: the node runs the project's environment
SLEEP = ["python", "-c", "import time; time.sleep(3600)"]
WEB = "mkdir -p /tmp/www && echo hello-forward > /tmp/www/index.txt && cd /tmp/www && exec python -m http.server 8000"  # noqa: E501

EXEC_MODES = {
    "websocket": {},  # kubectl's default: WebSockets to the API server, SPDY to the node
    "spdy": {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"},
}
FORWARD_MODES = {
    "websocket": {},  # SPDY tunnelled in a WebSocket to the API server
    "spdy": {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"},
}


def _pod(name: str, *containers: dict[str, Any], restart: str = "Never") -> dict[str, Any]:
    spec = {
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 1,
        "containers": [{"image": PYTHON, **c} for c in containers],
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _running(k: Kubectl, name: str, container: str = "main") -> None:
    def up() -> bool:
        statuses = k.json("get", "pod", name)["status"].get("containerStatuses") or []
        return any(s["name"] == container and "running" in s.get("state", {}) for s in statuses)

    eventually(up, timeout=90, what=f"container {container} of {name} running")


def _kubectl(
    k: Kubectl, *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [k.binary, f"--kubeconfig={k.kubeconfig}", f"--namespace={k.namespace}", *args]
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


@pytest.fixture(params=list(EXEC_MODES))
def exec_env(request: pytest.FixtureRequest) -> dict[str, str]:
    return EXEC_MODES[request.param]


def test_exec_gives_stdout_stderr_and_the_exit_code(k: Kubectl, exec_env: dict[str, str]) -> None:
    k.apply(_pod("shell", {"name": "main", "command": SLEEP, "env": [{"name": "X", "value": "7"}]}))
    _running(k, "shell")
    script = 'echo out $X; echo err >&2; echo "$(hostname) $(pwd)"; exit 3'
    result = _kubectl(k, "exec", "shell", "--", "sh", "-c", script, env=exec_env)
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines() == ["out 7", "shell /"], "in the container, its env"
    assert "err" in result.stderr.splitlines()
    assert "command terminated with exit code 3" in result.stderr

    ok = _kubectl(k, "exec", "shell", "-c", "main", "--", "true", env=exec_env)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")


def test_exec_with_stdin_echoes_it(k: Kubectl, exec_env: dict[str, str]) -> None:
    k.apply(_pod("cat", {"name": "main", "command": SLEEP}))
    _running(k, "cat")
    text = "".join(f"line {i}\n" for i in range(2000))  # ~20 KB, several frames
    result = _kubectl(k, "exec", "-i", "cat", "--", "cat", env=exec_env, stdin=text)
    assert result.returncode == 0, result.stderr
    assert result.stdout == text
    counted = _kubectl(k, "exec", "-i", "cat", "--", "wc", "-l", env=exec_env, stdin=text)
    assert counted.stdout.strip() == "2000"


def _on_terminal(argv: list[str], env: dict[str, str], rows: int, cols: int) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as its stdin, stdout and stderr (of that size)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    process = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, **env},
        start_new_session=True,
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError as error:  # EIO: every holder of the terminal closed it
                if error.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            output += chunk
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return code, output.decode(errors="replace")


def test_exec_with_a_tty(k: Kubectl, exec_env: dict[str, str]) -> None:
    k.apply(_pod("term", {"name": "main", "command": SLEEP}))
    _running(k, "term")
    script = (
        "import os, sys; print('tty', os.isatty(0), os.isatty(1), os.get_terminal_size(0)); "
        "print('term', os.environ.get('TERM')); print('err', file=sys.stderr); sys.exit(4)"
    )
    argv = [k.binary, f"--kubeconfig={k.kubeconfig}", f"--namespace={k.namespace}"]
    code, output = _on_terminal(
        [*argv, "exec", "-it", "term", "--", "python", "-c", script], exec_env, 33, 101
    )
    assert code == 4, output
    assert "tty True True os.terminal_size(columns=101, lines=33)" in output
    assert "term xterm" in output
    assert "\r\nerr\r\n" in output, "stderr goes to the terminal too (onlcr: CR LF)"


def test_exec_errors_are_clear(k: Kubectl, exec_env: dict[str, str]) -> None:
    missing = _kubectl(k, "exec", "nope", "--", "true", env=exec_env)
    assert missing.returncode != 0
    assert 'pods "nope" not found' in missing.stderr

    k.apply(
        _pod(
            "two",
            {"name": "main", "command": SLEEP},
            {"name": "done", "command": ["true"]},
        )
    )

    def done_exited() -> bool:
        statuses = k.json("get", "pod", "two")["status"].get("containerStatuses") or []
        states = {s["name"]: s.get("state", {}) for s in statuses}
        return "running" in states.get("main", {}) and "terminated" in states.get("done", {})

    eventually(done_exited, timeout=90, what="container done exited, main running")
    stopped = _kubectl(k, "exec", "two", "-c", "done", "--", "true", env=exec_env)
    assert stopped.returncode != 0
    assert 'container "done" in pod "two" is not running' in stopped.stderr
    unknown = _kubectl(k, "exec", "two", "-c", "other", "--", "true", env=exec_env)
    assert unknown.returncode != 0
    assert "other" in unknown.stderr
    absent = _kubectl(k, "exec", "two", "-c", "main", "--", "no-such-command", env=exec_env)
    assert absent.returncode == 127, absent.stderr
    assert "no-such-command" in absent.stderr
    attach = _kubectl(k, "attach", "two", "-c", "main", env=exec_env)
    assert attach.returncode != 0
    assert "the local node does not implement attach" in attach.stderr


@contextlib.contextmanager
def _forwarding(k: Kubectl, target: str, env: dict[str, str]) -> Iterator[int]:
    local = free_port()
    argv = [k.binary, f"--kubeconfig={k.kubeconfig}", f"--namespace={k.namespace}"]
    process = subprocess.Popen(
        [*argv, "port-forward", target, f"{local}:8000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert f"Forwarding from 127.0.0.1:{local}" in first, first + process.stdout.read()
        yield local
        assert process.poll() is None, "port-forward still runs after the requests"
    finally:
        process.terminate()
        process.communicate(timeout=30)  # closes its pipe


@pytest.mark.parametrize("mode", list(FORWARD_MODES))
def test_port_forward_reaches_a_pods_port(k: Kubectl, mode: str) -> None:
    probe = {"tcpSocket": {"port": 8000}, "periodSeconds": 1}
    k.apply(_pod("web", {"name": "main", "command": ["sh", "-c", WEB], "readinessProbe": probe}))
    # Listening first: kubectl ends a port-forward on the first refused connection.
    k("wait", "--for=condition=Ready", "pod/web", "--timeout=90s")
    with _forwarding(k, "pod/web", FORWARD_MODES[mode]) as local:
        url = f"http://127.0.0.1:{local}/index.txt"

        for _ in range(3):  # one connection after another over the same session
            with urllib.request.urlopen(url, timeout=30) as response:
                assert response.read() == b"hello-forward\n"
