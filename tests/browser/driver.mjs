// Drives the official LiveKit JS SDK in headless Chromium for tests/test_browser.py.
//
// Usage: node driver.mjs [--log FILE] [--chromium PATH] [--chromium-arg ARG ...]
// Serves page.html and livekit-client's UMD build from 127.0.0.1 (a secure context, so
// getUserMedia works), opens the page in Debian's Chromium with a fake camera and microphone,
// then reads one JSON command per stdin line, {"id": 1, "call": "connect", "args": [...]},
// calls `window.roost[call](...args)` in the page and answers one JSON line on stdout:
// {"id": 1, "ok": true, "value": ...} or {"id": 1, "ok": false, "error": "..."}.
// The first line printed is {"ready": true, ...}. Stdin closing (or {"call": "close"}) closes
// the browser. The page's console, errors and WebSocket traffic go to the log file (all) and
// to stderr (warnings and errors only).

import { createWriteStream, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const UMD = join(HERE, "node_modules", "livekit-client", "dist", "livekit-client.umd.js");
// From docs/interop-notes.md: flags that work on this kind of machine (no network but loopback).
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
  "--autoplay-policy=no-user-gesture-required",
];

// Every `--chromium-arg X` adds X to Chromium's command line (tests use it for network policy).
function extraArgs() {
  const out = [];
  process.argv.forEach((arg, i) => {
    if (arg === "--chromium-arg" && i + 1 < process.argv.length) out.push(process.argv[i + 1]);
  });
  return out;
}

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

// Calls a test makes several times a second: logged to the file only, not to stderr.
const POLLED = new Set(["videoFrames"]);

// Tokens travel in the query string: keep them (and the bulky join request) out of the logs.
const redact = (text) => text.replace(/(access_token|join_request)=[^&\s'"]*/g, "$1=…");

const started = Date.now();
const logFile = option("--log", null);
const logStream = logFile ? createWriteStream(logFile, { flags: "a" }) : null;
function log(level, text) {
  const line = `${((Date.now() - started) / 1000).toFixed(3)} ${level} ${redact(text)}`;
  logStream?.write(line + "\n");
  if (level === "error" || level === "warning" || level === "driver") {
    process.stderr.write(`[browser] ${line}\n`);
  }
}

function reply(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function serve() {
  const files = {
    "/": ["text/html", readFileSync(join(HERE, "page.html"))],
    "/livekit-client.umd.js": ["text/javascript", readFileSync(UMD)],
  };
  const server = createServer((req, res) => {
    const file = files[req.url.split("?")[0]];
    if (!file) {
      res.writeHead(req.url === "/favicon.ico" ? 204 : 404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": file[0], "Cache-Control": "no-store" }).end(file[1]);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}


async function main() {
  const http = await serve();
  const origin = `http://127.0.0.1:${http.address().port}`;
  const browser = await chromium.launch({
    executablePath: option("--chromium", "/usr/bin/chromium"),
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs()],
    timeout: 30_000,
  });
  let closing = false;
  const close = async (code) => {
    if (closing) return;
    closing = true;
    await browser.close().catch(() => {});
    http.close();
    logStream?.end();
    process.exit(code);
  };
  browser.on("disconnected", () => {
    if (!closing) {
      log("driver", "chromium disconnected");
      close(3);
    }
  });

  const context = await browser.newContext();
  await context.grantPermissions(["camera", "microphone"], { origin });
  const page = await context.newPage();
  page.on("console", (msg) => log(msg.type(), msg.text()));
  page.on("pageerror", (err) => log("error", `page error: ${err.stack || err}`));
  page.on("requestfailed", (req) =>
    log("warning", `request failed: ${redact(req.url())} ${req.failure()?.errorText}`));
  page.on("websocket", (ws) => {
    log("info", `websocket open ${redact(ws.url())}`);
    ws.on("close", () => log("info", `websocket closed ${redact(ws.url())}`));
    ws.on("socketerror", (err) => log("warning", `websocket error ${redact(ws.url())}: ${err}`));
  });
  await page.goto(origin + "/", { timeout: 15_000 });
  const sdk = await page.evaluate(() => window.roost.sdkVersion());
  log("driver", `chromium ${browser.version()}, livekit-client ${sdk}, page ${origin}`);
  reply({ ready: true, chromium: browser.version(), sdk, origin });

  const pending = new Set();  // calls still running when stdin closes finish first
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    const call = handle(line);
    pending.add(call);
    call.finally(() => pending.delete(call));
  });
  lines.on("close", async () => {
    await Promise.allSettled([...pending]);
    await close(0);
  });

  async function handle(line) {
    if (!line.trim()) return;
    let command;
    try {
      command = JSON.parse(line);
    } catch (err) {
      reply({ id: null, ok: false, error: `bad command ${JSON.stringify(line)}: ${err}` });
      return;
    }
    const { id, call, args = [] } = command;
    if (call === "close") {
      reply({ id, ok: true, value: true });
      await close(0);
      return;
    }
    log(POLLED.has(call) ? "debug" : "driver", `call ${call}`);
    try {
      const value = await page.evaluate(([name, params]) => window.roost[name](...params), [call, args]);
      reply({ id, ok: true, value: value ?? null });
    } catch (err) {
      const message = String(err?.message ?? err).replace(/^page\.evaluate: /, "");
      log("driver", `call ${call} failed: ${message}`);
      reply({ id, ok: false, error: message });
    }
  }
}

main().catch((err) => {
  log("driver", `driver failed: ${err.stack || err}`);
  reply({ ready: false, error: String(err?.message ?? err) });
  process.exit(2);
});
