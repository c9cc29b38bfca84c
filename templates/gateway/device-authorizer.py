#!/usr/bin/python3
"""gwctl device authorizer: answers RabbitMQ's HTTP auth backend for devices (rendered by gwctl).

Stateless: a device is whoever holds a certificate of the device CA. The broker verified that
certificate during the TLS handshake (every client must present one), took the user name from
its common name and, with mqtt.ssl_cert_client_id_from, tied the client id to its SAN. This
service only applies the rules of backend.yaml's `devices` section:

  user      allow a certificate login (password `none`, the broker's marker for one) of a
            well-formed device id that is not revoked and whose client id is the device id
            (so a device holding its own certificate cannot log in under another id with a
            password of `none`); with --legacy-cert-login (RabbitMQ 3.10, which sends neither
            marker nor client id), a login that carries no password
  vhost     the gateway's vhost only
  resource  its own subscription queues (mqtt-subscription-<id>qos0/1, mqtt-will-<id>) and
            reading/writing the MQTT exchange
  topic     write its telemetry filter, read its commands filter, with {device} = its id

Users of the broker's own definitions (admin, federation) never reach this service: the
internal backend answers them first. The broker caches answers (auth_cache.cache_ttl), so a
restart of this service goes unnoticed by connected and reconnecting devices.
Revoked ids are read from --revoked (one per line), re-read when the file changes.
Usage: device-authorizer --listen 127.0.0.1:8089 --vhost / --exchange amq.topic
       --telemetry 'devices/{device}/#' --commands 'commands/{device}/#' --revoked FILE
"""
import argparse
import http.server
import os
import re
import threading
import urllib.parse

parser = argparse.ArgumentParser()
parser.add_argument("--listen", required=True, help="HOST:PORT")
parser.add_argument("--vhost", default="/")
parser.add_argument("--exchange", default="amq.topic")
parser.add_argument("--telemetry", required=True)
parser.add_argument("--commands", required=True)
parser.add_argument("--revoked", required=True)
parser.add_argument("--legacy-cert-login", action="store_true",
                    help="RabbitMQ 3.10: a certificate login carries no password marker and "
                         "no client id")
args = parser.parse_args()

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def topic_rule(mqtt_filter):
    """The AMQP form of an MQTT filter (RabbitMQ maps `/` to `.`) as a regex template."""
    levels = mqtt_filter.split("/")
    out = []
    for level in levels:
        out.append({"#": None, "{device}": "{device}"}.get(level, re.escape(level)))
    if out[-1] is None:  # trailing '#': the prefix itself, or anything below it
        return r"^" + r"\.".join(out[:-1]) + r"(\..+)?$"
    return r"^" + r"\.".join(out) + r"$"


RULES = {"write": topic_rule(args.telemetry), "read": topic_rule(args.commands)}

_revoked_lock = threading.Lock()
_revoked = (None, frozenset())


def revoked():
    global _revoked
    try:
        stamp = os.stat(args.revoked).st_mtime_ns
    except FileNotFoundError:
        return frozenset()
    with _revoked_lock:
        if _revoked[0] != stamp:
            with open(args.revoked) as f:
                ids = frozenset(line.strip() for line in f if line.strip())
            _revoked = (stamp, ids)
        return _revoked[1]


def device(q):
    name = q.get("username", "")
    return name if DEVICE_ID.match(name) and name not in revoked() else None


def allow_user(q):
    if device(q) is None:
        return False
    if args.legacy_cert_login:
        # RabbitMQ 3.10 asks with the user name alone for a certificate login. A password
        # login carries a password (`none` too) and a client id the broker does not tie to
        # the certificate: refused.
        return "password" not in q and "client_id" not in q
    return q.get("password") == "none" and q.get("client_id") == q.get("username")


def allow_vhost(q):
    return device(q) is not None and q.get("vhost") == args.vhost


def allow_resource(q):
    d = device(q)
    if d is None or q.get("vhost") != args.vhost:
        return False
    kind, name, perm = q.get("resource"), q.get("name"), q.get("permission")
    if kind == "queue":
        return name in (f"mqtt-subscription-{d}qos0", f"mqtt-subscription-{d}qos1", f"mqtt-will-{d}")
    if kind == "exchange":
        return name == args.exchange and perm in ("read", "write")
    return False


def allow_topic(q):
    d = device(q)
    if d is None or q.get("vhost") != args.vhost or q.get("name") != args.exchange:
        return False
    rule = RULES.get(q.get("permission"))
    if rule is None:
        return False
    # Device ids hold no regex characters (DEVICE_ID), so substituting them is safe.
    return re.match(rule.replace("{device}", re.escape(d)), q.get("routing_key", "")) is not None


ROUTES = {"/auth/user": allow_user, "/auth/vhost": allow_vhost,
          "/auth/resource": allow_resource, "/auth/topic": allow_topic}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the broker reuses its connections
    timeout = 10

    def answer(self, query):
        check = ROUTES.get(self.path.split("?")[0])
        q = {k: v[0] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
        body = (b"allow" if check and check(q) else b"deny")
        self.send_response(200 if check else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.answer(self.rfile.read(length).decode("utf-8", "replace"))

    def do_GET(self):
        self.answer(urllib.parse.urlsplit(self.path).query)

    def log_message(self, *_):
        pass  # one line per device connection would flood the journal


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog. socketserver's default of 5 overflows in a reconnection storm: the
    # broker opens a connection per concurrent device login, the kernel drops the SYNs past 5
    # and each dropped one waits a full second to retry (measured: a 2 000-device storm ran at
    # 80 logins/s with p50 0.9 s, 1 568 listen overflows). The kernel caps it at
    # net.core.somaxconn, which the brokers' user-data raises to the same figure.
    request_queue_size = 4096


host, _, port = args.listen.rpartition(":")
Server((host or "127.0.0.1", int(port)), Handler).serve_forever()
