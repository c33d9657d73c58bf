#!/usr/bin/env python3
"""Captures the ClientHello a TLS client sends, for the test vectors of
tests/unit/client_hello_test.cpp and the corpus in tests/fuzz/corpus/client_hello/.

Usage: capture_client_hello.py OUT_FILE CLIENT_COMMAND...
Listens on a loopback port, runs CLIENT_COMMAND with every "{port}" replaced by that port,
reads the records that carry the client's first handshake message, writes exactly those bytes
to OUT_FILE, prints them in hex and closes the connection (the client then fails: no server
answers, which is expected). The records are reassembled here independently of the C++ parser
so that a parser bug cannot shape its own test vectors.

  capture_client_hello.py h.bin openssl s_client -connect 127.0.0.1:{port} -servername a.example
  capture_client_hello.py h.bin python3 -c 'import ssl,socket; ...'
"""
import socket
import subprocess
import sys


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise SystemExit(f"client closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    out_file, command = sys.argv[1], sys.argv[2:]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    port = listener.getsockname()[1]
    client = subprocess.Popen([arg.replace("{port}", str(port)) for arg in command],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    conn, _ = listener.accept()
    conn.settimeout(10)
    captured = b""
    handshake = b""
    while len(handshake) < 4 or len(handshake) < 4 + int.from_bytes(handshake[1:4], "big"):
        header = read_exact(conn, 5)
        if header[0] != 22:
            raise SystemExit(f"record type {header[0]} is not handshake")
        payload = read_exact(conn, int.from_bytes(header[3:5], "big"))
        captured += header + payload
        handshake += payload
    if handshake[0] != 1:
        raise SystemExit(f"handshake type {handshake[0]} is not ClientHello")
    conn.close()
    client.kill()
    client.wait()
    with open(out_file, "wb") as f:
        f.write(captured)
    print(captured.hex())


if __name__ == "__main__":
    main()
