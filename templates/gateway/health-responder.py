#!/usr/bin/python3
"""gwctl health responder: what Route53's HTTP(S) health checkers ask.

Route53 checkers cannot log in to a broker, so this answers without credentials and tells
nothing but health: 200 when the local node accepts MQTT and AMQP connections, 503 otherwise.
A probe result is reused for a second (checkers from many locations ask every 10-30 s each).
Only Route53's checkers may reach it (the security group), yet it stays bounded: a connection
that sends no complete request within --timeout seconds is dropped, at most --max-connections
are served at once (more are closed at once), and a TLS handshake happens in the connection's
own thread, so a slow client never holds up the others.
Usage: health-responder --listen PORT --path /health --check-port 1883 --check-port 5672
       [--tls-cert CERT --tls-key KEY]   (HTTPS checks; Route53 does not verify the certificate)
       [--timeout 5] [--max-connections 64]
"""
import argparse
import http.server
import os
import socket
import ssl
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("--listen", type=int, required=True)
parser.add_argument("--path", default="/health")
parser.add_argument("--check-port", type=int, action="append", required=True)
parser.add_argument("--tls-cert")
parser.add_argument("--tls-key")
parser.add_argument("--timeout", type=float, default=5.0)
parser.add_argument("--max-connections", type=int, default=64)
args = parser.parse_args()

_lock = threading.Lock()
_cached = (0.0, False, "")


def probe():
    global _cached
    with _lock:
        at, ok, why = _cached
        if time.monotonic() - at < 1.0:
            return ok, why
        ok, why = True, "ok"
        for port in args.check_port:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            except OSError as e:
                ok, why = False, f"port {port}: {e.strerror or e}"
                break
        _cached = (time.monotonic(), ok, why)
        return ok, why


class Handler(http.server.BaseHTTPRequestHandler):
    timeout = args.timeout  # applied to the connection before anything is read

    def setup(self):
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # here, in this connection's thread, under the timeout

    def do_GET(self):
        if self.path.split("?")[0] != args.path:
            self.send_error(404)
            return
        ok, why = probe()
        body = (why + "\n").encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass  # checkers ask constantly; the journal would fill with their requests


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    _slots = threading.BoundedSemaphore(args.max_connections)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the limit: closed at once
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


server = Server(("", args.listen), Handler)
if args.tls_cert:
    # systemd hands the key over as a credential readable by this (dynamic) user only.
    creds = os.environ.get("CREDENTIALS_DIRECTORY", "")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.tls_cert, os.path.join(creds, args.tls_key) if creds else args.tls_key)
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
server.serve_forever()
