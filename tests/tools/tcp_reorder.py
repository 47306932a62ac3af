#!/usr/bin/env python3
"""A TCP client that sends its request in two segments in reverse order, as a reordering network would.

    tcp_reorder.py SRC DST DPORT SPORT REQUEST CUT

Opens a connection from SRC:SPORT to DST:DPORT over a raw socket (IPv4), sends REQUEST[CUT:] first and
REQUEST[:CUT] after it, acknowledges what the server sends, and prints one JSON line:
{"connected": bool, "response": "<first bytes the server sent, or empty>"}.

The kernel knows nothing of this connection and would answer the server's SYN-ACK with a reset: the
caller drops outgoing resets from SPORT (iptables) while it runs.
"""

import json
import random
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def segment(src, dst, sport, dport, seq, ack, flags, payload=b""):
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(header) + len(payload))
    csum = checksum(pseudo + header + payload)
    return header[:16] + struct.pack("!H", csum) + header[18:] + payload


def main():
    src, dst, dport, sport, request, cut = sys.argv[1:7]
    dport, sport, cut = int(dport), int(sport), int(cut)
    request = request.encode().decode("unicode_escape").encode("latin-1")
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    s.bind((src, 0))
    s.settimeout(0.2)
    SYN, ACK, PSH = 0x02, 0x10, 0x08
    isn = random.getrandbits(32)
    send = lambda seq, ack, flags, data=b"": s.sendto(segment(src, dst, sport, dport, seq, ack, flags, data), (dst, 0))

    def receive(until):
        """Segments from the server to us, until `until` (monotonic)."""
        while time.monotonic() < until:
            try:
                packet = s.recv(65535)
            except socket.timeout:
                continue
            ihl = (packet[0] & 0x0F) * 4
            if socket.inet_ntoa(packet[12:16]) != dst:
                continue
            tcp = packet[ihl:]
            psport, pdport, pseq, pack, off, flags = struct.unpack("!HHIIBB", tcp[:14])
            if (psport, pdport) != (dport, sport):
                continue
            yield pseq, flags, tcp[(off >> 4) * 4:]

    server_seq = None
    for _ in range(3):
        send(isn, 0, SYN)
        for seq, flags, _ in receive(time.monotonic() + 1.0):
            if flags & (SYN | ACK) == SYN | ACK:
                server_seq = seq + 1
                break
        if server_seq is not None:
            break
    if server_seq is None:
        print(json.dumps({"connected": False, "response": ""}))
        return
    send(isn + 1, server_seq, ACK)
    first, second = request[:cut], request[cut:]
    send(isn + 1 + len(first), server_seq, PSH | ACK, second)
    time.sleep(0.05)
    send(isn + 1, server_seq, PSH | ACK, first)
    response = b""
    for seq, flags, data in receive(time.monotonic() + 3.0):
        if data:
            response += data
            send(isn + 1 + len(request), seq + len(data), ACK)
            if len(response) >= 12:
                break
    print(json.dumps({"connected": True, "response": response[:64].decode("latin-1")}))


if __name__ == "__main__":
    main()
