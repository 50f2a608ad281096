"""Source failures, permanent or transient: the classifier, and the reader against real files, a
real HTTP(S) server and real sockets (no mocks)."""

from __future__ import annotations

import datetime
import errno
import http.client
import http.server
import json
import os
import socket
import ssl
import threading
import urllib.error
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from flywheel.api.dataset import DataSource
from flywheel.data.errors import (
    SourceError,
    SourceForbidden,
    SourceInvalid,
    SourceNotFound,
    SourceTimeout,
    SourceTooLarge,
    SourceUnavailable,
    SourceUntrusted,
    classify,
    http_status_error,
)
from flywheel.data.transfer import Limits
from flywheel.interfaces.jobs import SOURCE_PERMANENT, SOURCE_TRANSIENT, ExitCode, FailureReason
from flywheel.jobs.ingest import main
from tests.support.ports import free_port
from tests.support.sources import NO_LIMIT, read_source

CSV = b"x,label\n1,0\n2,1\n3,0\n"


def _read(uri: str, root: Path, limits: Limits = NO_LIMIT) -> None:
    """Read a source as the Job does; the URI unchecked by the API types (which refuse some of
    these at admission already: the reader must not rely on it, an object may predate a rule)."""
    read_source(DataSource.model_construct(uri=uri), pvc_root=root, limits=limits)


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    """`GET /<code>` answers that status; `GET /ok.csv` a CSV."""

    def do_GET(self) -> None:
        if self.path == "/ok.csv":
            self.send_response(200)
            self.send_header("Content-Length", str(len(CSV)))
            self.end_headers()
            self.wfile.write(CSV)
            return
        self.send_error(int(self.path.strip("/")))

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(server: http.server.HTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if isinstance(server.socket, ssl.SSLSocket) else "http"
    yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def web() -> Iterator[str]:
    """A real HTTP server on loopback answering any status asked for."""
    yield from _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler))


@pytest.fixture
def self_signed(tmp_path: Path) -> Iterator[str]:
    """A real HTTPS server whose certificate no CA vouches for."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = _QuietServer(("127.0.0.1", 0), _StatusHandler)
    # The handshake in the handler's thread: the client refusing it ends that request only.
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    yield from _serve(server)


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client refused our certificate, as the test wants


@pytest.fixture
def unreadable(tmp_path: Path) -> Path:
    """A real file this process may not read. As root (tests often run as root, which reads any
    chmod 000 file), a write-only sysctl: procfs refuses root reading it."""
    if os.geteuid() == 0:
        path = Path("/proc/sys/vm/compact_memory")
    else:
        path = tmp_path / "secret.csv"
        path.write_bytes(CSV)
        path.chmod(0)
    with pytest.raises(PermissionError):
        path.read_bytes()  # the premise, checked for real
    return path


# The classification, reason by reason --------------------------------------------------------


def test_every_source_reason_is_either_permanent_or_transient() -> None:
    assert not SOURCE_PERMANENT & SOURCE_TRANSIENT
    kinds = [
        SourceUnavailable,
        SourceTimeout,
        SourceInvalid,
        SourceNotFound,
        SourceForbidden,
        SourceUntrusted,
        SourceTooLarge,
    ]
    assert {k.reason for k in kinds} == SOURCE_PERMANENT | SOURCE_TRANSIENT
    assert [k("x").retryable for k in kinds] == [True, True, False, False, False, False, False]
    assert all(r.value.startswith("Source") for r in SOURCE_PERMANENT | SOURCE_TRANSIENT)
    assert FailureReason.SOURCE_UNAVAILABLE in SOURCE_TRANSIENT, "kept for the transient case"


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (400, SourceInvalid),
        (401, SourceForbidden),
        (403, SourceForbidden),
        (404, SourceNotFound),
        (405, SourceInvalid),
        (407, SourceForbidden),
        (408, SourceUnavailable),
        (410, SourceNotFound),
        (429, SourceUnavailable),
        (451, SourceForbidden),
        (500, SourceUnavailable),
        (502, SourceUnavailable),
        (503, SourceUnavailable),
        (504, SourceUnavailable),
        (310, SourceUnavailable),
    ],
)
def test_http_statuses(code: int, kind: type[SourceError]) -> None:
    assert http_status_error(code) is kind
    error = urllib.error.HTTPError("http://h/d.csv", code, "x", Message(), None)
    assert classify(error) is kind


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (urllib.error.URLError("no host given"), SourceInvalid),
        (urllib.error.URLError("unknown url type: 'gopher'"), SourceInvalid),
        (
            urllib.error.URLError(ConnectionRefusedError(errno.ECONNREFUSED, "refused")),
            SourceUnavailable,
        ),
        (ConnectionResetError(errno.ECONNRESET, "reset"), SourceUnavailable),
        (http.client.RemoteDisconnected("closed"), SourceUnavailable),
        (http.client.IncompleteRead(b"partial"), SourceUnavailable),
        (urllib.error.URLError(socket.gaierror(socket.EAI_AGAIN, "try again")), SourceUnavailable),
        (socket.gaierror(socket.EAI_NONAME, "not known"), SourceUnavailable),
        (TimeoutError("timed out"), SourceUnavailable),
        (urllib.error.URLError(TimeoutError("timed out")), SourceUnavailable),
        (OSError(errno.ENETUNREACH, "unreachable"), SourceUnavailable),
        (OSError(errno.EIO, "I/O error"), SourceUnavailable),
        (urllib.error.URLError(ssl.SSLCertVerificationError(1, "verify failed")), SourceUntrusted),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), SourceUnavailable),
        (socket.herror(1, "Unknown host"), SourceUnavailable),
        (http.client.InvalidURL("nonnumeric port: 'x'"), SourceInvalid),
        (ValueError("unknown url type"), SourceInvalid),
        (FileNotFoundError(errno.ENOENT, "No such file"), SourceNotFound),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory"), SourceNotFound),
        (PermissionError(errno.EACCES, "Permission denied"), SourceForbidden),
        (PermissionError(errno.EPERM, "Operation not permitted"), SourceForbidden),
        (IsADirectoryError(errno.EISDIR, "Is a directory"), SourceInvalid),
        (OSError(errno.ELOOP, "Too many levels of symbolic links"), SourceInvalid),
        (RuntimeError("something else"), SourceUnavailable),
    ],
    ids=repr,
)
def test_transport_and_file_errors(error: BaseException, kind: type[SourceError]) -> None:
    assert classify(error) is kind


# The reader, against real things -------------------------------------------------------------


def test_http_errors_from_a_real_server(web: str, tmp_path: Path) -> None:
    _read(f"{web}/ok.csv", tmp_path)
    for code, kind in [
        (404, SourceNotFound),
        (410, SourceNotFound),
        (403, SourceForbidden),
        (401, SourceForbidden),
        (400, SourceInvalid),
        (500, SourceUnavailable),
        (503, SourceUnavailable),
        (429, SourceUnavailable),
        (408, SourceUnavailable),
    ]:
        with pytest.raises(SourceError, match=f"HTTP {code}") as caught:
            _read(f"{web}/{code}", tmp_path)
        assert type(caught.value) is kind, code


def test_unreachable_hosts_are_transient(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="Connection refused"):
        _read(f"http://127.0.0.1:{free_port()}/d.csv", tmp_path)
    with pytest.raises(SourceUnavailable):
        _read("http://flywheel-test.invalid/d.csv", tmp_path)  # DNS has no answer
    # A server that accepts the connection and never answers: a real timeout.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        quick = Limits(max_bytes=2**20, connect_timeout=0.3)
        with pytest.raises(SourceUnavailable, match="timed out"):
            _read(f"http://127.0.0.1:{silent.getsockname()[1]}/d.csv", tmp_path, quick)


def test_an_unverified_certificate_is_permanent(self_signed: str, web: str, tmp_path: Path) -> None:
    with pytest.raises(SourceUntrusted, match="CERTIFICATE_VERIFY_FAILED"):
        _read(f"{self_signed}/ok.csv", tmp_path)
    # Other handshake failures (here TLS to a plain HTTP port) carry OpenSSL's error numbers,
    # which must not read as the OS's (1 is EPERM): transient, as unknown failures are.
    with pytest.raises(SourceUnavailable, match="SSL"):
        _read(web.replace("http://", "https://") + "/ok.csv", tmp_path)


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("http:///data.csv", "has no host"),
        ("https://:8443/data.csv", "has no host"),
        ("http://example.com:99999/d.csv", "out of range"),
        ("http://example.com:http/d.csv", "Port could not be cast"),
        ("ftp://example.com/d.csv", "unsupported source scheme 'ftp'"),
        ("sklearn://mnist", "not a bundled dataset"),
    ],
)
def test_malformed_uris_are_refused_before_any_io(uri: str, words: str, tmp_path: Path) -> None:
    with pytest.raises(SourceInvalid, match=words):
        _read(uri, tmp_path)


def test_files_missing_forbidden_or_not_files(tmp_path: Path, unreadable: Path) -> None:
    with pytest.raises(SourceNotFound, match="No such file"):
        _read(f"file://{tmp_path}/nothing.csv", tmp_path)
    (tmp_path / "plain").write_bytes(CSV)
    with pytest.raises(SourceNotFound, match="Not a directory"):
        _read(f"file://{tmp_path}/plain/d.csv", tmp_path)
    with pytest.raises(SourceForbidden, match="Permission denied"):
        _read(f"file://{unreadable}", tmp_path)
    with pytest.raises(SourceInvalid, match="Is a directory"):
        _read(f"file://{tmp_path}", tmp_path)


def test_pvc_paths_stay_inside_their_claim(tmp_path: Path) -> None:
    """The artifact store's own check, against real files just outside the claim."""
    root = tmp_path / "mnt"
    (root / "claim" / "raw").mkdir(parents=True)
    (root / "claim" / "raw" / "d.csv").write_bytes(CSV)
    (root / "other").mkdir()
    (root / "other" / "secret.csv").write_bytes(CSV)
    (tmp_path / "outside.csv").write_bytes(CSV)
    (root / "claim" / "link.csv").symlink_to(tmp_path / "outside.csv")
    source = DataSource.model_construct(uri="pvc://claim/raw/../raw/d.csv")
    assert len(read_source(source, pvc_root=root)) == 3
    for uri in (
        "pvc://claim/../..",
        "pvc://claim/../other/secret.csv",
        "pvc://claim/raw/../../../outside.csv",
        f"pvc://claim/{tmp_path}/outside.csv",  # an absolute path after the claim
        "pvc://claim/link.csv",  # a symbolic link out of the claim
    ):
        with pytest.raises(SourceInvalid, match="escapes its claim"):
            _read(uri, root)
    with pytest.raises(SourceInvalid, match="expected pvc://<claim>/<path>"):
        _read("pvc://claim", root)
    with pytest.raises(SourceNotFound, match="No such file"):
        _read("pvc://claim/raw/missing.csv", root)
    with pytest.raises(SourceNotFound, match="claim elsewhere is not mounted"):
        _read("pvc://elsewhere/d.csv", root)


def _entrypoint(uri: str, tmp_path: Path) -> tuple[int, dict[str, str]]:
    log = tmp_path / "termination-log"
    spec = json.dumps({"source": {"uri": uri}})
    words = ["--spec", spec, "--namespace", "ns", "--name", "d", "--claim", "claim"]
    code = main([*words, "--artifacts-root", str(tmp_path), "--termination-log", str(log)])
    return code, json.loads(log.read_text())


def test_the_job_exits_by_permanence(tmp_path: Path, web: str) -> None:
    code, result = _entrypoint("pvc://claim//etc/passwd", tmp_path)  # an absolute escape
    assert (code, result["reason"]) == (ExitCode.NOT_RETRYABLE, "SourceInvalid")
    code, result = _entrypoint(f"{web}/404", tmp_path)
    assert (code, result["reason"]) == (ExitCode.NOT_RETRYABLE, "SourceNotFound")
    code, result = _entrypoint(f"{web}/503", tmp_path)
    assert (code, result["reason"]) == (ExitCode.RETRYABLE, "SourceUnavailable")
    assert result["message"] == f"GET {web}/503: HTTP 503 Service Unavailable"
