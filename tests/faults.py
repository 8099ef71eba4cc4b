"""Real faults between the service and a real Redis: a TCP proxy that loses a reply, a server that stalls."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import redis

from tests.servers import HOST, RedisServer


class DroppingProxy:
    """Forward TCP to a server on 127.0.0.1; on request, close a connection instead of passing its next reply.

    The server has received and run the command by then, so the client sees
    what a crash after the write looks like: a dropped connection, its
    outcome unknown.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"redis://{HOST}:{self.port}/0"
        self._drop = threading.Event()
        self._passing = 0  # replies to pass on before the one dropped
        self.dropped = 0
        self._closing = False
        self._refusing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def refuse_connections(self, refusing: bool = True) -> None:
        """Close every new connection at once (as a server that is down would), or stop doing so."""
        self._refusing = refusing

    def drop_next_reply(self, after: int = 0) -> None:
        """Close the connection that receives a reply, instead of passing it on: the next, or the one ``after`` more."""
        self._passing = after
        self._drop.set()

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept; closing alone would not
        self.listener.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = None if self._refusing else self._connect()
            if server is None:  # refusing, or the server is down: the client sees its connection closed
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _connect(self) -> socket.socket | None:
        try:
            return socket.create_connection((HOST, self.target_port))
        except OSError:
            return None

    def _pipe(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if replies and self._drop.is_set() and self._passing:
                    self._passing -= 1
                elif replies and self._drop.is_set():
                    self._drop.clear()
                    self.dropped += 1
                    break
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


@contextlib.contextmanager
def stalled(server: RedisServer, seconds: float) -> Iterator[None]:
    """Stop the server (SIGSTOP) for the block, then for what remains of ``seconds``, in the background."""
    assert server.process is not None
    pid = server.process.pid
    os.kill(pid, signal.SIGSTOP)
    resume_at = time.monotonic() + seconds

    def resume() -> None:
        time.sleep(max(0.0, resume_at - time.monotonic()))
        os.kill(pid, signal.SIGCONT)

    waker = threading.Thread(target=resume, daemon=True)
    try:
        yield
    finally:
        waker.start()
        waker.join()


def stop_for(pid: int, seconds: float) -> None:
    """Stop a process (SIGSTOP) for ``seconds``, then let it go on (SIGCONT), however the wait ends."""
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def memory_in_use(client: redis.Redis) -> int:
    """Return the bytes a Redis counts against its maxmemory: used_memory less its output buffers (AOF, replicas)."""
    memory = client.info("memory")
    return int(memory["used_memory"]) - int(memory.get("mem_not_counted_for_evict", 0))


@contextlib.contextmanager
def filled(client: redis.Redis, headroom: int = 0) -> Iterator[int]:
    """Cap a Redis's memory at what it uses now plus ``headroom`` bytes, refusing writes beyond (noeviction).

    Yields the cap. Reads go on; writes that need memory are refused (OOM)
    once the cap is reached. The server's maxmemory and policy are put back
    however the block ends.
    """
    before = client.config_get("maxmemory") | client.config_get("maxmemory-policy")
    cap = memory_in_use(client) + headroom
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", cap)
    try:
        yield cap
    finally:
        client.config_set("maxmemory", before["maxmemory"])
        client.config_set("maxmemory-policy", before["maxmemory-policy"])
