"""Data-parallel training over torch.distributed: the launcher's environment, collectives with timeouts, gradient
reduction. A job without RANK / WORLD_SIZE in its environment is one process and none of this communicates."""

from r1lab.parallel.context import (DistContext, all_gather_objects, all_reduce_max, all_reduce_sum, barrier,
                                    broadcast_object, close_distributed, gather_lists, init_distributed,
                                    is_main_process, shard_bounds)
from r1lab.parallel.gradients import all_reduce_gradients

__all__ = ["DistContext", "all_gather_objects", "all_reduce_gradients", "all_reduce_max", "all_reduce_sum",
           "barrier", "broadcast_object", "close_distributed", "gather_lists", "init_distributed", "is_main_process", "shard_bounds"]
