#!/usr/bin/env python3
"""Fill gwctl's secret placeholders on a broker at boot (rendered by gwctl).

Reads each secret once from SSM Parameter Store (SecureString, decrypted through the instance
role), writes the Erlang cookie (0400) and the definitions file with secrets filled in (0600),
both owned by the rabbitmq user; the node's certificate (0644) and key (0600) into --tls-dir;
the revoked device ids into --revoked (alone: what the refresh timer runs). Placeholders look like @@gwctl:NAME:ENCODING@@, ENCODING being
raw, uri (percent-encoded for a URI's userinfo) or rabbit-hash (RabbitMQ's salted SHA-256).
Secret values are never printed.
"""
import argparse, base64, hashlib, json, os, pwd, re, subprocess, sys, urllib.parse

PLACEHOLDER = re.compile(r"@@gwctl:([a-z_]+):(raw|uri|rabbit-hash)@@")


def fetch(region, prefix, name, cache):
    if name not in cache:
        out = subprocess.run(
            ["aws", "ssm", "get-parameter", "--region", region, "--with-decryption",
             "--name", f"{prefix}/{name}", "--query", "Parameter.Value", "--output", "text"],
            check=True, capture_output=True, text=True)
        cache[name] = out.stdout.rstrip("\n")
    return cache[name]


def rabbit_hash(password):
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def encode(value, encoding):
    if encoding == "uri":
        return urllib.parse.quote(value, safe="")
    if encoding == "rabbit-hash":
        return rabbit_hash(value)
    return value


def fill(node, secret):
    if isinstance(node, str):
        return PLACEHOLDER.sub(lambda m: encode(secret(m.group(1)), m.group(2)), node)
    if isinstance(node, list):
        return [fill(x, secret) for x in node]
    if isinstance(node, dict):
        return {k: fill(v, secret) for k, v in node.items()}
    return node


def fetch_optional(region, prefix, name):
    """A parameter's value, or "" when it does not exist (no device revoked yet)."""
    out = subprocess.run(
        ["aws", "ssm", "get-parameter", "--region", region, "--with-decryption",
         "--name", f"{prefix}/{name}", "--query", "Parameter.Value", "--output", "text"],
        capture_output=True, text=True)
    if out.returncode != 0:
        if "ParameterNotFound" in out.stderr:
            return ""
        raise subprocess.CalledProcessError(out.returncode, "aws ssm get-parameter")
    return out.stdout.rstrip("\n")


def write_public(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text + "\n" if text else "")
    os.chmod(path + ".tmp", 0o644)
    os.replace(path + ".tmp", path)


def write_private(path, text, mode, owner):
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chown(path + ".tmp", owner.pw_uid, owner.pw_gid)
    os.chmod(path + ".tmp", mode)
    os.replace(path + ".tmp", path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--region", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--template")
    p.add_argument("--definitions")
    p.add_argument("--certificate", help="SSM name (under --prefix) of this node's certificate and key")
    p.add_argument("--tls-dir", default="/etc/rabbitmq/tls")
    p.add_argument("--revoked", help="where to write the revoked device ids")
    p.add_argument("--owner", default="rabbitmq", help="user owning the written files")
    p.add_argument("--cookie", help="Erlang cookie path (default: the owner's ~/.erlang.cookie)")
    args = p.parse_args()
    cache = {}
    secret = lambda name: fetch(args.region, args.prefix, name, cache)
    owner = pwd.getpwnam(args.owner)
    if args.revoked:
        write_public(args.revoked, fetch_optional(args.region, args.prefix, "devices/revoked"))
    if not args.template:
        return
    if args.certificate:
        pem = secret(args.certificate)
        key = re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----\n?", pem, re.S)
        certs = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", pem, re.S)
        if not key or not certs:
            sys.exit("gwctl-materialize: %s holds no certificate and key" % args.certificate)
        os.makedirs(args.tls_dir, exist_ok=True)
        write_private(os.path.join(args.tls_dir, "server.key"), key.group(0), 0o600, owner)
        write_private(os.path.join(args.tls_dir, "server.pem"), "".join(certs), 0o644, owner)
    with open(args.template) as f:
        definitions = fill(json.load(f), secret)
    write_private(args.definitions, json.dumps(definitions, indent=2), 0o600, owner)
    cookie = args.cookie or os.path.join(owner.pw_dir, ".erlang.cookie")
    write_private(cookie, secret("erlang_cookie"), 0o400, owner)
    print("gwctl-materialize: wrote %s and the Erlang cookie" % args.definitions)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as e:
        sys.exit("gwctl-materialize: reading a secret from SSM failed (exit %d)" % e.returncode)
