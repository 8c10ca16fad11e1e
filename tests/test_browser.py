"""The official JS SDK (livekit-client's UMD build) in headless Chromium, talking to roost.

Each test starts roost, `tests/browser/driver.mjs` (Chromium with a fake camera and microphone,
driven through playwright-core) and a Python SDK participant in a child process; the two SDKs
meet in one room. `scripts/setup-browser` installs Chromium and the npm packages; without them
the tests skip and say what is missing.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

import pytest
from tests.helpers.firewall import udp_port_dropped
from tests.helpers.scenario import run_scenario
from tests.helpers.server import REPO_ROOT, RoostServer, tail

BROWSER_DIR = REPO_ROOT / "tests" / "browser"
CHROMIUM = Path(os.environ.get("ROOST_CHROMIUM", "/usr/bin/chromium"))
SCENARIOS = "tests.scenarios.browser"
BROWSER = "browser"  # the browser participant's identity
PYTHON = "python"  # tests.scenarios.browser.IDENTITY
READY_TIMEOUT = 45.0


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM}"
    if shutil.which("node") is None:
        return "no node on PATH"
    for needed in ("livekit-client/dist/livekit-client.umd.js", "playwright-core/package.json"):
        if not (BROWSER_DIR / "node_modules" / needed).is_file():
            return f"tests/browser/node_modules/{needed} is missing"
    return None


_MISSING = _missing()
pytestmark = pytest.mark.skipif(
    _MISSING is not None, reason=f"browser tests need scripts/setup-browser: {_MISSING}"
)


class BrowserError(AssertionError):
    """A call into the page failed; the message holds the page's error and its log tail."""


class Browser:
    """One driver.mjs process: `call(name, *args)` runs `window.roost[name](...args)`."""

    def __init__(self, log_path: Path, chromium_args: tuple[str, ...] = (),
                 wrap: Callable[[list[str]], list[str]] | None = None) -> None:
        """`wrap` prefixes the driver's command line (e.g. netlab's `Host.wrap`: Chromium in
        a network namespace)."""
        self.log_path = log_path
        extra = [a for arg in chromium_args for a in ("--chromium-arg", arg)]
        argv = ["node", "driver.mjs", "--log", str(log_path), "--chromium", str(CHROMIUM), *extra]
        self.proc = subprocess.Popen(
            wrap(argv) if wrap is not None else argv,
            cwd=BROWSER_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # warnings and errors of the page: pytest shows them on failure
            text=True,
            start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._next_id = 0
        self.info: dict[str, Any] | None = None  # the driver's ready line; see `ready()`

    def ready(self) -> dict[str, Any]:
        """Wait until Chromium runs the page (it starts while the test sets up the rest)."""
        if self.info is None:
            info = self._receive(lambda m: "ready" in m, READY_TIMEOUT, "the driver to start")
            if not info["ready"]:
                self._fail(f"the driver could not start the browser: {info.get('error')}")
            self.info = info
        return self.info

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _receive(self, match: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(0.0, remaining))
            except queue.Empty:
                self._fail(f"no answer from the driver within {timeout:.0f} s waiting for {what}")
            if line is None:
                self._fail(f"the driver exited ({self.proc.poll()}) while waiting for {what}")
            message = json.loads(line)
            if match(message):
                return message

    def _fail(self, message: str) -> NoReturn:
        raise BrowserError(
            f"{message}\n--- browser log tail ({self.log_path}) ---\n"
            f"{tail(self.log_path, max_lines=60)}"
        )

    def call(self, name: str, *args: Any, timeout: float = 20.0) -> Any:
        """Call `window.roost[name](*args)`; its JSON result, or BrowserError."""
        self.ready()
        self._next_id += 1
        call_id = self._next_id
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": call_id, "call": name, "args": list(args)}) + "\n")
        self.proc.stdin.flush()
        answer = self._receive(lambda m: m.get("id") == call_id, timeout, f"{name}()")
        if not answer["ok"]:
            self._fail(f"{name}() failed in the page: {answer['error']}")
        return answer["value"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # the driver closes Chromium and exits
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)  # its session holds Chromium too
                self.proc.wait(5)


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Browser]:
    """Chromium with the test page; tests ask for it before `server` so both start at once.
    Indirect parametrisation gives extra Chromium flags."""
    driver = Browser(tmp_path / "browser.log", tuple(getattr(request, "param", ())))
    try:
        yield driver
    finally:
        driver.close()


@pytest.fixture
def python_side(tmp_path: Path) -> Iterator[Callable[..., Future[Any]]]:
    """Start a Python SDK scenario of tests.scenarios.browser beside the browser."""
    pool = ThreadPoolExecutor(max_workers=1)

    def start(name: str, server: RoostServer, room: str, timeout: float = 30.0) -> Future[Any]:
        return pool.submit(
            run_scenario,
            f"{SCENARIOS}:{name}",
            server.info,
            room,
            BROWSER,
            timeout=timeout,
            log_dir=tmp_path,
        )

    try:
        yield start
    finally:
        pool.shutdown(wait=True)


def _join(browser: Browser, server: RoostServer, room: str, **options: Any) -> dict[str, Any]:
    token = server.token(BROWSER, room)
    joined: dict[str, Any] = browser.call("connect", server.url, token, options, timeout=25)
    return joined


@pytest.mark.parametrize("server", [("--no-single-pc",)], indirect=True)
def test_browser_joins_and_exchanges_data_with_the_python_sdk(
    browser: Browser, server: RoostServer, python_side: Callable[..., Future[Any]]
) -> None:
    """JS SDK: /rtc/v1 → 404 → /rtc; both SDKs see each other; reliable data both ways."""
    python = python_side("data_with_browser", server, "browser-data")
    joined = _join(browser, server, "browser-data")
    assert joined["identity"] == BROWSER and joined["sid"].startswith("PA_"), joined
    # The SDK tried single peer connection signalling first, and fell back on a CORS 404.
    sockets = [url.removeprefix(server.url) for url in joined["sockets"]]
    assert sockets[:1] == ["/rtc/v1"] and sockets[-1] == "/rtc", joined
    validate = [f for f in joined["fetches"] if f["url"].endswith("/rtc/v1/validate")]
    assert validate and validate[0].get("status") == 404, joined["fetches"]

    assert browser.call("waitParticipant", PYTHON, 20_000, timeout=25)["sid"].startswith("PA_")
    browser.call("publishData", "hello from the browser", {"reliable": True, "topic": "greeting"})
    reply = browser.call("waitData", {"topic": "reply"}, 20_000, timeout=25)
    assert reply["text"] == "hello from python" and reply["from"] == PYTHON, reply
    browser.call("publishData", "got it", {"reliable": True, "topic": "ack"})

    greeting = python.result(timeout=60)
    # The browser does not say who it is in its packets: roost stamps the sender.
    assert greeting["text"] == "hello from the browser", greeting
    assert greeting["identity"] == BROWSER, greeting
    assert greeting["sid"] == joined["sid"] == greeting["browser_sid"], greeting


@pytest.mark.parametrize("simulcast", [True, False], ids=["simulcast", "single-layer"])
def test_browser_camera_and_microphone_reach_the_python_sdk(
    browser: Browser,
    server: RoostServer,
    python_side: Callable[..., Future[Any]],
    simulcast: bool,
) -> None:
    """Chromium's fake camera and microphone, published by the JS SDK, decode in Python."""
    room = f"browser-publish-{'simulcast' if simulcast else 'single'}"
    python = python_side("receive_browser_media", server, room)
    _join(browser, server, room, publishDefaults={"simulcast": simulcast})
    published = browser.call("publishCameraAndMicrophone", timeout=25)
    print("published by the browser:", published)
    assert {t["kind"] for t in published} == {"audio", "video"}, published
    received = python.result(timeout=60)
    print("received by the Python SDK:", received)
    layers = browser.call("cameraLayers")
    print("camera layers sent:", layers)
    # roost's answer negotiated rid/simulcast (Chrome rejects an answer that does not).
    expected_rids = {"q", "h", "f"} if simulcast else {None}
    assert {layer["rid"] for layer in layers} == expected_rids, layers
    # With congestion control Chrome's own estimate starts low (~300 kbit/s) and turns on
    # the top layer only once its TWCC-based estimate allows: some layer must be sending.
    assert any(layer["bytesSent"] > 0 for layer in layers), layers
    width, height = received["video_size"]
    # Chromium's fake camera is 16:9; the encoder may send fewer pixels while bandwidth ramps up.
    assert received["video_frames"] >= 10 and width > 0 and width * 9 == height * 16, received
    assert received["audio_frames"] >= 150, received


def test_python_sdk_microphone_and_camera_play_in_the_browser(
    browser: Browser, server: RoostServer, python_side: Callable[..., Future[Any]]
) -> None:
    """A 440 Hz tone and a red 320x240 camera from Python: heard and seen in the page."""
    python = python_side("publish_media_to_browser", server, "browser-subscribe")
    _join(browser, server, "browser-subscribe")
    media = browser.call("waitMedia", PYTHON, 25_000, timeout=35)
    browser.call("publishData", "seen", {"reliable": True, "topic": "seen"})
    python.result(timeout=60)
    print("played in the browser:", media)

    video, audio = media["video"], media["audio"]
    assert (video["width"], video["height"]) == (320, 240), media
    assert video["frames"] >= 10, media
    r, g, b = video["rgb"]
    assert r > 150 and g < 80 and b < 80, f"expected a red picture, mean RGB {video['rgb']}"
    assert audio["bytesReceived"] > 0 and audio["packetsReceived"] >= 25, media
    assert abs(audio["dominantHz"] - 440) < 20, media



def _camera_reaches_python(browser: Browser, server: RoostServer,
                           python_side: Callable[..., Future[Any]], room: str,
                           **options: Any) -> list[dict[str, Any]]:
    """The page publishes camera and microphone, Python decodes both; the page's ICE paths."""
    python = python_side("receive_browser_media", server, room)
    _join(browser, server, room, **options)
    published = browser.call("publishCameraAndMicrophone", timeout=25)
    assert {t["kind"] for t in published} == {"audio", "video"}, published
    received = python.result(timeout=60)
    assert received["video_frames"] >= 10 and received["audio_frames"] >= 150, received
    paths: list[dict[str, Any]] = browser.call("selectedPaths")
    print("selected ICE paths:", paths)
    return paths


def test_browser_and_python_sdk_without_udp_exchange_media_over_ice_tcp(
    browser: Browser, start_server: Callable[..., RoostServer],
    python_side: Callable[..., Future[Any]],
) -> None:
    """Every UDP packet to rtc.udp_port is dropped: ICE-TCP on rtc.tcp_port carries Chromium's
    camera and microphone to the Python SDK (which gets there over TCP too)."""
    from tests.helpers.server import free_port

    udp_port = free_port()
    server = start_server("--udp-port", str(udp_port), "--tcp-port", str(free_port()))
    with udp_port_dropped(udp_port):
        paths = _camera_reaches_python(browser, server, python_side, "browser-tcp")
        assert paths and all(p["remote"]["protocol"] == "tcp" for p in paths), paths
        assert sum(p["bytesSent"] for p in paths) > 10_000, paths


def test_python_sdk_media_plays_in_a_browser_without_udp(
    browser: Browser, start_server: Callable[..., RoostServer],
    python_side: Callable[..., Future[Any]],
) -> None:
    """The other direction over ICE-TCP: Python's 440 Hz tone and red picture in the page."""
    from tests.helpers.server import free_port

    udp_port = free_port()
    server = start_server("--udp-port", str(udp_port), "--tcp-port", str(free_port()))
    with udp_port_dropped(udp_port):
        python = python_side("publish_media_to_browser", server, "browser-tcp-subscribe")
        _join(browser, server, "browser-tcp-subscribe")
        media = browser.call("waitMedia", PYTHON, 25_000, timeout=35)
        browser.call("publishData", "seen", {"reliable": True, "topic": "seen"})
        python.result(timeout=60)
        paths = browser.call("selectedPaths")
    assert paths and all(p["remote"]["protocol"] == "tcp" for p in paths), paths
    assert (media["video"]["width"], media["video"]["height"]) == (320, 240), media
    assert abs(media["audio"]["dominantHz"] - 440) < 20, media


def _turn_server(start_server: Callable[..., RoostServer], tmp_path: Path,
                 transports: dict[str, int], **extra: Any) -> RoostServer:
    """roost with its embedded TURN server on the given transports (udp/tcp/tls → port)."""
    from tests.helpers.server import free_port

    lines = ["turn:", "  enabled: true", f"  udp_port: {transports.get('udp', 0)}",
             f"  tcp_port: {transports.get('tcp', 0)}", f"  tls_port: {transports.get('tls', 0)}",
             "  relay_range_start: 0", "  relay_range_end: 0"]
    lines += [f"  {key}: {value}" for key, value in extra.items()]
    config = tmp_path / "turn.yaml"
    config.write_text("\n".join(lines) + "\n")
    return start_server("--config", str(config), "--udp-port", str(free_port()))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_browser_with_a_relay_only_policy_sends_media_through_roosts_turn(
    browser: Browser, start_server: Callable[..., RoostServer],
    python_side: Callable[..., Future[Any]], tmp_path: Path, transport: str,
) -> None:
    """iceTransportPolicy 'relay': Chromium may use only TURN candidates; roost's TURN
    server (told to clients in the JoinResponse) relays its camera and mic to Python."""
    from tests.helpers.server import free_port

    server = _turn_server(start_server, tmp_path, {transport: free_port()})
    paths = _camera_reaches_python(browser, server, python_side, f"browser-relay-{transport}",
                                   rtcConfig={"iceTransportPolicy": "relay"})
    assert paths and all(p["local"]["type"] == "relay" for p in paths), paths
    assert all(p["local"]["relayProtocol"] == transport for p in paths), paths


def test_browser_with_a_relay_only_policy_reaches_roosts_turn_over_tls(
    start_server: Callable[..., RoostServer], python_side: Callable[..., Future[Any]],
    tmp_path: Path,
) -> None:
    """turns: with a certificate from a test CA: Chromium is told to trust exactly that
    certificate's key (--ignore-certificate-errors-spki-list) and relays over TLS."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from tests.helpers.server import free_port
    from tests.turn.helpers import make_certificates

    _, cert_path, key_path = make_certificates(tmp_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    server = _turn_server(start_server, tmp_path, {"tls": free_port()}, domain="localhost",
                          cert_file=str(cert_path), key_file=str(key_path))
    browser = Browser(tmp_path / "browser.log", (f"--ignore-certificate-errors-spki-list={pin}",))
    try:
        paths = _camera_reaches_python(browser, server, python_side, "browser-relay-tls",
                                       rtcConfig={"iceTransportPolicy": "relay"})
        assert paths and all(p["local"]["relayProtocol"] == "tls" for p in paths), paths
    finally:
        browser.close()
