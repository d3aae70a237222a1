"""A tiny Chrome DevTools Protocol client over --remote-debugging-pipe (stdlib only).

Chromium reads commands on its fd 3 and writes replies and events on its fd 4, each a
JSON message ended by a NUL byte. One Browser per test module; each page() is a new
tab with its own session, whose console messages, exceptions, log entries and network
requests are recorded."""
import base64
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def find_chromium():
    for name in CHROMIUM:
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(Exception):
    pass


class Browser:
    def __init__(self, path, timeout=30):
        self.timeout = timeout
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        # chromium's ends, moved above 9 so that the shell's "3<&N 4>&M" cannot clobber them
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_chrome_r, from_chrome_w)]
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        to_chrome_r, from_chrome_w = high
        self.profile = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"naflops-cdp-{os.getpid()}")
        args = [path, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
                f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"]
        # bash (dash takes single-digit fds only) moves our ends to 3 and 4 and becomes chromium
        redirect = f"3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-"
        self.proc = subprocess.Popen(["/bin/bash", "-c", f'exec "$@" {redirect}', "bash", *args],
                                     pass_fds=(to_chrome_r, from_chrome_w),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies = {}
        self.events = []  # (sessionId, method, params)
        self._cond = threading.Condition()
        self._closed = False
        self._stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.version = self.call("Browser.getVersion")

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace"))

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                break
            buf += chunk
            *messages, buf = buf.split(b"\0")
            with self._cond:
                for raw in messages:
                    msg = json.loads(raw)
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append((msg.get("sessionId"), msg["method"],
                                            msg.get("params", {})))
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def call(self, method, params=None, session=None, timeout=None):
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise CDPError(f"{method}: no reply ({'chromium exited' if self._closed else 'timeout'}): "
                                   + "".join(self._stderr[-20:]))
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, session, method, timeout=None, start=0):
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while True:
                for i, (s, m, p) in enumerate(self.events[start:], start):
                    if s == session and m == method:
                        return i, p
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise CDPError(f"no {method} event")
                self._cond.wait(left)

    def page(self, width=1000, height=700):
        return Page(self, width, height)

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except CDPError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """A tab: navigate(), evaluate(), screenshot(), and what it logged and fetched."""

    def __init__(self, browser, width, height):
        self.b = browser
        self.target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call("Target.attachToTarget",
                                    {"targetId": self.target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def call(self, method, params=None):
        return self.b.call(method, params, self.session)

    def navigate(self, url):
        with self.b._cond:
            start = len(self.b.events)
        reply = self.call("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise CDPError(f"navigate {url}: {reply['errorText']}")
        self.b.wait_event(self.session, "Page.loadEventFired", start=start)

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            raise CDPError(f"evaluate: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path, full_page=False):
        params = {"format": "png"}
        if full_page:
            w, h = self.evaluate("[document.documentElement.scrollWidth, "
                                 "document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
        data = base64.b64decode(self.call("Page.captureScreenshot", params)["data"])
        with open(path, "wb") as f:
            f.write(data)
        return data

    def _events(self, *methods):
        with self.b._cond:
            return [(m, p) for s, m, p in self.b.events if s == self.session and m in methods]

    def errors(self):
        """Console errors and warnings, uncaught exceptions and error log entries
        (CSP violations, failed loads)."""
        out = []
        for m, p in self._events("Runtime.consoleAPICalled", "Runtime.exceptionThrown",
                                 "Log.entryAdded"):
            if m == "Runtime.consoleAPICalled" and p["type"] in ("error", "warning", "assert"):
                out.append(f"console.{p['type']}: {p['args']}")
            elif m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails']}")
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def requests(self):
        """The URL of every request the page made (the navigation itself included)."""
        return [p["request"]["url"] for _, p in self._events("Network.requestWillBeSent")]

    def close(self):
        self.b.call("Target.closeTarget", {"targetId": self.target})


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for the module's pages (a test file imports this fixture);
    skipped without chromium, failed when CI is set (.ci/run installs it)."""
    path = find_chromium()
    if path is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("CI is set and chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium); with CI set this fails")
    b = Browser(path)
    yield b
    b.close()
