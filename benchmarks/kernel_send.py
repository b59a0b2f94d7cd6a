"""The kernel's floor under any push server: CPU charged to a process per small TCP send.

On loopback the sending process pays for both ends: its own TCP transmit, and, in the
same softirq, the receiver's TCP receive, the ACK and the receiver's wake-up. No server,
however lean its user space, can deliver a frame for less than this. Run it next to a
fan-out result to see how much of a server's CPU per delivery is left to user space:

    python -m benchmarks.kernel_send --connections 10000 --burst 10 --seconds 10

The sender writes one small websocket-sized frame to each of ``burst`` random connections
per tick (one notify_custom event to a user with ``burst`` connections), at ``rate`` ticks
per second; a separate process reads every connection with epoll, like the load generator.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import selectors
import signal
import socket
import time

# A notify_custom frame of the size the fan-out scenario sends.
_TEXT = b'notify_custom bench {"t":1764037200.123456,"seq":123456}'
FRAME = bytes([0x81, len(_TEXT)]) + _TEXT


def reader(port: int, connections: int, ready_w: int) -> None:
    """Open the connections and read them until the sender closes them."""
    sel = selectors.EpollSelector()
    open_count = 0
    for _ in range(connections):
        c = socket.create_connection(("127.0.0.1", port))
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
        open_count += 1
    os.write(ready_w, b"x")
    while open_count:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(sock)
                sock.close()
                open_count -= 1
    os._exit(0)


def measure(connections: int, burst: int, rate: float, seconds: float) -> dict[str, float]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:
        listener.close()
        reader(port, connections, ready_w)
    conns: list[socket.socket] = []
    for _ in range(connections):
        s, _addr = listener.accept()
        # As every websocket server does: frames go out at once, not after Nagle's delay.
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        conns.append(s)
    listener.close()
    os.read(ready_r, 1)
    os.close(ready_r)
    os.close(ready_w)
    rng = random.Random(1)
    sends = 0
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    next_tick = start
    while time.monotonic() - start < seconds:
        for s in rng.sample(conns, burst):
            s.send(FRAME)
        sends += burst
        next_tick += 1 / rate
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    for s in conns:
        s.close()
    os.waitpid(child, 0)
    user = r1.ru_utime - r0.ru_utime
    sys_ = r1.ru_stime - r0.ru_stime
    return {
        "connections": connections,
        "burst": burst,
        "sends": sends,
        "kernel_us_per_send": round(sys_ / sends * 1e6, 3),
        "user_us_per_send": round(user / sends * 1e6, 3),
        "kernel_us_per_event": round(sys_ / sends * burst * 1e6, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--burst", type=int, default=10, help="sends per event (connections per user)")
    p.add_argument("--rate", type=float, default=1000.0, help="events per second")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    res = measure(a.connections, a.burst, a.rate, a.seconds)
    if a.json:
        print(json.dumps(res))
    else:
        print(
            f"kernel CPU per {len(FRAME)}-byte TCP send on loopback: "
            f"{res['kernel_us_per_send']} µs ({res['kernel_us_per_event']} µs per event of "
            f"{a.burst} sends; {res['sends']:,} sends to {a.connections:,} connections; "
            f"sender's user space {res['user_us_per_send']} µs per send)"
        )


if __name__ == "__main__":
    main()
