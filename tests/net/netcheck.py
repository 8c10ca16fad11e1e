"""Tiny network tools the lab tests run inside namespaces (`python -m tests.net.netcheck`).

    serve PORT            UDP and TCP on PORT; answers each datagram / connection with the
                          peer address it saw ("ip:port"); prints "ready" once bound
    ask udp|tcp HOST PORT [--again]
                          sends one request and prints the answer ("timeout" and exit 1
                          after 2 s); with --again, from the same socket once more after a
                          line on stdin
"""

from __future__ import annotations

import socket
import sys
import threading


def serve(port: int) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", port))
    tcp.listen()

    def tcp_loop() -> None:
        while True:
            conn, addr = tcp.accept()
            with conn:
                conn.recv(100)
                conn.sendall(f"{addr[0]}:{addr[1]}".encode())

    threading.Thread(target=tcp_loop, daemon=True).start()
    print("ready", flush=True)
    while True:
        _, addr = udp.recvfrom(2000)
        udp.sendto(f"{addr[0]}:{addr[1]}".encode(), addr)


def ask(proto: str, host: str, port: int, again: bool) -> int:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(2.0)
        for attempt in range(2 if again else 1):
            if attempt:
                sys.stdin.readline()
            try:
                if proto == "udp":
                    sock.sendto(b"hello", (host, port))
                    answer = sock.recvfrom(2000)[0]
                else:
                    sock.connect((host, port))
                    sock.sendall(b"hello")
                    answer = sock.recv(2000)
            except OSError as exc:  # socket.timeout included
                print(f"timeout ({exc})", flush=True)
                return 1
            print(answer.decode(), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        sys.exit(ask(sys.argv[2], sys.argv[3], int(sys.argv[4]), "--again" in sys.argv))
