"""The profile form on the spawn page: one radio button per profile, with what is free now."""

from __future__ import annotations

from html import escape

from gpu_commons_i18n import Localized, _, _n, ngettext, translate
from quota.alliance import Profile
from spawner.specs import Resources


def profile_form(profiles: list[Profile], inventory: dict | None,
                 limits: dict[str, Resources] | None = None, shared: dict | None = None) -> Localized:
    """The form as the hub's spawn page shows it in the page's language (hub/templates/spawn.html
    renders it with ``tr()``); as a str, the English form."""
    return Localized(lambda locale: render_profile_form(profiles, inventory, limits, locale, shared))


def render_profile_form(profiles: list[Profile], inventory: dict | None,
                        limits: dict[str, Resources] | None = None, locale: str | None = "en",
                        shared: dict | None = None) -> str:
    """HTML for JupyterHub's spawn form in ``locale``. ``inventory`` is the quota service's
    ``/api/inventory`` answer, or None when the service did not answer; ``limits`` the
    limits the backend enforces for each profile (by id); ``shared`` the sentence of each
    shared-GPU profile (spawner.sharing.form_sentences: shared by how many, whose memory)."""
    free, total = count_units(inventory or {})
    draining = draining_notes(inventory or {})
    rows = []
    for index, profile in enumerate(profiles):
        checked = " checked" if index == 0 else ""
        resources = (limits or {}).get(profile.id)
        up_to = ngettext("Up to {n} minute.", "Up to {n} minutes.", round(profile.max_minutes), locale)
        text = limits_text(resources, locale) if resources else ""
        limit_html = f'<br><small class="gc-limits">{escape(text)}</small>' if text else ""
        if profile.id in (shared or {}):
            limit_html += f'<br><small class="gc-shared">{escape(shared[profile.id].render(locale))}</small>'
        rows.append(
            f"""<label class="gc-profile" for="profile-{escape(profile.id)}">
  <input type="radio" name="profile" id="profile-{escape(profile.id)}" value="{escape(profile.id)}"{checked}>
  <strong>{escape(profile.display_name)}</strong>
  <span class="gc-availability">{escape(_availability(profile, free, total, inventory is not None, draining).render(locale))}</span>
  <br><small>{escape(profile.description)} {escape(up_to)}</small>{limit_html}
</label>"""
        )
    notices = []
    if inventory is None:
        notices.append(translate("The GPU booking service is not answering; you can still choose, "
                                 "but starting may fail.", locale))
    elif inventory.get("simulated"):
        notices.append(translate("Simulated GPUs: this server has no real GPU. The booking works as in production, "
                                 "but code cannot use CUDA here.", locale))
    notice_html = "".join(f'<p class="alert alert-info gc-notice">{escape(text)}</p>' for text in notices)
    notice_html += "".join(f'<p class="alert alert-warning gc-drain" role="status">{escape(text)}</p>'
                           for text in drain_sentences(inventory or {}, locale))
    return f"""<div class="gc-profiles">
{notice_html}
{chr(10).join(rows)}
</div>
<style>.gc-profile{{display:block;padding:.6em;border:1px solid #ccc;border-radius:6px;margin:.4em 0;font-weight:normal}}
.gc-availability{{float:right;color:#555}}</style>"""


def _availability(profile: Profile, free: dict, total: dict, known: bool, draining: dict | None = None):
    if profile.gpu == "none":
        return _("always available")
    if not known:
        return _("availability unknown")
    kind = profile.gpu
    free_now, all_units = free.get(kind, 0), total.get(kind, 0)
    if all_units == 0 and kind in (draining or {}):
        return maintenance_sentence(draining[kind])
    if all_units == 0:
        return _("none in this alliance")
    if kind == "shared":
        if free_now == 0:
            return _n("the only GPU share is in use: you will join the queue",
                      "all {n} GPU shares in use: you will join the queue", all_units)
        return _n("{free} of {n} GPU share free", "{free} of {n} GPU shares free", all_units, free=free_now)
    if kind == "slice":
        if free_now == 0:
            return _n("the only GPU slice is in use: you will join the queue",
                      "all {n} GPU slices in use: you will join the queue", all_units)
        return _n("{free} of {n} GPU slice free", "{free} of {n} GPU slices free", all_units, free=free_now)
    if free_now == 0:
        return _n("the only whole GPU is in use: you will join the queue",
                  "all {n} whole GPUs in use: you will join the queue", all_units)
    return _n("{free} of {n} whole GPU free", "{free} of {n} whole GPUs free", all_units, free=free_now)


def count_units(inventory: dict) -> tuple[dict[str, int], dict[str, int]]:
    """Free and total units per kind of the open pools, from the pools' unit lists (a pool
    draining for maintenance grants nothing new: its units are counted in neither)."""
    free: dict[str, int] = {}
    total: dict[str, int] = {}
    for pool in inventory.get("pools", []):
        if pool.get("state", "open") != "open":
            continue
        for unit in pool.get("units", []):
            kind = unit.get("kind")
            total[kind] = total.get(kind, 0) + 1
            if not unit.get("held", unit.get("lease_id")):
                free[kind] = free.get(kind, 0) + 1
    return free, total


def draining_notes(inventory: dict) -> dict[str, list[str]]:
    """Unit kind -> the operators' notes of the pools of that kind draining for maintenance."""
    notes: dict[str, list[str]] = {}
    for pool in inventory.get("pools", []):
        if pool.get("state", "open") == "open":
            continue
        for kind in {unit.get("kind") for unit in pool.get("units", [])}:
            notes.setdefault(kind, [])
            if pool.get("note") and pool["note"] not in notes[kind]:
                notes[kind].append(pool["note"])
    return notes


def drain_sentences(inventory: dict, locale: str | None) -> list[str]:
    """One sentence per pool draining for maintenance, with the operator's note, as the student's
    quota page says it (quota/pages/templates/student.html): also when other pools of its kind
    stay open, so a student knows why fewer GPUs are free."""
    found = []
    for pool in inventory.get("pools", []):
        if pool.get("state", "open") == "open":
            continue
        name = pool.get("name") or pool.get("id", "")
        found.append(translate("Pool {pool} is under maintenance: {note}", locale, pool=name, note=pool["note"])
                     if pool.get("note") else translate("Pool {pool} is under maintenance.", locale, pool=name))
    return found


def maintenance_sentence(notes: list[str]):
    """What a student reads when every GPU of a kind is on a pool drained for maintenance; the
    operator's note (their own words, in the language they wrote it) after it."""
    if notes:
        return _("closed for maintenance: {note}", note="; ".join(notes))
    return _("closed for maintenance")


def limits_text(r: Resources, locale: str | None = "en") -> str:
    """The workspace's limits in one line: 'Limits: 2 CPU cores, 4 GB memory (/tmp up to 1 GB of it), …'."""
    parts = []
    if r.cpu_limit is not None:
        cores = f"{r.cpu_limit:g}"
        parts.append(translate("{cores} CPU core", locale, cores=cores) if r.cpu_limit == 1
                     else translate("{cores} CPU cores", locale, cores=cores))
    if r.mem_limit is not None:
        if r.tmp_size is not None:
            parts.append(translate("{memory} memory (/tmp up to {tmp} of it)", locale,
                                   memory=_size(r.mem_limit), tmp=_size(r.tmp_size)))
        else:
            parts.append(translate("{memory} memory", locale, memory=_size(r.mem_limit)))
    elif r.tmp_size is not None:
        parts.append(translate("/tmp {tmp}", locale, tmp=_size(r.tmp_size)))
    if r.home_quota is not None:
        parts.append(translate("{size} home folder", locale, size=_size(r.home_quota)))
    if r.pids_limit is not None:
        parts.append(ngettext("{n} process", "{n} processes", r.pids_limit, locale))
    separator = translate(", ", locale)
    return translate("Limits: {limits}.", locale, limits=separator.join(parts)) if parts else ""


def _size(num_bytes: int) -> str:
    for unit, factor in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2)):
        if num_bytes >= factor:
            return f"{num_bytes / factor:.3g} {unit}"
    return f"{num_bytes} bytes"
