"""The MLLP listener (`ehr mllp`): python-hl7's asyncio MLLP framing, our decoding, the shared service.

Connections are served on one asyncio loop; each message is applied in a worker process
chosen by its patient (PID-3), so one patient's messages are applied in the order they
arrived while other patients' run in parallel, on every core (threads would share one).
The messages waiting for a worker when it becomes free go to it together, as one batch
and one commit (group commit): under load a worker's batches grow, and the cost of each
message falls. Every complete frame gets one answer, whatever it holds: an ACK, or AR (CR)
for what cannot be read, or AR (CE) when its worker or the database failed before it was
stored. A connection that sends data outside a frame, a frame over the size limit, a frame
that does not end within `frame_seconds`, or nothing for `idle_seconds` is logged and
closed; the listener keeps serving every other connection. Each peer address may hold
`max_connections_per_peer` connections, and the last `reserved_connections` are kept for
known senders (trusted networks, and addresses whose messages were accepted), so that held
connections from elsewhere cannot lock them out.
The listener also runs a deliverer of the application ACKs queued in the outbox (outbox.py),
woken as soon as a message queues one.
"""
import asyncio
import hashlib
import ipaddress
import logging
import multiprocessing
import os
import signal
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import cache

from hl7.mllp import HL7StreamProtocol, HL7StreamReader, InvalidBlockError
from sqlalchemy import Engine

from app.config import Database
from app.store.db import open_database
from interop.hl7v2.authorities import AuthorityTable
from interop.hl7v2.outbox import Deliverer
from interop.hl7v2.service import ACCEPTED_STATUSES, Receipt, Senders, receive_all, unstored_receipt
from interop.hl7v2.text import patient_key
from interop.tls import server_ssl_context

log = logging.getLogger("ehr.mllp")
DEFAULT_WORKERS = os.cpu_count() or 2  # one per core: the work is CPU-bound
MAX_BATCH_MESSAGES = 64
MAX_BATCH_BYTES = 4 * 1024 * 1024
BETWEEN_FRAMES = b"\r\n\t "  # what senders write between frames besides nothing
MAX_KNOWN_PEERS = 10_000
ORPHAN_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class ListenerSettings:
    host: str = "127.0.0.1"
    port: int = 2575
    max_bytes: int = 16 * 1024 * 1024  # a lab report with an embedded PDF is several MB; python-hl7's default is 64 KiB
    idle_seconds: float = 300.0  # between frames
    frame_seconds: float = 30.0  # from a frame's first byte to its end
    max_connections: int = 200
    max_connections_per_peer: int = 50  # per peer address, trusted networks aside
    reserved_connections: int | None = None  # of max_connections, kept for known senders; None: a tenth
    trusted_networks: tuple[str, ...] = ()  # addresses or networks (10.0.0.0/8) of known senders
    workers: int = DEFAULT_WORKERS  # worker processes, each a queue of patients
    senders: Senders = field(default_factory=Senders)
    tls_certificate: str | None = None
    tls_key: str | None = None
    deliver: bool = True  # send the outbox's application ACKs from this process

    def ssl_context(self) -> ssl.SSLContext | None:
        return server_ssl_context(self.tls_certificate, self.tls_key)


class Listener:
    def __init__(self, database: Database, settings: ListenerSettings):
        self.database, self.settings = database, settings
        self.partitions = [Partition(database, settings.senders) for _ in range(settings.workers)]
        self.peers = PeerAdmission(settings)
        self.deliverer = Deliverer(open_database(database)) if settings.deliver else None
        self.delivering: asyncio.Task | None = None

    async def serve_forever(self) -> None:
        server = await self.start()
        async with server:
            await server.serve_forever()

    async def start(self) -> asyncio.Server:
        settings = self.settings
        server = await start_server(self.handle_connection, settings.host, settings.port, settings.max_bytes, settings.ssl_context())
        log.info("MLLP listener on %s", ", ".join(str(socket.getsockname()) for socket in server.sockets))
        for partition in self.partitions:  # started now: a worker's first message would wait seconds for it
            partition.executor.submit(prepare_worker, self.database)
        if self.deliverer:
            self.delivering = asyncio.create_task(self.deliverer.run_forever())
        return server

    async def handle_connection(self, reader: "FrameReader", writer) -> None:
        peername = writer.get_extra_info("peername")
        peer, address = format_peer(peername), peer_address(peername)
        refusal = self.peers.refusal(address)
        if refusal:
            log.warning("refused connection from %s: %s", peer, refusal)
            writer.close()
            return
        self.peers.opened(address)
        try:
            await self.serve_connection(reader, writer, peer, address)
        finally:
            self.peers.closed(address)
            writer.close()

    async def serve_connection(self, reader: "FrameReader", writer, peer: str, address: str) -> None:
        while True:
            block = await self.next_block(reader, peer)
            if block is None:
                return
            receipt = await self.receipt_of(block, peer)
            if receipt.status in ACCEPTED_STATUSES:
                self.peers.learn(address)
            if receipt.ack is not None and not await self.answered(writer, receipt, peer):
                return
            if receipt.queued_application_ack and self.deliverer:  # after the accept ACK, which it must not overtake
                self.deliverer.wake.set()

    async def answered(self, writer, receipt: Receipt, peer: str) -> bool:
        """Write the answer; False when the peer does not read it within `idle_seconds` or is gone. A sender that asked
        for no answer may never read one: its answer is not waited on."""
        writer.writeblock(receipt.ack.encode(receipt.codec, errors="replace"))
        if not receipt.requested:
            return True
        try:
            await asyncio.wait_for(writer.drain(), self.settings.idle_seconds)
        except asyncio.TimeoutError:
            log.info("closing connection from %s: its answers unread for %.0f s", peer, self.settings.idle_seconds)
            return False
        except (ConnectionError, ssl.SSLError) as error:
            log.warning("connection from %s failed: %s", peer, error)
            return False
        return True

    async def next_block(self, reader: "FrameReader", peer: str) -> bytes | None:
        """The next framed message, or None when the connection is done (closed, idle, a frame that does not end,
        or data outside a frame)."""
        try:
            return await self.block_in_time(reader)
        except asyncio.IncompleteReadError as error:
            if error.partial.strip():
                log.warning("connection from %s closed inside a frame (%d bytes unframed)", peer, len(error.partial))
        except FrameTimeout as timeout:
            log.info("closing connection from %s: %s", peer, timeout)
        except InvalidBlockError:
            log.warning("closing connection from %s: data without an MLLP start block", peer)
        except ValueError:
            log.warning("closing connection from %s: a frame over the %d-byte limit", peer, self.settings.max_bytes)
        except (ConnectionError, ssl.SSLError) as error:
            log.warning("connection from %s failed: %s", peer, error)
        return None

    async def block_in_time(self, reader: "FrameReader") -> bytes:
        """reader.readblock(), within `idle_seconds` of the last frame, and within `frame_seconds` of the first byte of
        this one. Both clocks run from the last frame or first byte, or from now if later: the time spent applying and
        answering the previous frame is not the sender's, and a frame that arrived meanwhile is read, not cut off.
        Each wait lasts at most `frame_seconds`, so that a frame begun during one is cut off in time."""
        settings = self.settings
        waiting_since = time.monotonic()
        reading = asyncio.ensure_future(reader.readblock())
        try:
            while not reading.done():
                now = time.monotonic()
                started = reader.frame_started_at
                if started is not None and now >= max(started, waiting_since) + settings.frame_seconds:
                    raise FrameTimeout(f"a frame unfinished after {settings.frame_seconds:.0f} s")
                if started is None and now >= max(reader.idle_since, waiting_since) + settings.idle_seconds:
                    raise FrameTimeout(f"idle for {settings.idle_seconds:.0f} s")
                deadline = (max(started, waiting_since) + settings.frame_seconds) if started is not None else (
                    min(max(reader.idle_since, waiting_since) + settings.idle_seconds, now + settings.frame_seconds))
                await asyncio.wait({reading}, timeout=max(deadline - now, 0.01))
            return reading.result()
        finally:
            reading.cancel()

    async def receipt_of(self, block: bytes, peer: str) -> Receipt:
        """The message received by its patient's worker; when that failed, the answer of a message not stored."""
        try:
            return await self.partitions[self.partition_of(block)].received(block, peer)
        except Exception as error:  # noqa: BLE001 - the sender gets its answer and sends the message again
            log.exception("applying a message from %s failed; answering it as not stored", peer)
            return unstored_receipt(block, peer, error)

    def partition_of(self, block: bytes) -> int:
        digest = hashlib.blake2b(patient_key(block), digest_size=4).digest()
        return int.from_bytes(digest, "big") % len(self.partitions)

    def close(self) -> None:
        for partition in self.partitions:
            partition.executor.shutdown(wait=True)
        if self.deliverer:
            self.deliverer.engine.dispose()


class FrameTimeout(Exception):
    """A connection idle too long, or a frame not ended in time."""


class FrameReader(HL7StreamReader):
    """python-hl7's MLLP reader that also knows since when the bytes of an unfinished frame have been arriving, so that
    a peer that starts a frame and never ends it is cut off long before an idle one; and that reads past line breaks
    and spaces between frames (senders that end each frame with <FS><CR><LF>), as MLLP release 2 tells receivers to
    ignore what comes before a start block. Other bytes there still close the connection: they cannot be framed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.received = self.taken = 0  # bytes fed by the connection, and bytes read past or of the frames read
        self.frame_started_at: float | None = None
        self.idle_since = time.monotonic()

    def feed_data(self, data: bytes) -> None:
        if self.received == self.taken:  # between frames: blank bytes are no frame's
            blank = len(data) - len(data.lstrip(BETWEEN_FRAMES))
            self.received, self.taken, data = self.received + blank, self.taken + blank, data[blank:]
        if data and self.received == self.taken:
            self.frame_started_at = time.monotonic()
        self.received += len(data)
        super().feed_data(data)

    async def readblock(self) -> bytes:
        block = await super().readblock()
        self.taken += len(block) + 3  # the start block, and the end block with its carriage return
        self.skip_blank_between_frames()
        self.idle_since = time.monotonic()
        self.frame_started_at = self.idle_since if self.received > self.taken else None
        return block

    def skip_blank_between_frames(self) -> None:
        """Drop the line breaks and spaces that came with the frame just read (StreamReader's own buffer)."""
        blank = len(self._buffer) - len(self._buffer.lstrip(BETWEEN_FRAMES))
        del self._buffer[:blank]
        self.taken += blank


async def start_server(connected, host: str, port: int, limit: int, ssl_context: ssl.SSLContext | None) -> asyncio.Server:
    """python-hl7's start_hl7_server, with a FrameReader for each connection."""
    loop = asyncio.get_running_loop()

    def protocol() -> HL7StreamProtocol:
        return HL7StreamProtocol(FrameReader(limit=limit, loop=loop), connected, loop=loop)

    return await loop.create_server(protocol, host, port, ssl=ssl_context)


class PeerAdmission:
    """Which connections a listener takes: at most `max_connections`, `max_connections_per_peer` per address (trusted
    networks aside), and the last `reserved_connections` only from known senders: trusted networks, and addresses
    whose messages this listener accepted (not refused as from a sender it does not take)."""

    def __init__(self, settings: ListenerSettings):
        self.settings = settings
        self.trusted = [ipaddress.ip_network(network, strict=False) for network in settings.trusted_networks]
        self.open: Counter[str] = Counter()
        self.known: set[str] = set()

    def refusal(self, address: str) -> str | None:
        """Why a connection from `address` is refused now; None to take it."""
        settings, total, reserved = self.settings, sum(self.open.values()), self.reserved
        if total >= settings.max_connections:
            return f"{total} connections open"
        if self.open[address] >= settings.max_connections_per_peer and not self.is_trusted(address):
            return f"{self.open[address]} connections open from this address"
        if total >= settings.max_connections - reserved and not self.is_known(address):
            return f"{total} connections open; the last {reserved} are kept for known senders"
        return None

    @property
    def reserved(self) -> int:
        reserved = self.settings.reserved_connections
        return self.settings.max_connections // 10 if reserved is None else reserved

    def is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:10.0.0.7 on a dual-stack listener is 10.0.0.7
        return any(ip in network for network in self.trusted)

    def learn(self, address: str) -> None:
        if len(self.known) < MAX_KNOWN_PEERS:  # a bound: addresses are cheap to make
            self.known.add(address)

    def is_known(self, address: str) -> bool:
        return address in self.known or self.is_trusted(address)

    def opened(self, address: str) -> None:
        self.open[address] += 1

    def closed(self, address: str) -> None:
        self.open[address] -= 1
        if not self.open[address]:
            del self.open[address]


class Partition:
    """A worker process and the FIFO queue of messages waiting for it: a group of patients."""

    def __init__(self, database: Database, senders: Senders):
        self.database, self.senders = database, senders
        self.executor = new_worker()
        self.waiting: list[tuple[bytes, str, asyncio.Future]] = []
        self.pumping = False

    async def received(self, block: bytes, peer: str) -> Receipt:
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
                        self.executor, receive_in_worker, self.database, [(block, peer) for block, peer, _ in batch], self.senders,
                    )
                except BrokenProcessPool as error:
                    log.error("a worker died applying %d messages; each is answered as not stored", len(batch))
                    self.executor = new_worker()
                    receipts = [unstored_receipt(block, peer, error) for block, peer, _ in batch]
                except Exception as error:  # noqa: BLE001 - each message of the batch is answered
                    log.exception("a worker failed applying %d messages; each is answered as not stored", len(batch))
                    receipts = [unstored_receipt(block, peer, error) for block, peer, _ in batch]
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


def peer_address(peername) -> str:
    return str(peername[0]) if isinstance(peername, tuple) and peername else str(peername)


def format_peer(peername) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"mllp:{peername[0]}:{peername[1]}"
    return f"mllp:{peername}"


def new_worker() -> ProcessPoolExecutor:
    """A worker process of its own (spawned: forking a process with an event loop and threads is unsafe)."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=start_worker,
                               initargs=(os.getpid(),))


def start_worker(listener_pid: int) -> None:
    """A worker logs as the listener does, leaves Ctrl-C (SIGINT to the terminal's process group) to the listener,
    which then shuts it down after its batch, and ends when the listener is gone (killed with SIGKILL, say), instead
    of waiting for work forever. The listener passes its pid: it may be gone before the worker has started."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging()
    threading.Thread(target=end_when_orphaned, args=(listener_pid,), daemon=True).start()


def end_when_orphaned(listener_pid: int) -> None:
    while os.getppid() == listener_pid:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(0)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


@cache
def worker_engine(database: Database) -> Engine:
    return open_database(database)


@cache
def worker_authorities(database: Database) -> AuthorityTable:
    return AuthorityTable(worker_engine(database))


def prepare_worker(database: Database) -> None:
    """Start a worker process and open its pooled connection, before its first message."""
    try:
        with worker_engine(database).connect():
            pass
    except Exception as error:  # noqa: BLE001 - the first message answers for the database, as not stored
        log.warning("a worker could not reach the database yet: %s", error)


def receive_in_worker(database: Database, arrivals: list[tuple[bytes, str]], senders: Senders) -> list[Receipt]:
    engine = worker_engine(database)
    try:
        systems = worker_authorities(database).systems()
    except Exception:  # noqa: BLE001 - then the store fails too, and each message is answered so
        systems = {}
    return receive_all(engine, arrivals, senders, systems)
