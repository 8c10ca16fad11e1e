"""Built-in avatar faces, selected by the compose API's `faceId` (colours and proportions)."""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Face:
    """What one face looks like; `renderer.FaceLayers` turns it into pixels once."""

    face_id: str
    name: str
    background_top: RGB
    background_bottom: RGB
    skin: RGB
    skin_shade: RGB
    hair: RGB
    hair_style: str  # "long" | "short" | "bun"
    iris: RGB
    lips: RGB
    shirt: RGB
    head_rx: float = 118.0
    head_ry: float = 150.0
    beard: bool = False
    glasses: bool = False


FACES: dict[str, Face] = {
    face.face_id: face
    for face in (
        Face(
            face_id="ada",
            name="Ada",
            background_top=(52, 86, 112),
            background_bottom=(22, 40, 58),
            skin=(224, 172, 138),
            skin_shade=(190, 134, 104),
            hair=(58, 36, 26),
            hair_style="long",
            iris=(70, 120, 80),
            lips=(178, 82, 86),
            shirt=(196, 72, 64),
            head_rx=112.0,
            head_ry=146.0,
        ),
        Face(
            face_id="ben",
            name="Ben",
            background_top=(120, 112, 104),
            background_bottom=(60, 56, 54),
            skin=(150, 104, 76),
            skin_shade=(118, 78, 56),
            hair=(28, 24, 22),
            hair_style="short",
            iris=(60, 44, 32),
            lips=(132, 74, 64),
            shirt=(52, 92, 150),
            head_rx=122.0,
            head_ry=152.0,
            beard=True,
        ),
        Face(
            face_id="cleo",
            name="Cleo",
            background_top=(96, 64, 120),
            background_bottom=(40, 26, 56),
            skin=(240, 200, 172),
            skin_shade=(206, 160, 132),
            hair=(196, 120, 52),
            hair_style="bun",
            iris=(64, 100, 150),
            lips=(196, 96, 110),
            shirt=(48, 140, 120),
            head_rx=110.0,
            head_ry=144.0,
            glasses=True,
        ),
    )
}
DEFAULT_FACE_ID = "ada"


def get_face(face_id: str) -> Face | None:
    """The face for a `faceId`; a Simli-style `<face>/<emotion>` suffix is ignored."""
    key = face_id.split("/", 1)[0].strip().lower()
    return FACES.get(key)


def face_ids() -> list[str]:
    """The ids a client may ask for."""
    return sorted(FACES)
