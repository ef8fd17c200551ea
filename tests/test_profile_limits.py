"""A profile's limits: declared in the alliance file (with bounds), falling back to the
hub's settings, the same for every backend, and shown on the spawn form."""

from __future__ import annotations

import pytest

from quota.alliance import AllianceError, Profile, load_alliance
from spawner.backends import LocalQuotaSpawner
from spawner.form import limits_text, render_profile_form
from spawner.local import SandboxedLocalSpawner
from spawner.specs import Resources

GiB = 1024**3

TIGHT = Profile(id="tight", display_name="Tight", cpu_limit=0.5, mem_limit="512M", pids_limit=128, tmp_size="64M",
                home_quota="2G")
PLAIN = Profile(id="plain", display_name="Plain")


def test_profile_limits_override_the_hub_settings_one_by_one():
    spawner = LocalQuotaSpawner(cpu_limit=2, mem_limit="4G", pids_limit=512, tmp_size="1G")
    assert spawner.resources_for(TIGHT) == Resources(cpu_limit=0.5, mem_limit=512 * 1024**2, pids_limit=128,
                                                     tmp_size=64 * 1024**2, home_quota=2 * GiB)
    assert spawner.resources_for(PLAIN) == Resources(cpu_limit=2, mem_limit=4 * GiB, pids_limit=512, tmp_size=GiB)


def test_the_hub_defaults_bound_processes_and_tmp_but_not_memory_or_cpu():
    assert SandboxedLocalSpawner().resources_for(None) == Resources(pids_limit=1024, tmp_size=GiB)
    assert LocalQuotaSpawner(pids_limit=0, tmp_size=None).resources_for(PLAIN) == Resources()  # 0/None: no limit


@pytest.mark.parametrize("field, value, problem", [
    ("mem_limit", "lots", "is 'lots', which is not a size; write e.g. 512M, 4G or 4Gi"),
    ("tmp_size", "-1G", "not a size"),
    ("pids_limit", 8, "greater than or equal to 64"),
    ("cpu_limit", 0, "greater than 0"),
])
def test_bad_limits_in_the_alliance_file_are_refused_by_name(tmp_path, field, value, problem):
    path = tmp_path / "alliance.yaml"
    path.write_text(f"""
tiers: {{county: {{weight: 1}}}}
pools: [{{id: p, gpus: 1}}]
profiles: [{{id: cpu, display_name: CPU, {field}: {value!r}}}]
schools: [{{id: c01, tier: county}}]
""")
    with pytest.raises(AllianceError, match=field) as error:
        load_alliance(path)
    assert problem in str(error.value)


def test_the_form_shows_each_profiles_limits():
    limits = {"tight": Resources(cpu_limit=0.5, mem_limit=512 * 1024**2, pids_limit=128, tmp_size=64 * 1024**2,
                                 home_quota=2 * GiB),
              "plain": Resources()}
    html = render_profile_form([TIGHT, PLAIN], None, limits)
    assert ("Limits: 0.5 CPU cores, 512 MB memory (/tmp up to 64 MB of it), 2 GB home folder, 128 processes."
            in html)
    assert html.count("gc-limits") == 1  # nothing to say for a profile without limits
    assert limits_text(Resources(cpu_limit=1, tmp_size=GiB)) == "Limits: 1 CPU core, /tmp 1 GB."
