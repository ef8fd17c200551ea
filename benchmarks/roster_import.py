"""How long a teacher waits for a roster's preview and import (quota/pages/roster.py), in-process
on SQLite: N students of one class in a GBK CSV, preview, import (one-time passwords hashed,
rows written in one transaction, the allocator rebuilt, the slips rendered), preview again.

    .venv/bin/python benchmarks/roster_import.py --students 30 2000
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi.testclient import TestClient  # noqa: E402

from quota.app import create_app  # noqa: E402
from quota.deps import TOKEN_COOKIE  # noqa: E402
from quota.settings import QuotaSettings  # noqa: E402

ALLIANCE = """
tiers: {county: {weight: 1}}
pools: [{id: uni-a, gpus: 1, simulated: true}]
schools:
  - {id: c01, tier: county, teachers: [t1], classes: [{id: ai-club, teachers: [t1]}]}
"""


def measure(students: int) -> dict:
    here = Path(tempfile.mkdtemp())
    (here / "alliance.yaml").write_text(ALLIANCE)
    settings = QuotaSettings(alliance=here / "alliance.yaml", data_dir=here / "q", api_token="bench",
                             database_url=f"sqlite:///{here / 'q' / 'q.sqlite'}", use_nvml=False)
    app = create_app(settings, token_resolver=lambda token: "t1", run_timers=False)
    data = ("id,first_name,last_name,email,class\n"
            + "".join(f"b{i:05d},名{i},姓,,ai-club\n" for i in range(students))).encode("gbk")
    headers = {"sec-fetch-site": "same-origin", "accept": "text/html", "accept-language": "en"}
    with TestClient(app, headers=headers) as client:
        client.cookies.set(TOKEN_COOKIE, "tok")
        form = client.get("/pages/teacher/roster").text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form).group(1)
        started = time.perf_counter()
        preview = client.post("/pages/teacher/roster/preview", data={"csrf": csrf}, files={"file": ("r.csv", data)})
        previewed = time.perf_counter()
        carried = re.search(r'name="file" value="([^"]+)"', preview.text).group(1)
        done = client.post("/pages/teacher/roster/import", data={"csrf": csrf, "file": carried})
        imported = time.perf_counter()
        again = client.post("/pages/teacher/roster/preview", data={"csrf": csrf}, files={"file": ("r.csv", data)})
        assert done.status_code == 200 and done.text.count('class="slip"') == students
        assert f"Unchanged: {students}." in again.text
        return {"students": students, "file_kb": round(len(data) / 1024, 1), "preview_s": round(previewed - started, 2),
                "import_s": round(imported - previewed, 2), "slips_kb": len(done.content) // 1024,
                "preview_again_s": round(time.perf_counter() - imported, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, nargs="+", default=[30, 2000])
    for students in parser.parse_args().students:
        print(measure(students))


if __name__ == "__main__":
    main()
