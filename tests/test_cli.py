"""`roost room …` against a real server: create, list (table and JSON), participants, delete."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers.server import REPO_ROOT, RoostServer

TIMEOUT = 30.0


def roost(server: RoostServer | None, *args: str, env: dict[str, str] | None = None,
          ) -> subprocess.CompletedProcess[str]:
    """Run `python -m roost …` with LIVEKIT_* pointing at `server` (if given)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    if server is not None:
        environ["LIVEKIT_URL"] = server.http_url
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "roost", *args], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=REPO_ROOT, env=environ, check=False)


def test_room_create_list_delete(server: RoostServer) -> None:
    created = roost(server, "room", "create", "standup", "--metadata", "daily",
                    "--max-participants", "5")
    assert created.returncode == 0, created.stderr
    assert "standup" in created.stdout and "daily" in created.stdout

    as_json = roost(server, "room", "create", "retro", "--json")
    assert as_json.returncode == 0, as_json.stderr
    room = json.loads(as_json.stdout)
    assert room["name"] == "retro" and room["sid"].startswith("RM_")

    listed = roost(server, "room", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "SID"]
    assert sorted(line.split()[0] for line in lines[1:]) == ["retro", "standup"]

    rooms = json.loads(roost(server, "room", "list", "--json", "standup").stdout)
    assert [(r["name"], r["metadata"], r["max_participants"]) for r in rooms] == [
        ("standup", "daily", 5)]

    people = roost(server, "room", "participants", "standup")
    assert people.returncode == 0 and "no participants" in people.stdout
    assert json.loads(roost(server, "room", "participants", "standup", "--json").stdout) == []

    deleted = roost(server, "room", "delete", "standup")
    assert deleted.returncode == 0 and "deleted room standup" in deleted.stdout
    again = roost(server, "room", "delete", "standup")
    assert again.returncode == 1 and "not_found" in again.stderr
    remaining = json.loads(roost(server, "room", "list", "--json").stdout)
    assert [r["name"] for r in remaining] == ["retro"]


def test_room_flags_override_environment(server: RoostServer) -> None:
    wrong = {"LIVEKIT_URL": "http://127.0.0.1:9", "LIVEKIT_API_SECRET": "wrong"}
    ok = roost(None, "room", "list", "--url", server.http_url, "--api-key", "devkey",
               "--api-secret", "secret", env=wrong)
    assert ok.returncode == 0, ok.stderr and "no rooms" in ok.stdout
    bad_secret = roost(server, "room", "list", env={"LIVEKIT_API_SECRET": "wrong"})
    assert bad_secret.returncode == 1 and "401" in bad_secret.stderr
    unknown_key = roost(server, "room", "list", "--api-key", "other")
    assert unknown_key.returncode == 1 and "--api-secret" in unknown_key.stderr
    unreachable = roost(None, "room", "list", "--url", "http://127.0.0.1:9")
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
