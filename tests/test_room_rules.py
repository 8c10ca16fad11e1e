"""The room rules both edges (Twirp UpdateParticipant, the signal UpdateMetadata) share."""

from __future__ import annotations

from livekit.protocol import models

from roost.room.participant import ClientParams, Participant


def participant() -> Participant:
    return Participant(identity="alice", name="Alice", metadata="m0",
                       attributes={"keep": "1", "drop": "2", "change": "3"}, kind=0,
                       permission=models.ParticipantPermission(can_publish=True),
                       params=ClientParams(), api_key="devkey")


def test_attributes_merge_as_livekit_does() -> None:
    p = participant()
    merged = p.merged_attributes({"drop": "", "change": "new", "add": "4"})
    assert merged == {"keep": "1", "change": "new", "add": "4"}
    assert p.attributes == {"keep": "1", "drop": "2", "change": "3"}  # not applied yet


def test_empty_name_or_metadata_leaves_the_old_value() -> None:
    p = participant()
    p.update_info(name="", metadata="", attributes=None)
    assert (p.name, p.metadata, p.attributes["keep"]) == ("Alice", "m0", "1")
    p.update_info(name="Alice B.", metadata="m1", attributes={"only": "this"})
    assert (p.name, p.metadata, p.attributes) == ("Alice B.", "m1", {"only": "this"})
