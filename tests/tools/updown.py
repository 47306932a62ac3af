#!/usr/bin/env python3
"""An HTTP server for measuring throughput both ways: GET serves files, PUT reads the body and drops it.

    updown.py DIR PORT...
        Listens on each PORT (IPv4 and IPv6). GET /NAME answers with DIR/NAME; PUT /anything reads
        Content-Length bytes and answers 200 with the count it read.
"""

import functools
import http.server
import socket
import sys
import threading


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_PUT(self):
        left = int(self.headers.get("Content-Length", "0"))
        read = 0
        while left > 0:
            chunk = self.rfile.read(min(65536, left))
            if not chunk:
                break
            read += len(chunk)
            left -= len(chunk)
        body = f"{read}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class DualStack(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    directory, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
    handler = functools.partial(Handler, directory=directory)
    servers = [DualStack(("::", port), handler) for port in ports]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
