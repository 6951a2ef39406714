"""A headless Chromium driven over the DevTools protocol on a pipe: standard library only.

`--remote-debugging-pipe` makes Chromium read commands from fd 3 and write replies and events
to fd 4, each a JSON object ended by a NUL byte. Used by the overview page's browser test and
by `python -m tests.support.page_example` (the screenshot in docs/). Needs Debian's `chromium`.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe"]
TIMEOUT_S = 20.0  # per command; a page of a few hundred thumbnails loads in well under that


def executable() -> str | None:
    """Chromium's path, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless browser process; `with Chromium(profile) as browser: browser.open(url)`."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self._next_id = 0
        self._buffer = b""

    def __enter__(self) -> Chromium:
        path = executable()
        if path is None:
            raise FileNotFoundError("chromium is not installed")
        commands, self._to_browser = os.pipe()
        self._from_browser, replies = os.pipe()
        # bash (dash takes single-digit fds only) moves the pipe ends to fds 3 (in) and 4 (out)
        wiring = f'exec "$0" "$@" 3<&{commands} 4>&{replies} {commands}<&- {replies}>&-'
        self._log = open(self.profile.parent / "chromium.log", "wb")  # noqa: SIM115
        self._process = subprocess.Popen(
            ["bash", "-c", wiring, path, *FLAGS, f"--user-data-dir={self.profile}"],
            pass_fds=(commands, replies), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT)
        os.close(commands)
        os.close(replies)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            self._send({"method": "Browser.close"})
            self._process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)
            self._log.close()

    def open(self, url: str, width: int = 1280, height: int = 900) -> str:
        """A new tab of `width` x `height` CSS pixels showing `url` once loaded; its session."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session: str = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable", {}, session)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session)
        self.navigate(session, url)
        return session

    def navigate(self, session: str, url: str) -> None:
        """Load `url` in the tab and wait for its load event."""
        reply = self.call("Page.navigate", {"url": url}, session)
        if "errorText" in reply:
            raise RuntimeError(f"chromium could not open {url}: {reply['errorText']}")
        self._wait_for("Page.loadEventFired", session)

    def evaluate(self, session: str, expression: str) -> Any:
        """The JSON value of a JavaScript expression (a promise is awaited)."""
        reply = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                               "returnByValue": True}, session)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"script failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def screenshot(self, session: str) -> bytes:
        """The whole page as PNG (beyond the viewport's height)."""
        reply = self.call("Page.captureScreenshot",
                          {"format": "png", "captureBeyondViewport": True}, session)
        return base64.b64decode(reply["data"])

    def call(self, method: str, params: dict[str, Any], session: str | None = None) -> Any:
        """Send one command and return its result; raises RuntimeError with the error."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self._send(message)
        reply = self._wait(lambda m: m.get("id") == message["id"])
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def _wait_for(self, event: str, session: str) -> None:
        self._wait(lambda m: m.get("method") == event and m.get("sessionId") == session)

    def _send(self, message: dict[str, Any]) -> None:
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")

    def _wait(self, wanted: Any) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            message = self._read(deadline)
            if wanted(message):
                return message

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed


# What a page shows, as the tests read it: its title, tiles, images (loaded or not), links.
COLLECT = """(async () => {
  const images = [...document.images];
  for (const image of images) {  // lazy: each loads once scrolled near the viewport
    image.scrollIntoView({block: "center"});
    const until = performance.now() + 5000;
    while (!image.complete && performance.now() < until) {
      await new Promise(done => setTimeout(done, 10));
    }
  }
  return {
    title: document.title,
    tiles: [...document.querySelectorAll("a.tile")].map(a => a.href),
    images: images.map(i => ({src: i.src, loaded: i.complete && i.naturalWidth > 0})),
    links: [...document.querySelectorAll("main a[href]")].map(a => a.href),
  };
})()"""


def path_of(url: str) -> bytes:
    """The path of a file:// URL as the bytes a file system sees."""
    return unquote_to_bytes(urlsplit(url).path)
