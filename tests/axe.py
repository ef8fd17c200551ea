"""axe-core (npm) for accessibility checks inside a real page.

``axe_script()``: the path of ``axe.min.js``, installed on first use under .build/axe with npm
(``npm install axe-core@4``). ``serious_violations(page)``: the serious and critical findings of
``axe.run()`` on the page, as (rule id, help, first target) tuples. The page's context must be
made with ``bypass_csp=True``: the script is injected inline, which the pages' CSP forbids.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / ".build" / "axe"
SCRIPT = ROOT / "node_modules" / "axe-core" / "axe.min.js"


def axe_script() -> Path:
    if not SCRIPT.exists():
        subprocess.run(["npm", "install", "--silent", "--prefix", str(ROOT), "axe-core@4"], check=True, timeout=300)
    return SCRIPT


def serious_violations(page) -> list[tuple[str, str, str]]:
    page.add_script_tag(path=str(axe_script()))
    found = page.evaluate("async () => (await axe.run()).violations"
                          ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
                          ".map(v => [v.id, v.help, v.nodes[0] ? v.nodes[0].target.join(' ') : ''])")
    return [tuple(item) for item in found]
