# Stand-in for nvidia-container-runtime-hook on the test engine, which has no GPU.
#
# dockerd registers its "nvidia" device driver only when this hook is on its PATH; it then
# turns a device request into NVIDIA_VISIBLE_DEVICES in the container's OCI spec and runs the
# hook before the container starts, with the container's state on stdin. Like the real one,
# this hook refuses devices the host does not have (FAKE_GPU_DEVICES) with nvidia-container-cli's
# message, and records what it granted (FAKE_GPU_LOG). The interpreter line is added when it is
# installed (tests/docker_engine.py).
import json
import os
import sys
from pathlib import Path

state = json.load(sys.stdin)
spec = json.loads((Path(state["bundle"]) / "config.json").read_text())
env = dict(item.split("=", 1) for item in spec.get("process", {}).get("env", []))
requested = [d for d in env.get("NVIDIA_VISIBLE_DEVICES", "").split(",") if d and d not in ("void", "none")]
present = set(os.environ.get("FAKE_GPU_DEVICES", "").split(","))
with open(os.environ.get("FAKE_GPU_LOG", "/dev/null"), "a") as log:
    for device in requested:
        if device not in present:
            log.write(f"refused {device}\n")
            print(f"nvidia-container-cli: device error: {device}: unknown device", file=sys.stderr)
            sys.exit(1)
        log.write(f"granted {device} {state['id']}\n")
