#!/usr/bin/env python3
"""A proxy in front of the AWS emulator that makes it answer like AWS under load: seeded,
AWS-shaped errors at a chosen rate, lost connections, per-call latency, and an account of
every call it saw (which the tests and benchmarks read).

moto answers every call at once and never throttles; real AWS throttles per API action,
fails with 5xx now and then, and drops connections. What each service sends back, and how the
AWS SDK for Rust retries it, is in docs/aws-fault-facts.md; the shapes here follow it:

  service  throttle                                          server error
  ec2      503 <Response><Errors>… RequestLimitExceeded      500 InternalError, 503 Unavailable
  route53  400 <ErrorResponse>… Throttling, and              500 InternalFailure,
           PriorRequestNotComplete on a change batch          503 ServiceUnavailable
  iam      400 <ErrorResponse>… Throttling                   500 InternalFailure
  ssm      400 {"__type":"ThrottlingException"}              500 InternalServerError

Fault kinds (--kinds, comma-separated): `throttle`, `server`, `drop` (the connection closes
before the request reaches the emulator: nothing happened) and `lost` (the request is carried
out, then the connection closes before the answer: the caller cannot know it happened — the
case that makes a retried create without an idempotency token create twice). The default mix
is throttle,server,drop. Every decision comes from one random generator seeded with --seed, in
the order requests arrive.

usage: aws_proxy.py --upstream URL [--port P] [--seed N] [--fault-rate 0.1] [--kinds K,..]
                    [--latency-ms MS] [--jitter-ms MS] [--ready-file PATH]

Control API (never faulted, never counted), JSON:
  GET  /_proxy/stats   calls, mutating calls, injected faults by kind, calls by action, the
                       emulator's own service time (summed, and the time it was busy at all),
                       the mutating actions in order
  POST /_proxy/config  changes fault_rate, kinds, latency_ms, jitter_ms, seed, and rules:
                       exact faults met first: {"action", "times", "status", "code"} answers
                       with that error; {"action", "times", "kind": "lost"} carries the
                       call out and cuts its answer; "skip": N lets the first N calls of
                       the action pass before the rule applies, "every": N (1) lets N - 1
                       pass after each call it applies to
  POST /_proxy/reset   zeroes the account
"""
import argparse
import http.client
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

READS = ("Describe", "Get", "List")


def service_of(headers):
    """The signing service in the Authorization header's credential scope."""
    auth = headers.get("Authorization", "")
    for part in auth.replace(",", " ").split():
        if part.startswith("Credential="):
            scope = part[len("Credential="):].split("/")
            if len(scope) >= 4:
                return scope[3]
    return "unknown"


def action_of(service, method, path, headers, body):
    """The API action: the Action parameter (query protocols), the target (JSON protocols),
    or method and path with ids elided (REST protocols)."""
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    if service in ("ec2", "iam", "sts"):
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        action = (form.get("Action") or query.get("Action") or ["?"])[0]
        return action
    # /2013-04-01/hostedzone/Z123/rrset -> POST hostedzone/*/rrset: ids are what is not a word.
    parts = urllib.parse.urlsplit(path).path.strip("/").split("/")[1:]
    shape = [p if p.isalpha() and p.islower() else "*" for p in parts]
    return f"{method} {'/'.join(shape)}"


def is_mutating(service, method, action):
    if service == "route53":
        return method != "GET"
    return not action.startswith(READS)


def choose_error(service, action, kind, rng):
    """(status, code, message) of an AWS-shaped error of `kind` for `service`."""
    if service == "ssm":
        return (400, "ThrottlingException", "Rate exceeded") if kind == "throttle" \
            else (500, "InternalServerError", "Internal error")
    if service == "ec2":
        if kind == "throttle":
            return 503, "RequestLimitExceeded", "Request limit exceeded."
        return rng.choice([
            (500, "InternalError", "An internal error has occurred. Retry your request."),
            (503, "Unavailable", "The server is overloaded and can't handle the request."),
        ])
    if kind == "throttle":
        if service == "route53" and action.endswith("rrset") and rng.random() < 0.5:
            return 400, "PriorRequestNotComplete", \
                "The request was rejected because Route 53 was still processing a prior request."
        return 400, "Throttling", "Rate exceeded"
    return rng.choice([(500, "InternalFailure", "An internal error occurred."),
                       (503, "ServiceUnavailable", "Service Unavailable")])


def error_body(service, status, code, message, request_id):
    """(content type, body) as `service` writes an error (its protocol's envelope)."""
    if service == "ssm":
        return "application/x-amz-json-1.1", json.dumps({"__type": code, "message": message})
    if service == "ec2":
        return "text/xml", (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>"
                            f"<Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
    namespace = {"route53": "https://route53.amazonaws.com/doc/2013-04-01/",
                 "iam": "https://iam.amazonaws.com/doc/2010-05-08/"}.get(service, "")
    side = "Sender" if status < 500 else "Receiver"
    return "text/xml", (f"<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{side}</Type>"
                        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")


class Account:
    """What the proxy saw; one lock, since requests are served on threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.calls = 0
        self.mutating = 0
        self.injected = {}
        self.by_action = {}
        self.mutating_actions = []
        # Every fault injected, in order: "service:Action kind" — what a failed run met.
        self.faults = []
        self.service_time = 0.0
        self.forwarded = 0
        # The time the emulator had at least one call in hand: moto serves about one call at
        # a time, AWS serves them in parallel, so this is what the emulator adds to a run.
        self.inflight = 0
        self.busy_since = 0.0
        self.busy = 0.0

    def snapshot(self):
        return {
            "calls": self.calls,
            "mutating": self.mutating,
            "forwarded": self.forwarded,
            "injected": dict(self.injected),
            "injected_total": sum(self.injected.values()),
            "by_action": dict(self.by_action),
            "mutating_actions": list(self.mutating_actions),
            "faults": list(self.faults),
            "service_time_s": round(self.service_time, 4),
            "emulator_busy_s": round(self.busy, 4),
        }


class Config:
    def __init__(self, args):
        self.fault_rate = args.fault_rate
        self.kinds = [k for k in args.kinds.split(",") if k]
        self.latency_ms = args.latency_ms
        self.jitter_ms = args.jitter_ms
        self.rng = random.Random(args.seed)
        # Exact faults before random ones: [{"action", "times", "status", "code"}], or
        # [{"action", "times", "kind": "lost"}], each after its optional "skip" calls.
        self.rules = []

    def rule_for(self, action):
        """The rule's fault for this call, if one is due: ("lost", None) or ("rule", shape)."""
        for rule in self.rules:
            if rule["times"] > 0 and rule["action"] == action:
                if rule.get("skip", 0) > 0:
                    rule["skip"] -= 1
                    continue
                rule["times"] -= 1
                rule["skip"] = rule.get("every", 1) - 1
                if rule.get("kind") == "lost":
                    return "lost", None
                return "rule", (rule["status"], rule["code"], "injected by rule")
        return None

    def update(self, changes):
        if "fault_rate" in changes:
            self.fault_rate = float(changes["fault_rate"])
        if "kinds" in changes:
            self.kinds = [k for k in changes["kinds"] if k]
        if "latency_ms" in changes:
            self.latency_ms = float(changes["latency_ms"])
        if "jitter_ms" in changes:
            self.jitter_ms = float(changes["jitter_ms"])
        if "rules" in changes:
            self.rules = [dict(r) for r in changes["rules"]]
        if "seed" in changes:
            self.rng = random.Random(int(changes["seed"]))


def make_handler(upstream, config, account):
    host, port = upstream

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status, content_type, body, extra=()):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _control(self, body):
            path = self.path.split("?")[0]
            with account.lock:
                if path == "/_proxy/stats":
                    answer = account.snapshot()
                elif path == "/_proxy/reset":
                    account.reset()
                    answer = {"ok": True}
                elif path == "/_proxy/config":
                    config.update(json.loads(body or b"{}"))
                    answer = {"ok": True}
                else:
                    return self._send(404, "application/json", "{}")
            self._send(200, "application/json", json.dumps(answer))

        def _drop(self):
            # No answer at all: the client sees the connection close mid-exchange.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _handle(self):
            body = self._body()
            if self.path.startswith("/_proxy/"):
                return self._control(body)
            service = service_of(self.headers)
            action = action_of(service, self.command, self.path, self.headers, body)
            mutating = is_mutating(service, self.command, action)
            with account.lock:
                account.calls += 1
                account.by_action[action] = account.by_action.get(action, 0) + 1
                if mutating:
                    account.mutating += 1
                    account.mutating_actions.append(f"{service}:{action}")
                rng = config.rng
                ruled = config.rule_for(action)
                kind, shape = ruled if ruled else (None, None)
                fault = ruled is None and config.kinds and rng.random() < config.fault_rate
                if fault:
                    kind = rng.choice(config.kinds)
                delay = max(0.0, config.latency_ms + (rng.uniform(-1, 1) * config.jitter_ms)) / 1000
                if kind in ("throttle", "server"):
                    shape = choose_error(service, action, kind, rng)
                if kind:
                    account.injected[kind] = account.injected.get(kind, 0) + 1
                    account.faults.append(f"{service}:{action} {kind}")
                request_id = str(uuid.UUID(int=rng.getrandbits(128)))
            if delay:
                time.sleep(delay)
            if shape:
                status, code, message = shape
                content_type, text = error_body(service, status, code, message, request_id)
                return self._send(status, content_type, text, [("x-amzn-RequestId", request_id)])
            if kind == "drop":
                return self._drop()
            started = time.monotonic()
            with account.lock:
                if account.inflight == 0:
                    account.busy_since = started
                account.inflight += 1
            conn = http.client.HTTPConnection(host, port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "host")}
            headers["Host"] = f"{host}:{port}"
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            conn.close()
            with account.lock:
                now = time.monotonic()
                account.service_time += now - started
                account.forwarded += 1
                account.inflight -= 1
                if account.inflight == 0:
                    account.busy += now - account.busy_since
            if kind == "lost":
                return self._drop()
            self.send_response(answer.status, answer.reason)
            for k, v in answer.getheaders():
                if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, help="the emulator, http://HOST:PORT")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--kinds", default="throttle,server,drop")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--ready-file", help="written with the proxy's URL once it listens")
    args = parser.parse_args()
    up = urllib.parse.urlsplit(args.upstream)
    account, config = Account(), Config(args)
    # socketserver's listen backlog is 5: a client opening a few dozen connections at once
    # (gwctl planning regions concurrently) overflows it, and each dropped SYN waits a second.
    ThreadingHTTPServer.request_queue_size = 4096
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler((up.hostname, up.port), config, account))
    server.daemon_threads = True
    url = f"http://127.0.0.1:{server.server_address[1]}"
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            f.write(url)
        os.rename(args.ready_file + ".tmp", args.ready_file)
    print(url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
