"""Child-process entry point: `python -m tests.helpers.scenario_runner module:fn '[args]'`.

Imports the scenario coroutine function and runs it with a timeout. On success it writes the
JSON result to `--result-file` (also printed after `RESULT_MARKER`) and exits 0; on an
exception it prints the traceback and exits 1. The official SDK's logs (Rust included, with
`LIVEKIT_RTC_DEBUG=1`) go to stderr through `logging`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

RESULT_MARKER = "@@SCENARIO_RESULT@@ "


def _load(fn_path: str) -> Callable[..., Awaitable[Any]]:
    module_name, _, attr = fn_path.partition(":")
    if not attr:
        raise SystemExit(f"expected module:function, got {fn_path!r}")
    fn = getattr(importlib.import_module(module_name), attr)
    if not asyncio.iscoroutinefunction(fn):
        raise SystemExit(f"{fn_path} is not an async function")
    return fn  # type: ignore[no-any-return]


async def _run(fn: Callable[..., Awaitable[Any]], args: list[Any], timeout: float) -> Any:
    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            return await fn(*args)
    except TimeoutError:
        if limit.expired():
            # The scenario was cancelled; the traceback shows where it was waiting.
            print(f"scenario exceeded its {timeout:.1f} s limit", file=sys.stderr)
        raise


def _drop_libwebrtc_debug(record: logging.LogRecord) -> bool:
    """libwebrtc's debug chatter drowns the SDK's own reasons; keep its warnings and errors."""
    if record.levelno > logging.DEBUG or not isinstance(record.args, tuple) or not record.args:
        return True
    return record.args[0] != "libwebrtc"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("fn_path")
    parser.add_argument("args", nargs="?", default="[]")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--result-file", help="write the JSON result here (else to stdout)")
    ns = parser.parse_args()

    logging.basicConfig(
        level=logging.DEBUG,
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d %(levelname).1s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    if os.environ.get("ROOST_TEST_WEBRTC_LOGS") != "1":
        for handler in logging.getLogger().handlers:
            handler.addFilter(_drop_libwebrtc_debug)

    fn = _load(ns.fn_path)
    started = time.monotonic()
    code = 0
    try:
        result = asyncio.run(_run(fn, json.loads(ns.args), ns.timeout))
        encoded = json.dumps(result, default=str)
        if ns.result_file:
            # A file, not stdout: SDK threads log to the same stream and can split lines.
            with open(ns.result_file, "w") as out:
                out.write(encoded)
        print(RESULT_MARKER + encoded, flush=True)
        print(f"scenario {ns.fn_path} passed in {time.monotonic() - started:.2f} s", flush=True)
    except BaseException:
        traceback.print_exc()
        print(f"scenario {ns.fn_path} FAILED after {time.monotonic() - started:.2f} s")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the SDK's FFI disposal at exit can block on a broken session.
    os._exit(code)


if __name__ == "__main__":
    main()
