"""Fair-share GPU allocation across schools: a pure, deterministic allocator.

Plain data in (:mod:`quota.fairshare.model`), decisions and actions out
(:class:`quota.fairshare.policy.Allocator`). The quota service and the simulator are
adapters around it; :func:`quota.allocator_inputs.allocator_inputs` builds its
inputs from an alliance file.
"""

from quota.fairshare.model import (
    Admit, Config, PoolSpec, Queue, Refuse, Renew, Request, Reservation, SchoolSpec, Stop, Warn,
    fcfs_config, static_config,
)
from quota.fairshare.policy import Allocator
from quota.fairshare.reservations import ReservationError

__all__ = [
    "Admit", "Allocator", "Config", "PoolSpec", "Queue", "Refuse", "Renew", "Request", "Reservation",
    "ReservationError", "SchoolSpec", "Stop", "Warn", "fcfs_config", "static_config",
]
