"""The MLLP listener (`ehr mllp`): python-hl7's asyncio MLLP framing, our decoding, the shared service.

Connections are served on one asyncio loop; each message is applied on a worker thread
chosen by its patient (PID-3), so one patient's messages are applied in the order they
arrived while other patients' run in parallel. A connection that sends garbage, a frame
over the size limit, or nothing for `idle_seconds` is logged and closed; the listener
keeps serving every other connection.
"""
import asyncio
import hashlib
import logging
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from hl7.mllp import InvalidBlockError, start_hl7_server
from sqlalchemy import Engine

from interop.hl7v2.service import Senders, receive
from interop.hl7v2.text import patient_key

log = logging.getLogger("ehr.mllp")


@dataclass(frozen=True)
class ListenerSettings:
    host: str = "127.0.0.1"
    port: int = 2575
    max_bytes: int = 16 * 1024 * 1024  # a lab report with an embedded PDF is several MB; python-hl7's default is 64 KiB
    idle_seconds: float = 300.0
    max_connections: int = 200
    workers: int = 4
    senders: Senders = field(default_factory=Senders)
    tls_certificate: str | None = None
    tls_key: str | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls_certificate:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls_certificate, self.tls_key)
        return context


class Listener:
    def __init__(self, engine: Engine, settings: ListenerSettings):
        self.engine, self.settings = engine, settings
        # one single-thread executor per partition: a FIFO queue per group of patients
        self.partitions = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hl7-{n}") for n in range(settings.workers)]
        self.connections = 0

    async def serve_forever(self) -> None:
        server = await self.start()
        async with server:
            await server.serve_forever()

    async def start(self) -> asyncio.Server:
        settings = self.settings
        server = await start_hl7_server(
            self.handle_connection, settings.host, settings.port, limit=settings.max_bytes, ssl=settings.ssl_context(),
        )
        log.info("MLLP listener on %s", ", ".join(str(socket.getsockname()) for socket in server.sockets))
        return server

    async def handle_connection(self, reader, writer) -> None:
        peer = format_peer(writer.get_extra_info("peername"))
        if self.connections >= self.settings.max_connections:
            log.warning("refused connection from %s: %d connections open", peer, self.connections)
            writer.close()
            return
        self.connections += 1
        try:
            await self.serve_connection(reader, writer, peer)
        finally:
            self.connections -= 1
            writer.close()

    async def serve_connection(self, reader, writer, peer: str) -> None:
        while True:
            block = await self.next_block(reader, peer)
            if block is None:
                return
            receipt = await asyncio.get_running_loop().run_in_executor(
                self.partition_of(block), receive, self.engine, block, peer, self.settings.senders,
            )
            if receipt.unreadable:
                return  # not HL7: there is no MSH to answer, and what follows cannot be trusted either
            if receipt.ack is not None:
                writer.writeblock(receipt.ack.encode(receipt.codec, errors="replace"))
                await writer.drain()

    async def next_block(self, reader, peer: str) -> bytes | None:
        """The next framed message, or None when the connection is done (closed, idle, or sending garbage)."""
        try:
            return await asyncio.wait_for(reader.readblock(), self.settings.idle_seconds)
        except asyncio.IncompleteReadError as error:
            if error.partial.strip():
                log.warning("connection from %s closed inside a frame (%d bytes unframed)", peer, len(error.partial))
        except asyncio.TimeoutError:
            log.info("closing connection from %s: idle for %.0f s", peer, self.settings.idle_seconds)
        except InvalidBlockError:
            log.warning("closing connection from %s: data without an MLLP start block", peer)
        except ValueError:
            log.warning("closing connection from %s: a frame over the %d-byte limit", peer, self.settings.max_bytes)
        except (ConnectionError, ssl.SSLError) as error:
            log.warning("connection from %s failed: %s", peer, error)
        return None

    def partition_of(self, block: bytes) -> ThreadPoolExecutor:
        digest = hashlib.blake2b(patient_key(block), digest_size=4).digest()
        return self.partitions[int.from_bytes(digest, "big") % len(self.partitions)]

    def close(self) -> None:
        for partition in self.partitions:
            partition.shutdown(wait=True)


def format_peer(peername) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"mllp:{peername[0]}:{peername[1]}"
    return f"mllp:{peername}"
