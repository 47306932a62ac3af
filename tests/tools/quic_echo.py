#!/usr/bin/env python3
"""A QUIC echo server and client on aioquic, for the live QUIC test (tests/live_quic.rs).

    quic_echo.py serve CERT KEY PORT
        Listens on PORT (IPv4 and IPv6) with ALPN "echo"; sends each stream's data back on it.

    quic_echo.py send HOST PORT SNI PAD
        Connects to HOST:PORT naming SNI (the certificate is not checked), sends "ping" on a stream and
        prints what comes back. PAD more ALPN names of 200 bytes each make the ClientHello larger, so that
        it spans several Initial datagrams (aioquic sends no post-quantum key share, whose size does that
        for browsers). Exit 0 when the echo came back within 5 s, 1 otherwise.
"""

import asyncio
import ssl
import sys

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamDataReceived


class Echo(QuicConnectionProtocol):
    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            self._quic.send_stream_data(event.stream_id, event.data, end_stream=event.end_stream)
            self.transmit()


async def run_server(cert, key, port):
    config = QuicConfiguration(is_client=False, alpn_protocols=["echo"])
    config.load_cert_chain(cert, key)
    await serve("::", port, configuration=config, create_protocol=Echo)
    await asyncio.Future()


async def run_client(host, port, sni, pad):
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=["echo"] + ["x" * 200] * pad,
        server_name=sni,
        verify_mode=ssl.CERT_NONE,
    )
    async with connect(host, port, configuration=config) as client:
        reader, writer = await client.create_stream()
        writer.write(b"ping")
        writer.write_eof()
        return await reader.read()


def main():
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 5:
        asyncio.run(run_server(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif sys.argv[1:2] == ["send"] and len(sys.argv) == 6:
        host, port, sni, pad = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
        try:
            data = asyncio.run(asyncio.wait_for(run_client(host, port, sni, pad), 5))
        except (asyncio.TimeoutError, ConnectionError) as e:
            print(f"no echo: {e!r}", file=sys.stderr)
            sys.exit(1)
        print(data.decode(errors="replace"))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
