"""One rank of the multi-node all-reduce check (started by torchrun under SLURM): joins the gloo process group,
all-reduces (rank + 1) and writes {host, rank, world_size, local_rank, sum} to <out>/rank<rank>.json."""

import json
import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
t = torch.tensor([float(rank + 1)])
dist.all_reduce(t)
out = Path(sys.argv[1])
(out / f"rank{rank}.json").write_text(json.dumps({"host": socket.gethostname(), "rank": rank, "world_size": world,
                                                  "local_rank": int(os.environ["LOCAL_RANK"]),
                                                  "sum": t.item()}))
dist.destroy_process_group()
