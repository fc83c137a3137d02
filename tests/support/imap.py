"""A small IMAP4rev1 server on loopback: enough of RFC 3501 for the bounce reader
(LOGIN, SELECT, UID SEARCH UNSEEN, UID FETCH BODY.PEEK[], UID STORE +FLAGS, LOGOUT)."""

from __future__ import annotations

import re
import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class StoredMessage:
    raw: bytes
    flags: set[str] = field(default_factory=set)


class IMAPServer:
    def __init__(self, username: str = "bounces", password: str = "hemmeligt-kodeord") -> None:  # noqa: S107
        self.username = username
        self.password = password
        self.folders: dict[str, list[StoredMessage]] = {"INBOX": []}
        self.commands: list[str] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                outer._session(self.rfile, self.wfile)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, raw: bytes, folder: str = "INBOX") -> None:
        self.folders.setdefault(folder, []).append(StoredMessage(raw))

    def start(self) -> IMAPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _session(self, rfile, wfile) -> None:
        def send(line: str | bytes) -> None:
            wfile.write(line if isinstance(line, bytes) else line.encode())
            wfile.flush()

        send("* OK [CAPABILITY IMAP4rev1] test server ready\r\n")
        logged_in = False
        folder: list[StoredMessage] | None = None
        while True:
            line = rfile.readline()
            if not line:
                return
            text = line.decode().rstrip("\r\n")
            self.commands.append(text)
            tag, _, rest = text.partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            if command == "CAPABILITY":
                send(f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n")
            elif command == "LOGIN":
                user, password = (a.strip('"') for a in args.split(" ", 1))
                if user == self.username and password == self.password:
                    logged_in = True
                    send(f"{tag} OK logged in\r\n")
                else:
                    send(f"{tag} NO [AUTHENTICATIONFAILED] invalid credentials\r\n")
            elif command == "SELECT" and logged_in:
                name = args.strip('"')
                if name not in self.folders:
                    send(f"{tag} NO no such mailbox\r\n")
                    continue
                folder = self.folders[name]
                send(
                    f"* {len(folder)} EXISTS\r\n* FLAGS (\\Seen)\r\n{tag} OK [READ-WRITE] done\r\n"
                )
            elif command == "UID" and folder is not None:
                sub, _, sub_args = args.partition(" ")
                sub = sub.upper()
                if sub == "SEARCH":
                    uids = [str(i + 1) for i, m in enumerate(folder) if "\\Seen" not in m.flags]
                    send(f"* SEARCH {' '.join(uids)}\r\n{tag} OK done\r\n")
                elif sub == "FETCH":
                    uid = int(sub_args.split(" ")[0])
                    message = folder[uid - 1]
                    send(f"* {uid} FETCH (UID {uid} BODY[] {{{len(message.raw)}}}\r\n".encode())
                    send(message.raw + b")\r\n")
                    send(f"{tag} OK done\r\n")
                elif sub == "STORE":
                    uid = int(sub_args.split(" ")[0])
                    flags = re.findall(r"\\\w+", sub_args)
                    folder[uid - 1].flags.update(flags)
                    send(f"* {uid} FETCH (UID {uid} FLAGS ({' '.join(folder[uid - 1].flags)}))\r\n")
                    send(f"{tag} OK done\r\n")
                else:
                    send(f"{tag} BAD unknown UID command\r\n")
            elif command == "LOGOUT":
                send(f"* BYE\r\n{tag} OK bye\r\n")
                return
            else:
                send(f"{tag} BAD not supported here\r\n")
