"""Several processes, launched by torchrun (never by this repo): which rank this is, its device,
and the few collectives training needs. With no launcher every function is the 1-process case.

    torchrun --nproc_per_node=4 train.py --task=haze     # one prompt, data-parallel
    torchrun --nproc_per_node=4 sample.py folder/ --tasks=rain   # the folder's files shared out

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; init() joins the group
they describe (nccl on CUDA, gloo on CPU and where ranks share a GPU, which nccl refuses).
"""
import os

import torch
import torch.distributed as dist


RANK = int(os.environ.get("RANK", 0))  # this process; torchrun sets both before Python starts
WORLD = int(os.environ.get("WORLD_SIZE", 1))  # processes in all


def joined():
    """How many processes the sums below run over: the group's size once init() joined it, else 1."""
    return dist.get_world_size() if dist.is_initialized() else 1


def device(asked=None):
    """The device this process computes on: --device if given, else this rank's GPU
    (cuda:LOCAL_RANK) when there is one, else the CPU."""
    if asked:
        return torch.device(asked)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


def backend(dev):
    """nccl when each of this node's ranks has a GPU of its own; gloo on the CPU and when ranks share one."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", WORLD))
    return "nccl" if dev.type == "cuda" and local <= torch.cuda.device_count() else "gloo"


def init(dev):
    """Join torchrun's process group (a no-op for one process)."""
    if WORLD > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend(dev))


def finish():
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sum_(x):
    """The sum over the joined ranks of a tensor (in place; returned; x itself with one process). With two ranks a + b == b + a
    exactly, so the result is bit-identical to adding the two in one process."""
    if dist.is_initialized():  # gloo sums CUDA tensors too (ranks sharing a GPU)
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def gather(obj):
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * WORLD
    dist.all_gather_object(out, obj)
    return out
