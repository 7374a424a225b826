#!/usr/bin/env python3
"""A raw NATS client for the end-to-end checks (scripts/e2e-*.sh).

It speaks the NATS text protocol itself, with TLS from Python's ssl module
when asked, so that the checks depend on no NATS client. It prints one line
per step and always exits 0 unless its arguments are wrong:

    info tls_required=<bool> auth_required=<bool>
    tls ok | tls refused: <error>              (with --tls)
    connect PONG | connect -ERR '...' | connect closed: <why>
    pub <subject> ok | pub <subject> -ERR '...' | pub <subject> closed: <why>

    nats-probe.py HOST PORT [--tls] [--ca FILE] [--cert FILE --key FILE]
                  [--server-name NAME] [--user U --password P] [--pub SUBJECT]...
"""
import argparse
import json
import socket
import ssl
import sys


def readline(f):
    line = f.readline()
    if not line:
        raise EOFError("connection closed by the server")
    return line.decode("utf-8", "replace").rstrip("\r\n")


def until_pong(f):
    """Reads lines up to the PONG; returns the first -ERR line, or None."""
    err = None
    while True:
        try:
            line = readline(f)
        except (EOFError, ssl.SSLError, OSError):
            if err:
                return err  # -ERR, then the server closed the connection
            raise
        if line == "PONG":
            return err
        if line.startswith("-ERR") and err is None:
            err = line
        # INFO updates, PINGs and +OKs are not answers.


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--ca")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--server-name")
    ap.add_argument("--user", default="")
    ap.add_argument("--password", default="")
    ap.add_argument("--pub", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=5)
    a = ap.parse_args()

    sock = socket.create_connection((a.host, a.port), timeout=a.timeout)
    f = sock.makefile("rb")
    info_line = readline(f)
    info = json.loads(info_line[len("INFO "):]) if info_line.startswith("INFO ") else {}
    print(f"info tls_required={str(info.get('tls_required', False)).lower()} auth_required={str(info.get('auth_required', False)).lower()}")

    if a.tls:
        ctx = ssl.create_default_context(cafile=a.ca)
        if a.cert:
            ctx.load_cert_chain(a.cert, a.key)
        try:
            sock = ctx.wrap_socket(sock, server_hostname=a.server_name or a.host)
        except (ssl.SSLError, OSError) as e:
            print(f"tls refused: {e}")
            return
        f = sock.makefile("rb")
        print("tls ok")

    connect = {"verbose": False, "pedantic": False, "protocol": 1, "name": "klring-e2e-probe",
               "tls_required": a.tls}
    if a.user:
        connect["user"], connect["pass"] = a.user, a.password
    try:
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        err = until_pong(f)
    except (EOFError, ssl.SSLError, OSError) as e:
        print(f"connect closed: {e}")
        return
    if err:
        # An authorization error is followed by the server closing the
        # connection, not by a PONG; a PONG after -ERR means admitted.
        print(f"connect {err}")
        return
    print("connect PONG")

    for subj in a.pub:
        try:
            sock.sendall(f"PUB {subj} 5\r\nprobe\r\nPING\r\n".encode())
            err = until_pong(f)
        except (EOFError, ssl.SSLError, OSError) as e:
            print(f"pub {subj} closed: {e}")
            return
        print(f"pub {subj} {err or 'ok'}")


if __name__ == "__main__":
    try:
        main()
    except (EOFError, ssl.SSLError, OSError) as e:
        print(f"closed: {e}")
    sys.exit(0)
