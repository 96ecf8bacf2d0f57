"""Stands in for torchrun in the rendezvous-port test (cpt.launch.plan's argv with this as `torchrun`): node rank 0
binds and listens on the --rdzv_endpoint port exactly as torchrun's store would, while srun's own sockets are open
on that host; the other nodes connect to it. Exit 98 (and a line naming the port) when the bind fails."""

import argparse
import socket
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--node_rank", type=int)
p.add_argument("--nnodes", type=int)
p.add_argument("--rdzv_endpoint")
args, _ = p.parse_known_args()
host, port = args.rdzv_endpoint.rsplit(":", 1)
if args.node_rank == 0:
    s = socket.socket()
    try:
        s.bind(("", int(port)))
    except OSError as exc:
        print(f"rdzv_probe: EADDRINUSE? cannot bind rendezvous port {port}: {exc}", flush=True)
        sys.exit(98)
    s.listen()
    s.settimeout(60)
    for _ in range(args.nnodes - 1):
        conn, _ = s.accept()
        conn.sendall(b"ok")
        conn.close()
    print(f"rdzv_probe: port {port} served {args.nnodes - 1} node(s)", flush=True)
else:
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=5) as c:
                assert c.recv(2) == b"ok"
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
