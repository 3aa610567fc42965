"""The floor of bench/kernel_latency.py: the least a Jupyter kernel can do over pyzmq.

    python bench/echo_kernel.py CONNECTION_FILE [--execute-messages]

Shell and control ROUTER sockets, an IOPub PUB socket and a heartbeat REP, messages read and
written with ``jupyter_client.Session`` (HMAC signing and checking included, as every kernel
does). Every request is answered the same way: ``status: busy`` on IOPub, the reply on its
socket, ``status: idle``. ``execute_request`` gets ``execute_reply`` (status ok, an execution
count); ``kernel_info_request`` a minimal ``kernel_info_reply``; ``shutdown_request`` its reply,
and the process exits. No output, no history, no threads besides pyzmq's I/O thread.

With ``--execute-messages`` an ``execute_request`` also publishes what the protocol has any kernel
publish for a cell whose value is shown: ``execute_input`` and an ``execute_result``
(``kernel_latency.py --floor-messages``: the floor of a kernel that answers ``1`` with ``1``).
"""

from __future__ import annotations

import json
import sys

import zmq
from jupyter_client.session import Session

KERNEL_INFO = {
    "status": "ok",
    "protocol_version": "5.3",
    "implementation": "echo",
    "implementation_version": "0",
    "language_info": {"name": "text", "version": "0", "mimetype": "text/plain", "file_extension": ".txt"},
    "banner": "echo kernel (benchmark floor)",
    "help_links": [],
}


def main(connection_file: str, execute_messages: bool = False) -> int:
    with open(connection_file) as f:
        info = json.load(f)
    session = Session(key=info["key"].encode(), signature_scheme=info.get("signature_scheme", "hmac-sha256"))
    ctx = zmq.Context()
    url = f"{info['transport']}://{info['ip']}:"

    def bind(kind: int, port: str) -> zmq.Socket:
        sock = ctx.socket(kind)
        sock.linger = 0
        sock.bind(url + str(info[port]))
        return sock

    shell, control = bind(zmq.ROUTER, "shell_port"), bind(zmq.ROUTER, "control_port")
    iopub, hb = bind(zmq.PUB, "iopub_port"), bind(zmq.REP, "hb_port")
    bind(zmq.ROUTER, "stdin_port")  # bound so that clients connecting to it succeed; never used
    poller = zmq.Poller()
    for sock in (shell, control, hb):
        poller.register(sock, zmq.POLLIN)
    count = 0
    while True:
        for sock, _ in poller.poll():
            if sock is hb:
                hb.send(hb.recv())
                continue
            idents, frames = session.feed_identities(sock.recv_multipart(copy=False), copy=False)
            msg = session.deserialize(frames, content=True, copy=False)
            kind = msg["header"]["msg_type"]
            parent = msg["header"]
            session.send(iopub, "status", {"execution_state": "busy"}, parent=parent)
            if kind == "execute_request":
                count += 1
                if execute_messages:
                    session.send(iopub, "execute_input", {"code": msg["content"].get("code", ""),
                                                          "execution_count": count}, parent=parent)
                    session.send(iopub, "execute_result", {"execution_count": count, "metadata": {},
                                                           "data": {"text/plain": msg["content"].get("code", "")}},
                                 parent=parent)
                session.send(sock, "execute_reply", {"status": "ok", "execution_count": count,
                                                     "user_expressions": {}, "payload": []},
                             parent=parent, ident=idents)
            elif kind == "kernel_info_request":
                session.send(sock, "kernel_info_reply", KERNEL_INFO, parent=parent, ident=idents)
            elif kind == "shutdown_request":
                session.send(sock, "shutdown_reply", {"status": "ok", "restart": False}, parent=parent, ident=idents)
                session.send(iopub, "status", {"execution_state": "idle"}, parent=parent)
                ctx.destroy(linger=100)
                return 0
            else:
                reply = kind.replace("_request", "_reply")
                session.send(sock, reply, {"status": "ok"}, parent=parent, ident=idents)
            session.send(iopub, "status", {"execution_state": "idle"}, parent=parent)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], "--execute-messages" in sys.argv[2:]))
