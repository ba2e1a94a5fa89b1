"""The MLLP listener (`ehr mllp`): python-hl7's asyncio MLLP framing, our decoding, the shared service.

Connections are served on one asyncio loop; each message is applied in a worker process
chosen by its patient (PID-3), so one patient's messages are applied in the order they
arrived while other patients' run in parallel, on every core (threads would share one).
The messages waiting for a worker when it becomes free go to it together, as one batch
and one commit (group commit): under load a worker's batches grow, and the cost of each
message falls. A connection that sends garbage, a frame over the size limit, or nothing
for `idle_seconds` is logged and closed; the listener keeps serving every other connection.
The listener also runs a deliverer of the application ACKs queued in the outbox (outbox.py),
woken as soon as a message queues one.
"""
import asyncio
import hashlib
import logging
import multiprocessing
import os
import ssl
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import cache

from hl7.mllp import InvalidBlockError, start_hl7_server
from sqlalchemy import Engine

from app.store.db import make_engine
from interop.hl7v2.outbox import Deliverer
from interop.hl7v2.service import Receipt, Senders, receive_all
from interop.hl7v2.text import patient_key

log = logging.getLogger("ehr.mllp")
DEFAULT_WORKERS = os.cpu_count() or 2  # one per core: the work is CPU-bound
MAX_BATCH_MESSAGES = 64
MAX_BATCH_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ListenerSettings:
    host: str = "127.0.0.1"
    port: int = 2575
    max_bytes: int = 16 * 1024 * 1024  # a lab report with an embedded PDF is several MB; python-hl7's default is 64 KiB
    idle_seconds: float = 300.0
    max_connections: int = 200
    workers: int = DEFAULT_WORKERS  # worker processes, each a queue of patients
    senders: Senders = field(default_factory=Senders)
    tls_certificate: str | None = None
    tls_key: str | None = None
    deliver: bool = True  # send the outbox's application ACKs from this process

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls_certificate:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls_certificate, self.tls_key)
        return context


class Listener:
    def __init__(self, database_url: str, settings: ListenerSettings):
        self.database_url, self.settings = database_url, settings
        self.partitions = [Partition(database_url, settings.senders) for _ in range(settings.workers)]
        self.connections = 0
        self.deliverer = Deliverer(make_engine(database_url)) if settings.deliver else None
        self.delivering: asyncio.Task | None = None

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
        if self.deliverer:
            self.delivering = asyncio.create_task(self.deliverer.run_forever())
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
            receipt = await self.applied(block, peer)
            if receipt is None or receipt.unreadable:
                return  # not HL7: there is no MSH to answer, and what follows cannot be trusted either
            if receipt.ack is not None:
                writer.writeblock(receipt.ack.encode(receipt.codec, errors="replace"))
                await writer.drain()
            if receipt.queued_application_ack and self.deliverer:  # after the accept ACK, which it must not overtake
                self.deliverer.wake.set()

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

    async def applied(self, block: bytes, peer: str) -> Receipt | None:
        """The message received by its patient's worker; None (no ACK: the sender will re-send) if that failed."""
        try:
            return await self.partitions[self.partition_of(block)].received(block, peer)
        except Exception:
            log.exception("applying a message from %s failed; closing the connection unacknowledged", peer)
            return None

    def partition_of(self, block: bytes) -> int:
        digest = hashlib.blake2b(patient_key(block), digest_size=4).digest()
        return int.from_bytes(digest, "big") % len(self.partitions)

    def close(self) -> None:
        for partition in self.partitions:
            partition.executor.shutdown(wait=True)
        if self.deliverer:
            self.deliverer.engine.dispose()


class Partition:
    """A worker process and the FIFO queue of messages waiting for it: a group of patients."""

    def __init__(self, database_url: str, senders: Senders):
        self.database_url, self.senders = database_url, senders
        self.executor = new_worker()
        self.waiting: list[tuple[bytes, str, asyncio.Future]] = []
        self.pumping = False

    async def received(self, block: bytes, peer: str) -> Receipt | None:
        receipt = asyncio.get_running_loop().create_future()
        self.waiting.append((block, peer, receipt))
        if not self.pumping:
            self.pumping = True
            asyncio.create_task(self.pump())
        return await receipt

    async def pump(self) -> None:
        """Pass what waits to the worker, batch after batch, until nothing waits."""
        try:
            while self.waiting:
                batch = self.next_batch()
                try:
                    receipts = await asyncio.get_running_loop().run_in_executor(
                        self.executor, receive_in_worker, self.database_url, [(block, peer) for block, peer, _ in batch], self.senders,
                    )
                except BrokenProcessPool:
                    log.error("a worker died applying %d messages; their connections close unacknowledged", len(batch))
                    self.executor = new_worker()
                    receipts = [None] * len(batch)
                except Exception as error:
                    for _, _, receipt in batch:
                        receipt.set_exception(error)
                    continue
                for (_, _, receipt), outcome in zip(batch, receipts):
                    receipt.set_result(outcome)
        finally:
            self.pumping = False

    def next_batch(self) -> list[tuple[bytes, str, asyncio.Future]]:
        """The oldest waiting messages, up to MAX_BATCH_MESSAGES and MAX_BATCH_BYTES (at least one)."""
        count = size = 0
        for block, _, _ in self.waiting[:MAX_BATCH_MESSAGES]:
            if count and size + len(block) > MAX_BATCH_BYTES:
                break
            count, size = count + 1, size + len(block)
        batch, self.waiting = self.waiting[:count], self.waiting[count:]
        return batch


def format_peer(peername) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"mllp:{peername[0]}:{peername[1]}"
    return f"mllp:{peername}"


def new_worker() -> ProcessPoolExecutor:
    """A worker process of its own (spawned: forking a process with an event loop and threads is unsafe)."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=configure_logging)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


@cache
def worker_engine(database_url: str) -> Engine:
    return make_engine(database_url)


def receive_in_worker(database_url: str, arrivals: list[tuple[bytes, str]], senders: Senders) -> list[Receipt]:
    return receive_all(worker_engine(database_url), arrivals, senders)
