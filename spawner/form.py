"""The profile form on the spawn page: one radio button per profile, with what is free now."""

from __future__ import annotations

from html import escape

from quota.alliance import Profile
from spawner.specs import Resources

_KIND_WORDS = {"slice": "GPU slices", "whole": "whole GPUs"}


def render_profile_form(profiles: list[Profile], inventory: dict | None,
                        limits: dict[str, Resources] | None = None) -> str:
    """HTML for JupyterHub's spawn form. ``inventory`` is the quota service's
    ``/api/inventory`` answer, or None when the service did not answer; ``limits`` the
    limits the backend enforces for each profile (by id)."""
    free, total = _count_units(inventory or {})
    rows = []
    for index, profile in enumerate(profiles):
        checked = " checked" if index == 0 else ""
        resources = (limits or {}).get(profile.id)
        text = limits_text(resources) if resources else ""
        limit_html = f'<br><small class="gc-limits">{escape(text)}</small>' if text else ""
        rows.append(
            f"""<label class="gc-profile" for="profile-{escape(profile.id)}">
  <input type="radio" name="profile" id="profile-{escape(profile.id)}" value="{escape(profile.id)}"{checked}>
  <strong>{escape(profile.display_name)}</strong>
  <span class="gc-availability">{escape(_availability(profile, free, total, inventory is not None))}</span>
  <br><small>{escape(profile.description)} Up to {profile.max_minutes:g} minutes.</small>{limit_html}
</label>"""
        )
    notices = []
    if inventory is None:
        notices.append("The GPU booking service is not answering; you can still choose, but starting may fail.")
    elif inventory.get("simulated"):
        notices.append(
            "Simulated GPUs: this server has no real GPU. The booking works as in production, "
            "but code cannot use CUDA here."
        )
    notice_html = "".join(f'<p class="alert alert-info gc-notice">{escape(text)}</p>' for text in notices)
    return f"""<div class="gc-profiles">
{notice_html}
{chr(10).join(rows)}
</div>
<style>.gc-profile{{display:block;padding:.6em;border:1px solid #ccc;border-radius:6px;margin:.4em 0;font-weight:normal}}
.gc-availability{{float:right;color:#555}}</style>"""


def _availability(profile: Profile, free: dict, total: dict, known: bool) -> str:
    if profile.gpu == "none":
        return "always available"
    if not known:
        return "availability unknown"
    kind = profile.gpu
    free_now, all_units = free.get(kind, 0), total.get(kind, 0)
    if all_units == 0:
        return "none in this alliance"
    if free_now == 0:
        return f"all {all_units} {_KIND_WORDS[kind]} in use: you will join the queue"
    return f"{free_now} of {all_units} {_KIND_WORDS[kind]} free"


def _count_units(inventory: dict) -> tuple[dict[str, int], dict[str, int]]:
    """Free and total units per kind, from the pools' unit lists."""
    free: dict[str, int] = {}
    total: dict[str, int] = {}
    for pool in inventory.get("pools", []):
        for unit in pool.get("units", []):
            kind = unit.get("kind")
            total[kind] = total.get(kind, 0) + 1
            if not unit.get("lease_id"):
                free[kind] = free.get(kind, 0) + 1
    return free, total


def limits_text(r: Resources) -> str:
    """The workspace's limits in one line: 'Limits: 2 CPU cores, 4 GB memory (/tmp 1 GB of it), …'."""
    parts = []
    if r.cpu_limit is not None:
        parts.append(f"{r.cpu_limit:g} CPU core{'s' if r.cpu_limit != 1 else ''}")
    if r.mem_limit is not None:
        tmp = f" (/tmp up to {_size(r.tmp_size)} of it)" if r.tmp_size is not None else ""
        parts.append(f"{_size(r.mem_limit)} memory{tmp}")
    elif r.tmp_size is not None:
        parts.append(f"/tmp {_size(r.tmp_size)}")
    if r.home_quota is not None:
        parts.append(f"{_size(r.home_quota)} home folder")
    if r.pids_limit is not None:
        parts.append(f"{r.pids_limit} processes")
    return f"Limits: {', '.join(parts)}." if parts else ""


def _size(num_bytes: int) -> str:
    for unit, factor in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2)):
        if num_bytes >= factor:
            return f"{num_bytes / factor:.3g} {unit}"
    return f"{num_bytes} bytes"
