"""Headless Chromium driven over the Chrome DevTools Protocol with aiohttp's websocket client (a Ray dependency): open
a page, wait for text on it, type, click, take a screenshot. No extra package; the browser is /usr/bin/chromium."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from pathlib import Path

import aiohttp

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]


class Browser:
    """One Chromium with one page; `async with Browser(profile) as b:` starts it and stops it (only it)."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 900) -> None:
        self.profile, self.size = profile, (width, height)
        self.proc: subprocess.Popen | None = None
        self._id = 0

    async def __aenter__(self) -> "Browser":
        self.profile.mkdir(parents=True, exist_ok=True)
        port_file = self.profile / "DevToolsActivePort"  # Chromium writes its port here once it listens
        port_file.unlink(missing_ok=True)  # a reused profile's is stale
        log = open(self.profile / "chromium.log", "wb")
        self.proc = subprocess.Popen([str(CHROMIUM), *FLAGS, f"--user-data-dir={self.profile}",
                                      f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start: {(self.profile / 'chromium.log').read_text()[-2000:]}")
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        self.http = aiohttp.ClientSession()
        async with self.http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            pages = [t for t in await resp.json() if t["type"] == "page"]
        self.ws = await self.http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send("Emulation.setDeviceMetricsOverride", width=self.size[0], height=self.size[1],
                        deviceScaleFactor=1, mobile=False)
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await self.ws.close()
            await self.http.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def send(self, method: str, **params):
        self._id += 1
        await self.ws.send_str(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # events arrive in between; the answer carries our id
            msg = json.loads((await self.ws.receive()).data)
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def js(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def text(self) -> str:
        """The page's visible text; empty while it is being replaced (a navigation or reload under way)."""
        try:
            return await self.js("document.body ? document.body.innerText : ''") or ""
        except RuntimeError as exc:
            if "navigated or closed" in str(exc) or "context" in str(exc).lower():
                return ""
            raise

    async def wait_for_text(self, *needles: str, timeout: float = 60) -> str:
        """The page's text once it holds every needle (the dashboard renders, then fetches and refreshes)."""
        deadline = time.monotonic() + timeout
        while True:
            text = await self.text()
            if all(n in text for n in needles):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never showed {needles!r} within {timeout:.0f} s; it shows:\n"
                                     f"{text[:3000]}")
            await asyncio.sleep(0.25)

    async def type_into(self, selector: str, text: str) -> None:
        """Focus the element and type as a keyboard would (React sees the input events)."""
        await self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", text=text)

    async def wait_until_gone(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle in await self.text():
            if time.monotonic() > deadline:
                raise AssertionError(f"the page still shows {needle!r} after {timeout:.0f} s")
            await asyncio.sleep(0.25)

    async def click(self, label: str) -> None:
        """Click the button or tab labelled `label`, in any case (the dashboard's CSS upper-cases some labels)."""
        found = await self.js("(() => { const b = [...document.querySelectorAll('button, [role=tab]')]"
                              f".find(b => b.textContent.trim().toLowerCase() === {json.dumps(label.lower())}); "
                              "if (b) b.click(); return !!b; })()")
        if not found:
            raise AssertionError(f"no button or tab {label!r} on the page")

    async def wait_for_row(self, *needles: str, timeout: float = 60) -> str:
        """The text of the first table row that holds every needle, once there is one."""
        find = ("[...document.querySelectorAll('tr')].map(r => r.innerText)"
                f".find(t => {json.dumps(list(needles))}.every(n => t.includes(n))) || ''")
        deadline = time.monotonic() + timeout
        while not (row := await self.js(find)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no table row with {needles!r} within {timeout:.0f} s; the page shows:\n"
                                     f"{(await self.text())[:3000]}")
            await asyncio.sleep(0.25)
        return row

    async def link_in_row(self, needle: str) -> str:
        """The first link's address in the first table row that holds `needle`."""
        return await self.js("[...document.querySelectorAll('tr')].filter(r => r.innerText.includes("
                             f"{json.dumps(needle)})).map(r => r.querySelector('a') && r.querySelector('a').href)[0]")

    async def screenshot(self, path: Path) -> Path:
        data = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(data["data"]))
        return path
