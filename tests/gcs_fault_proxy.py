"""A Cloud Storage stand-in on loopback for every client bert_tf uses, with faults on demand.

gcp-storage-emulator serves the JSON API over plain HTTP. google-cloud-storage reaches it through
STORAGE_EMULATOR_HOST; TensorFlow's own GCS file system (tf.io.gfile, checkpoints, summaries) has
its endpoints built in (https://www.googleapis.com, https://storage.googleapis.com), so it
reaches it through this proxy: libcurl's HTTPS_PROXY sends a CONNECT here, the proxy answers the
TLS handshake with a certificate from a test CA (CURL_CA_BUNDLE), and forwards the requests to
the emulator. Both kinds of client pass the same fault schedule: an HTTP status (429, 500, 503),
a connection dropped before the answer, or a slow answer, for the next N requests whose method
and path match.
"""

import dataclasses
import datetime
import http.client
import http.server
import ipaddress
import os
import re
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com")


@dataclasses.dataclass
class Fault:
  """What to do to the next `count` requests whose method and path (with query) match."""
  action: str  # "429", "500", "503"...: answer with that status; "drop"; "slow"
  method: str = ".*"
  path: str = ".*"
  count: int = 1
  delay: float = 0.0  # seconds, for "slow"
  skip: int = 0  # matching requests let through first


def _certificate(subject: str, key, issuer_key, issuer_name, ca: bool,
                 names: List[str]) -> x509.Certificate:
  now = datetime.datetime.now(datetime.timezone.utc)
  builder = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(issuer_name or x509.Name(
                 [x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
  if names:
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in names] +
                                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        critical=False)
  return builder.sign(issuer_key, hashes.SHA256())


def write_test_ca(directory: str) -> Dict[str, str]:
  """A CA and a certificate for Google's storage hosts signed by it; returns their file paths."""
  ca_key = ec.generate_private_key(ec.SECP256R1())
  ca = _certificate("bert_tf test CA", ca_key, ca_key, None, True, [])
  key = ec.generate_private_key(ec.SECP256R1())
  leaf = _certificate(GOOGLE_HOSTS[0], key, ca_key, ca.subject, False, list(GOOGLE_HOSTS))
  paths = {name: os.path.join(directory, name + ".pem") for name in ("ca", "cert", "key")}
  with open(paths["ca"], "wb") as f:
    f.write(ca.public_bytes(serialization.Encoding.PEM))
  with open(paths["cert"], "wb") as f:
    f.write(leaf.public_bytes(serialization.Encoding.PEM))
  with open(paths["key"], "wb") as f:
    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
  return paths


class _Server(socketserver.ThreadingTCPServer):
  """Quiet about the connections a client or a "drop" fault closes; loud about the rest."""

  def handle_error(self, request, client_address):
    if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
      super().handle_error(request, client_address)


class FaultProxy:
  """The proxy: `url` for STORAGE_EMULATOR_HOST, `environment()` for TensorFlow's client."""

  def __init__(self, emulator: str, cert_dir: str):
    self.emulator = emulator.split("://", 1)[1]
    self.certs = write_test_ca(cert_dir)
    self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    self.tls.load_cert_chain(self.certs["cert"], self.certs["key"])
    self.faults: List[Fault] = []
    self.log: List[str] = []  # "METHOD path -> outcome", one a request
    self._lock = threading.Lock()
    self._server = _Server(("127.0.0.1", 0), _handler(self))
    self._server.daemon_threads = True
    self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
    threading.Thread(target=self._server.serve_forever, daemon=True).start()

  def close(self) -> None:
    self._server.shutdown()
    self._server.server_close()

  def inject(self, *faults: Fault) -> None:
    with self._lock:
      self.faults.extend(faults)

  def take_fault(self, method: str, path: str) -> Optional[Fault]:
    """The first pending fault that matches, its count used up by one."""
    with self._lock:
      for fault in self.faults:
        if fault.count > 0 and re.fullmatch(fault.method, method) and re.search(fault.path, path):
          if fault.skip:
            fault.skip -= 1
            return None
          fault.count -= 1
          return fault
    return None

  def pending(self) -> int:
    with self._lock:
      return sum(fault.count for fault in self.faults)

  def environment(self) -> Dict[str, str]:
    """Variables that send TensorFlow's GCS file system (libcurl) here, with a fake token."""
    return {"HTTPS_PROXY": self.url, "https_proxy": self.url, "CURL_CA_BUNDLE": self.certs["ca"],
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test-token", "NO_GCE_CHECK": "true",
            "NO_PROXY": "", "no_proxy": ""}


def _handler(proxy: FaultProxy):

  class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    tunnel_host: Optional[str] = None

    def log_message(self, *args):  # the proxy's own log is `proxy.log`
      pass

    def do_CONNECT(self):  # pylint: disable=invalid-name
      self.send_response(200, "Connection established")
      self.end_headers()
      self.tunnel_host = self.path.split(":")[0]
      self.connection = proxy.tls.wrap_socket(self.connection, server_side=True)
      self.rfile = self.connection.makefile("rb")
      self.wfile = self.connection.makefile("wb")
      self.close_connection = False

    def forward(self):
      path = re.sub(r"^https?://[^/]+", "", self.path)  # absolute-form from a plain proxy client
      body = self.read_body()
      fault = proxy.take_fault(self.command, path)
      outcome = fault.action if fault else "forwarded"
      proxy.log.append(f"{self.command} {path} -> {outcome}")
      if fault and fault.action == "drop":
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True
        return
      if fault and fault.action == "slow":
        time.sleep(fault.delay)
      elif fault:
        status = int(fault.action)
        message = b'{"error": {"code": %d, "message": "injected by the test proxy"}}' % status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        self.wfile.write(message)
        return
      # The Host header goes along: the emulator builds the links it returns (media links,
      # upload sessions) from it, so they lead back here.
      headers = {k: v for k, v in self.headers.items()
                 if k.lower() not in ("proxy-connection", "connection",
                                      "transfer-encoding", "content-length", "expect")}
      headers["Content-Length"] = str(len(body))
      upstream = http.client.HTTPConnection(self.emulator_host, timeout=120)
      upstream.request(self.command, path, body=body, headers=headers)
      response = upstream.getresponse()
      data = response.read()
      self.send_response(response.status)
      for name, value in response.getheaders():
        if name.lower() in ("transfer-encoding", "connection", "content-length"):
          continue
        if name.lower() == "location":  # resumable upload sessions: back through this proxy
          value = re.sub(r"^https?://[^/]+", self.origin, value)
        self.send_header(name, value)
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      if self.command != "HEAD":
        self.wfile.write(data)
      upstream.close()

    def read_body(self) -> bytes:
      """The request's body; chunked transfer takes precedence over Content-Length (RFC 9112),
      and TensorFlow's uploads send both."""
      if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))
      body = b""
      while True:
        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
          while self.rfile.readline().strip():  # trailers, up to the blank line
            pass
          return body
        body += self.rfile.read(size)
        self.rfile.readline()

    @property
    def emulator_host(self) -> str:
      return proxy.emulator

    @property
    def origin(self) -> str:
      return f"https://{self.tunnel_host}" if self.tunnel_host else proxy.url

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = forward  # noqa: N815

  return Handler


# gcp-storage-emulator, started with two departures from Cloud Storage mended, both of which
# break TensorFlow's uploads: it drops the connection on an empty media upload (how TensorFlow
# makes a directory marker), and it answers a resumable session holding no bytes yet with
# "Range: bytes=0-0" (as if it held one), where Cloud Storage sends no Range ("Resumable
# uploads" in its documentation: without a Range header, resume from byte 0).
_EMULATOR = """
import sys
from gcp_storage_emulator import __main__ as emulator
from gcp_storage_emulator.handlers import objects
media_upload, incomplete = objects._media_upload, objects._resumable_incomplete
def empty_media_upload(request, response, storage):
  if request.data is None:
    request._data = b""
  return media_upload(request, response, storage)
def resumable_incomplete(response, storage, upload_id, fallback_end=0):
  incomplete(response, storage, upload_id, fallback_end)
  if storage.get_resumable_byte_count(upload_id) == 0:
    response._headers.pop("Range", None)
objects._media_upload, objects._resumable_incomplete = empty_media_upload, resumable_incomplete
emulator.main(sys.argv[1:])
"""


def start_emulator(port: int) -> subprocess.Popen:
  """gcp-storage-emulator (in memory) on 127.0.0.1:`port`, once it answers."""
  process = subprocess.Popen(
      [sys.executable, "-c", _EMULATOR, "start", "--host=127.0.0.1", f"--port={port}",
       "--in-memory", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 30
  while True:
    try:
      requests.get(f"http://127.0.0.1:{port}/storage/v1/b", timeout=1)
      return process
    except requests.ConnectionError:
      if process.poll() is not None or time.time() > deadline:
        process.kill()
        raise RuntimeError("gcp-storage-emulator did not start")
      time.sleep(0.1)
