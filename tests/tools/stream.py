#!/usr/bin/env python3
"""Long-lived TCP connections that carry a numbered line every 50 ms, to watch what a filter does to them;
and a UDP flow that does the same with datagrams.

    stream.py serve LOG PORT...
        Listens on each PORT (IPv4 and IPv6) and appends "PORT SEQ UNIXTIME" to LOG for every line
        received on any connection.

    stream.py send SERVER SECONDS PORT[:FIRST]...
        Opens one connection to SERVER:PORT for each PORT (FIRST, if given, is sent first, with "\\r\\n"
        written as \\r\\n), then sends "PORT SEQ\\n" every 50 ms on each for SECONDS. Prints one JSON
        object: for each port, the lines sent and the socket's tcpi_total_retrans (the segments the
        kernel had to send again: 0 means no packet of it was lost).

    stream.py udp SERVER SECONDS PORT
        Sends a datagram "SEQ" every 50 ms for SECONDS from one socket to SERVER:PORT, an echo server,
        and reads the echoes (for half a second more at the end). Prints one JSON object: datagrams
        sent, echoes received, the last sequence number sent and the last echoed.
"""

import json
import socket
import struct
import sys
import threading
import time


def serve(log, ports):
    out = open(log, "a", buffering=1)
    lock = threading.Lock()

    def handle(conn, port):
        buf = b""
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                words = line.split()
                if len(words) == 2 and words[0] == str(port).encode():
                    with lock:
                        out.write("%d %s %.3f\n" % (port, words[1].decode(), time.time()))

    def listen(port):
        l = socket.socket(socket.AF_INET6)
        l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        l.bind(("::", port))
        l.listen(16)
        while True:
            conn, _ = l.accept()
            threading.Thread(target=handle, args=(conn, port), daemon=True).start()

    for port in ports:
        threading.Thread(target=listen, args=(int(port),), daemon=True).start()
    while True:
        time.sleep(3600)


def send(server, seconds, specs):
    conns = []
    for spec in specs:
        port, _, first = spec.partition(":")
        s = socket.create_connection((server, int(port)), timeout=5)
        s.setblocking(False)
        if first:
            s.sendall(first.replace("\\r\\n", "\r\n").encode())
        conns.append((int(port), s))
    sent = {port: 0 for port, _ in conns}
    end = time.time() + seconds
    seq = 0
    while time.time() < end:
        for port, s in conns:
            try:
                s.send(b"%d %d\n" % (port, seq))
                sent[port] += 1
            except OSError:
                pass
        seq += 1
        time.sleep(0.05)
    result = {}
    for port, s in conns:
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        result[str(port)] = {"sent": sent[port], "retrans": struct.unpack_from("I", info, 100)[0]}
    print(json.dumps(result))


def udp(server, seconds, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((server, int(port)))
    s.settimeout(0.01)
    sent, received, last_echoed = 0, 0, -1
    end = time.time() + seconds
    next_send = time.time()
    while time.time() < end + 0.5:
        now = time.time()
        if now < end and now >= next_send:
            try:
                s.send(b"%d" % sent)
                sent += 1
            except OSError:
                pass
            next_send += 0.05
        try:
            data = s.recv(64)
            received += 1
            last_echoed = max(last_echoed, int(data))
        except (socket.timeout, OSError, ValueError):
            pass
    print(json.dumps({"sent": sent, "received": received, "last_sent": sent - 1,
                      "last_echoed": last_echoed}))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "udp":
        udp(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    else:
        send(sys.argv[2], float(sys.argv[3]), sys.argv[4:])
