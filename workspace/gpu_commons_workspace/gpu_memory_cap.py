"""The soft cap of a shared GPU inside the workspace: PyTorch and TensorFlow told the student's memory.

On a GPU several students share (the spawner sets ``GPU_COMMONS_GPU_MEMORY_MIB``, the student's
cap, and ``GPU_COMMONS_GPU_TOTAL_MIB``, the GPU's memory), JAX and CuPy read their caps from the
environment; PyTorch and TensorFlow have no such setting. So at each start of the workspace's
server this writes an IPython startup file into the student's IPython profile, which every
notebook kernel runs first: when the kernel imports ``torch`` it calls
``torch.cuda.set_per_process_memory_fraction(cap / total)``, when it imports ``tensorflow`` it
gives the GPU a logical device of ``cap`` MiB. Where the cap is enforced (CUDA MPS, HAMi), this
makes an allocation past it fail cleanly in the framework; where it is not (a soft cap), it is all
there is, and a program that removes it or does not use these frameworks can take more. Without
a shared GPU the file is removed again.
"""

from __future__ import annotations

from pathlib import Path

STARTUP_NAME = "00-gpu-commons-gpu-memory-cap.py"

SNIPPET = '''\
# Written by GPU Commons at each start of this workspace: the GPU is shared with other students
# and {mib} MiB of its memory are yours. PyTorch and TensorFlow are told so when a kernel imports
# them. The platform rewrites or removes this file at the next start.
def _gpu_commons_memory_cap():
    import importlib.abc
    import importlib.util
    import os
    import sys

    mib = int(os.environ.get("GPU_COMMONS_GPU_MEMORY_MIB") or 0)
    total = int(os.environ.get("GPU_COMMONS_GPU_TOTAL_MIB") or 0)
    if not mib or not total:
        return

    def torch_cap(torch):
        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(min(1.0, mib / total), 0)

    def tensorflow_cap(tf):
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=mib)])

    hooks = {{"torch": torch_cap, "tensorflow": tensorflow_cap}}

    def run(name, module):
        try:
            hooks.pop(name)(module)
        except Exception as exc:  # the notebook goes on; the student learns the cap was not set
            print(f"GPU Commons: the GPU memory cap ({{mib}} MiB) was not set for {{name}}: {{exc}}", file=sys.stderr)

    class AfterImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in hooks:
                return None
            sys.meta_path.remove(self)  # find the real module, then come back for the other framework
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_then_cap(module):
                exec_module(module)
                run(name, module)

            spec.loader.exec_module = exec_then_cap
            return spec

    for name in list(hooks):
        if name in sys.modules:
            run(name, sys.modules[name])
    sys.meta_path.insert(0, AfterImport())


_gpu_commons_memory_cap()
del _gpu_commons_memory_cap
'''


def startup_file(environ: dict, home: str | Path) -> Path:
    ipython_dir = Path(environ["IPYTHONDIR"]) if environ.get("IPYTHONDIR") else Path(home) / ".ipython"
    return ipython_dir / "profile_default" / "startup" / STARTUP_NAME


def install_startup(environ: dict, home: str | Path, log=None) -> Path | None:
    """Write the startup file where IPython kernels find it (a shared GPU), or remove it (none).
    Returns the file written."""
    path = startup_file(environ, home)
    mib = environ.get("GPU_COMMONS_GPU_MEMORY_MIB")
    try:
        if not mib:
            path.unlink(missing_ok=True)
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SNIPPET.format(mib=int(mib)), encoding="utf-8")
    except OSError as exc:  # a full or read-only home: the workspace still starts
        if log is not None:
            log.warning("GPU memory cap: cannot write %s (%s); PyTorch and TensorFlow are not told the cap", path, exc)
        return None
    if log is not None:
        log.info("GPU memory cap: %s MiB (%s), told to PyTorch and TensorFlow through %s", mib,
                 environ.get("GPU_COMMONS_GPU_CAP", "soft"), path)
    return path


__all__ = ["install_startup", "startup_file", "STARTUP_NAME"]
