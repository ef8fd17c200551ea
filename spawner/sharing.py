"""A shared GPU (a pool's ``shared`` in the alliance file): the student's cap, how each backend
holds them to it, and what the student is told.

Several students' workspaces use one GPU at once (time-sliced, no MIG); each has a cap on the
GPU's memory. The backends enforce it where they can (docs/backends.md, "Shared GPUs"):

- ``mps``: CUDA MPS. The MPS control daemon of the GPU server (its pipes in a directory the
  pool's settings name) runs the workspace's CUDA programs; ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``
  caps the memory of each of them (and ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` its compute, when
  the pool sets a compute share). Local and Docker backends, where a daemon runs;
- ``hami``: HAMi on Kubernetes: the pod asks for ``nvidia.com/gpumem`` MiB, enforced in the container;
- ``soft``: nothing on the server can enforce it (no MPS daemon, or the NVIDIA device plugin's
  time-slicing, which shares a GPU with no memory isolation): PyTorch, TensorFlow, JAX and CuPy
  are told the cap through their own settings, and the student is told that it is not enforced.
"""

from __future__ import annotations

import stat
from pathlib import Path

from gpu_commons_i18n import Message, _, _n
from quota.alliance import Alliance, Pool, size_bytes
from spawner.specs import SharedCap


def mps_daemon_runs(pipe_directory: str) -> bool:
    """Whether an MPS control daemon answers in ``pipe_directory``: it creates its ``control``
    pipe there (a FIFO) while it runs."""
    if not pipe_directory:
        return False
    try:
        return stat.S_ISFIFO((Path(pipe_directory) / "control").stat().st_mode)
    except OSError:
        return False


def shared_pool(alliance: Alliance, pool_id: str | None) -> Pool | None:
    for pool in alliance.pools:
        if pool.id == pool_id and pool.shared is not None:
            return pool
    return None


def cap_for(pool: Pool, enforcement: str, mps_pipe_directory: str = "", memory_resource: str = "nvidia.com/gpumem",
            cores_resource: str = "nvidia.com/gpucores") -> SharedCap:
    """The cap of one student on ``pool`` (a pool with ``shared``), held by ``enforcement``."""
    shared = pool.shared
    return SharedCap(
        memory_mib=shared.memory_per_student_mib,
        gpu_memory_mib=size_bytes(shared.gpu_memory) // 1024**2,
        students_per_gpu=shared.students_per_gpu,
        enforcement=enforcement,
        compute_percent=shared.compute_percent_per_student,
        mps_pipe_directory=mps_pipe_directory if enforcement == "mps" else "",
        memory_resource=memory_resource,
        cores_resource=cores_resource,
    )


def cap_env(cap: SharedCap) -> dict[str, str]:
    """The workspace's environment for its share: the cap for the workspace itself
    (``GPU_COMMONS_GPU_*``), MPS's client settings, and the frameworks' own memory settings
    (always: under MPS or HAMi a framework that knows its cap fails cleanly instead of at
    the enforced limit)."""
    fraction = cap.memory_mib / cap.gpu_memory_mib
    env = {
        "GPU_COMMONS_GPU_SHARED": str(cap.students_per_gpu),
        "GPU_COMMONS_GPU_MEMORY_MIB": str(cap.memory_mib),
        "GPU_COMMONS_GPU_TOTAL_MIB": str(cap.gpu_memory_mib),
        "GPU_COMMONS_GPU_CAP": cap.enforcement,
        # JAX: allocate on demand, at most this fraction of the GPU
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{fraction:.4f}",
        # CuPy's memory pool limit, in bytes
        "CUPY_GPU_MEMORY_LIMIT": str(cap.memory_mib * 1024**2),
        # TensorFlow takes the whole GPU at start unless told to grow
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    }
    if cap.enforcement == "mps":
        env["CUDA_MPS_PIPE_DIRECTORY"] = cap.mps_pipe_directory
        # the workspace sees exactly one GPU, its device 0
        env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={cap.memory_mib}M"
        if cap.compute_percent is not None:
            env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(cap.compute_percent)
    return env


def memory_words(mib: int) -> str:
    return f"{mib // 1024} GB" if mib % 1024 == 0 else f"{mib / 1024:.3g} GB" if mib >= 1024 else f"{mib} MB"


def granted_sentence(cap: SharedCap) -> Message:
    """What the student reads on the spawn page once the share is granted: the cap and whether it is enforced."""
    memory = memory_words(cap.memory_mib)
    if cap.enforcement == "mps":
        return _("This GPU is shared: {memory} of its memory is yours, held by CUDA MPS (an allocation past it "
                 "fails with an out-of-memory error).", memory=memory)
    if cap.enforcement == "hami":
        return _("This GPU is shared: {memory} of its memory is yours, held by the cluster (HAMi; an allocation "
                 "past it fails with an out-of-memory error).", memory=memory)
    return _("This GPU is shared: {memory} of its memory is yours. This server cannot enforce it: PyTorch, "
             "TensorFlow, JAX and CuPy are set to stay within it, but code that takes more slows down or stops "
             "the other students on this GPU.", memory=memory)


def form_sentences(alliance: Alliance) -> dict[str, Message]:
    """The profile form's line for each shared-GPU profile: shared by how many, how much memory is the student's."""
    pools = [pool for pool in alliance.pools if pool.shared is not None]
    if not pools:
        return {}
    students = max(pool.shared.students_per_gpu for pool in pools)
    low = min(pool.shared.memory_per_student_mib for pool in pools)
    high = max(pool.shared.memory_per_student_mib for pool in pools)
    if low == high:
        sentence = _n("A shared GPU: up to {n} student uses it at the same time, and {memory} of its memory is yours.",
                      "A shared GPU: up to {n} students use it at the same time, and {memory} of its memory is yours.",
                      students, memory=memory_words(low))
    else:
        sentence = _n("A shared GPU: up to {n} student uses it at the same time, and {low} to {high} of its memory "
                      "is yours (by server).",
                      "A shared GPU: up to {n} students use it at the same time, and {low} to {high} of its memory "
                      "is yours (by server).", students, low=memory_words(low), high=memory_words(high))
    return {profile.id: sentence for profile in alliance.profiles if profile.gpu == "shared"}
