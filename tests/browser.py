"""Real headless Chromium for the tests and benchmarks that drive the platform as a student does.

- ``CHROMIUM``, ``CHROMIUM_ARGS``: Debian's Chromium and the flags it needs on these machines;
- ``LAB_READY``: the selector that shows once JupyterLab is usable (the launcher's cards);
- :func:`log_in`: a page logged in through the hub's login form;
- :class:`Wire`: what one page sends and receives, read from the Chrome DevTools Protocol
  (requests, bytes on the wire, each response's headers), and a slow link for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
LAB_READY = ".jp-LauncherCard"


def log_in(context, stack, account: str, next_url: str = ""):
    """A new page of ``context`` logged in as ``account``; it waits where the hub sends a
    student after the login (the spawn page, the home page, or ``next_url``)."""
    page = context.new_page()
    page.goto(f"{stack.url}/hub/login" + (f"?next={next_url}" if next_url else ""))
    page.fill("input[name=username]", account)
    page.fill("input[name=password]", stack.passwords[account])
    page.click("#login_submit")
    page.wait_for_url(re.compile(r".*/hub/(spawn|home).*") if not next_url else re.compile(f".*{re.escape(next_url)}.*"),
                      timeout=30_000)
    return page


@dataclass(frozen=True)
class Link:
    """A network link as Chromium emulates it: throughput in bytes per second, latency in ms."""

    down_bytes_s: float
    up_bytes_s: float
    latency_ms: float

    @classmethod
    def mbit(cls, down: float, up: float, latency_ms: float) -> "Link":
        return cls(down * 1e6 / 8, up * 1e6 / 8, latency_ms)


@dataclass
class Response:
    url: str
    status: int
    headers: dict[str, str]  # names in lower case
    from_cache: bool = False
    wire_bytes: int = 0  # headers and body as they came over the network (0 from the cache)


@dataclass
class Wire:
    """Every request of one page, from the Chrome DevTools Protocol's Network domain.

    ``Wire.watch(context, page)`` starts listening; :meth:`reset` starts a new count (one per
    measured step). ``wire_bytes`` adds up ``Network.loadingFinished``'s ``encodedDataLength``:
    what came over the network, compressed as it came."""

    cdp: object
    responses: dict[str, Response] = field(default_factory=dict)
    requested: dict[str, str] = field(default_factory=dict)  # request id -> URL

    @classmethod
    def watch(cls, context, page) -> "Wire":
        cdp = context.new_cdp_session(page)
        wire = cls(cdp)
        cdp.send("Network.enable")
        cdp.on("Network.requestWillBeSent", wire._sent)
        cdp.on("Network.responseReceived", wire._received)
        cdp.on("Network.loadingFinished", wire._finished)
        return wire

    def slow_down(self, link: Link) -> None:
        self.cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": link.latency_ms,
            "downloadThroughput": link.down_bytes_s, "uploadThroughput": link.up_bytes_s,
        })

    def clear_cache(self) -> None:
        self.cdp.send("Network.clearBrowserCache")

    def reset(self) -> None:
        self.responses.clear()
        self.requested.clear()

    def _sent(self, event: dict) -> None:
        url = event["request"]["url"]
        if not url.startswith(("data:", "blob:")):
            self.requested[event["requestId"] + url] = url  # a redirect keeps the id: one entry per hop

    def _received(self, event: dict) -> None:
        response = event["response"]
        self.responses[event["requestId"]] = Response(
            url=response["url"], status=response["status"],
            headers={name.lower(): value for name, value in response["headers"].items()},
            from_cache=bool(response.get("fromDiskCache") or response.get("fromMemoryCache")),
        )

    def _finished(self, event: dict) -> None:
        if event["requestId"] in self.responses:
            self.responses[event["requestId"]].wire_bytes = int(event.get("encodedDataLength", 0))

    @property
    def requests(self) -> int:
        return len(self.requested)

    @property
    def wire_bytes(self) -> int:
        return sum(response.wire_bytes for response in self.responses.values())

    def hosts_other_than(self, origin: str) -> set[str]:
        """Hosts that the page asked anything of besides ``origin``'s (``http://host:port``)."""
        own = urlsplit(origin).netloc
        return {urlsplit(url).netloc for url in self.requested.values() if urlsplit(url).netloc != own}

    def find(self, pattern: str) -> Response:
        """The response whose URL matches ``pattern`` (a regular expression); the largest if several."""
        found = [r for r in self.responses.values() if re.search(pattern, r.url)]
        if not found:
            raise AssertionError(f"no response matched {pattern!r}; saw {sorted(r.url for r in self.responses.values())}")
        return max(found, key=lambda r: r.wire_bytes)


def choose_profile(page, stack, profile: str):
    """Pick a profile on the hub's spawn page and start it (opens the page first if needed)."""
    if "/hub/spawn" not in page.url:
        page.goto(f"{stack.url}/hub/spawn")
    page.check(f"#profile-{profile}")
    page.click("input[type=submit], button[type=submit]")
