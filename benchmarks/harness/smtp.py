"""An SMTP server on 127.0.0.1 in its own process that accepts, counts and discards mail.

Postfix's `smtp-sink` (C, event-driven; `DEBIAN_FRONTEND=noninteractive apt-get install -y
postfix` ships /usr/sbin/smtp-sink) or, when that is missing or asked for, our asyncio sink
(`python -m harness.smtp PORT COUNT_FILE RCPT_FILE [DELAY_MS]`), which also records every
RCPT TO and, with a delay, answers the end of each message that many ms late (a slow mail
server; each connection waits on its own, as a real server's would).
"""

from __future__ import annotations

import asyncio
import mmap
import os
import re
import signal
import smtplib
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from .common import BENCH, BenchmarkError, free_port, log
from .measure import cpu_seconds

SMTP_SINK = "/usr/sbin/smtp-sink"


class Sink:
    """An SMTP server on 127.0.0.1 in its own process that accepts and discards mail."""

    kind = ""
    describe = ""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def count(self) -> int:
        raise NotImplementedError

    def recipients(self) -> Counter | None:
        """Every RCPT TO so far, if this sink records them (stops the sink)."""
        return None

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) or 0.0 if self.proc else 0.0

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchmarkError(f"the {self.kind} sink exited: {self.output()}")
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as s:
                    s.noop()
                return
            except OSError:
                time.sleep(0.05)
        raise BenchmarkError(f"the {self.kind} sink did not answer on port {self.port}")

    def output(self) -> str:
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class CSink(Sink):
    """Postfix's smtp-sink (C, single process, event-driven); counts with -c."""

    kind = "smtp-sink"
    describe = "Postfix smtp-sink (C), -c counters; no record of recipients"

    def start(self) -> None:
        self.out_path = self.tmp / "smtp-sink.out"
        self.err_path = self.tmp / "smtp-sink.err"
        cmd = [SMTP_SINK, "-c"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root without -u
        cmd += [f"127.0.0.1:{self.port}", "256"]
        self._out = open(self.out_path, "wb")  # noqa: SIM115
        self._err = open(self.err_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err)
        self._reader = open(self.out_path, "rb")  # noqa: SIM115
        self.wait_ready()

    def count(self) -> int:
        # It writes "sess=N quit=N mesg=N\r" whenever "." or QUIT arrives or a session
        # ends; the last record is the current count.
        size = os.fstat(self._reader.fileno()).st_size
        self._reader.seek(max(0, size - 200))
        found = re.findall(rb"mesg=(\d+)", self._reader.read())
        return int(found[-1]) if found else 0

    def output(self) -> str:
        return self.err_path.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        super().stop()
        for f in ("_out", "_err", "_reader"):
            if hasattr(self, f):
                getattr(self, f).close()


class PySink(Sink):
    """Our own asyncio sink (`python -m harness.smtp`), in its own process: counts
    messages in a shared mmap and records every RCPT TO, written out when stopped."""

    kind = "python"
    describe = "asyncio sink in its own process (benchmarks/harness/smtp.py), records RCPT TO"

    def __init__(self, tmp: Path, delay_ms: float = 0.0) -> None:
        super().__init__(tmp)
        self.delay_ms = delay_ms
        if delay_ms:
            self.describe += f", {delay_ms:g} ms per message"

    def start(self) -> None:
        # Named by port: a run may have two sinks (the slow one) in the same temp dir.
        self.count_path = self.tmp / f"pysink-{self.port}.count"
        self.count_path.write_bytes(b"\0" * 8)
        self.rcpt_path = self.tmp / f"pysink-{self.port}.rcpt"
        self.err_path = self.tmp / f"pysink-{self.port}.err"
        self._err = open(self.err_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness.smtp",
                str(self.port),
                str(self.count_path),
                str(self.rcpt_path),
                str(self.delay_ms),
            ],
            cwd=BENCH,
            stdout=self._err,
            stderr=subprocess.STDOUT,
        )
        self._file = open(self.count_path, "r+b")  # noqa: SIM115
        self._map = mmap.mmap(self._file.fileno(), 8)
        self.wait_ready()

    def count(self) -> int:
        return struct.unpack("q", self._map[:8])[0]

    def recipients(self) -> Counter:
        self.stop()
        counts: Counter = Counter()
        for line in self.rcpt_path.read_text().splitlines():
            addr, _, n = line.rpartition("\t")
            counts[addr] = int(n)
        return counts

    def output(self) -> str:
        return self.err_path.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        super().stop()
        if hasattr(self, "_err"):
            self._err.close()


def serve_sink(port: int, count_path: str, rcpt_path: str, delay_ms: float = 0.0) -> None:
    """The Python sink: one asyncio loop, a minimal ESMTP dialogue, nothing kept but counts.

    With `delay_ms`, the answer to each message's end (and whatever the client pipelined
    after it) goes out that long after the end arrived, per connection: a server that
    takes `delay_ms` per message, serving connections in parallel."""
    delay = delay_ms / 1000.0
    counter_file = open(count_path, "r+b")  # noqa: SIM115
    counter = mmap.mmap(counter_file.fileno(), 8)
    received = [0]
    rcpts: Counter = Counter()

    class Session(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.t = transport
            self.buf = bytearray()
            self.data = False
            self.rcpt: list[str] = []
            self.ready_at = 0.0  # with a delay: nothing is answered before this time
            self.queue: list[tuple[float, bytes]] = []
            transport.write(b"220 sink ESMTP\r\n")

        def answer(self, replies: list[bytes], at: float) -> None:
            """Write `replies` at `at` (loop time), after everything queued before."""
            loop = asyncio.get_running_loop()
            if not self.queue and at <= loop.time():
                self.t.write(b"".join(replies))
                return
            self.queue.append((at, b"".join(replies)))
            if len(self.queue) == 1:
                loop.call_at(at, self.drain)

        def drain(self) -> None:
            loop = asyncio.get_running_loop()
            while self.queue and self.queue[0][0] <= loop.time():
                if not self.t.is_closing():
                    self.t.write(self.queue[0][1])
                self.queue.pop(0)
            if self.queue:
                loop.call_at(self.queue[0][0], self.drain)

        def data_received(self, chunk: bytes) -> None:
            buf = self.buf
            buf += chunk
            replies = []
            at = 0.0
            while True:
                if self.data:
                    end = buf.find(b"\r\n.\r\n")
                    if end < 0:
                        if len(buf) > 4:
                            del buf[:-4]
                        break
                    del buf[: end + 5]
                    self.data = False
                    received[0] += 1
                    counter[:8] = struct.pack("q", received[0])
                    for r in self.rcpt:
                        rcpts[r] += 1
                    self.rcpt = []
                    if delay:
                        # What was answered so far goes now; this answer and the rest later.
                        if replies:
                            self.answer(replies, max(at, self.ready_at))
                            replies = []
                        now = asyncio.get_running_loop().time()
                        self.ready_at = at = max(now, self.ready_at) + delay
                    replies.append(b"250 2.0.0 Ok: queued\r\n")
                    continue
                end = buf.find(b"\r\n")
                if end < 0:
                    break
                line = bytes(buf[:end])
                del buf[: end + 2]
                verb = line[:4].upper()
                if verb == b"EHLO":
                    replies.append(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE\r\n")
                elif verb == b"RCPT":
                    addr = line.split(b":", 1)[1].strip().split(b" ", 1)[0].strip(b"<>")
                    self.rcpt.append(addr.decode("ascii", "replace"))
                    replies.append(b"250 2.1.5 Ok\r\n")
                elif verb == b"DATA":
                    self.data = True
                    buf[:0] = b"\r\n"  # so an empty message still ends on "\r\n.\r\n"
                    replies.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                elif verb == b"QUIT":
                    replies.append(b"221 2.0.0 Bye\r\n")
                    if delay and (self.queue or at):
                        self.answer(replies, max(at, self.ready_at))
                        asyncio.get_running_loop().call_at(
                            max(at, self.ready_at) + 0.001, self.t.close
                        )
                    else:
                        self.t.write(b"".join(replies))
                        self.t.close()
                    return
                elif verb == b"RSET":
                    self.rcpt = []
                    replies.append(b"250 2.0.0 Ok\r\n")
                else:  # HELO, MAIL, NOOP, ...
                    replies.append(b"250 2.0.0 Ok\r\n")
            if replies:
                if delay:
                    self.answer(replies, max(at, self.ready_at))
                else:
                    self.t.write(b"".join(replies))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        server = await loop.create_server(Session, "127.0.0.1", port, backlog=256)
        await stop.wait()
        server.close()

    asyncio.run(main())
    with open(rcpt_path, "w") as f:
        f.writelines(f"{a}\t{n}\n" for a, n in rcpts.items())


def pick_sink(choice: str, tmp: Path) -> Sink:
    """--sink: auto (smtp-sink if installed, else ours), smtp-sink or python."""
    if choice == "python":
        return PySink(tmp)
    if os.access(SMTP_SINK, os.X_OK):
        return CSink(tmp)
    if choice == "smtp-sink":
        raise BenchmarkError(
            f"{SMTP_SINK} not found: `DEBIAN_FRONTEND=noninteractive apt-get install -y postfix` "
            "ships it (or use --sink python)"
        )
    log(f"{SMTP_SINK} not found: using the Python sink")
    return PySink(tmp)


if __name__ == "__main__":
    serve_sink(
        int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 0
    )
