"""The server-side prompt builder of `model_pose12` (SPEC §2): never shown to clients."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Scene(StrEnum):
    STREET = "street"
    STUDIO = "studio"
    INDOOR = "indoor"


class Category(StrEnum):
    SHOES = "shoes"
    DRESS = "dress"
    HOODIE = "hoodie"
    COAT = "coat"


_SCENES: Final = {
    Scene.STREET: "on a sunlit city street, natural daylight, shallow depth of field",
    Scene.STUDIO: "in a clean photo studio, seamless light-grey backdrop, soft box lighting",
    Scene.INDOOR: "in a bright modern apartment, warm window light",
}
_SUBJECTS: Final = {
    Category.SHOES: "a model wearing the reference shoes, full body with the feet in frame",
    Category.DRESS: "a female model wearing the reference dress",
    Category.HOODIE: "a model wearing the reference hoodie",
    Category.COAT: "a model wearing the reference coat",
}
POSES: Final = 12

SEED_MAX: Final = 2_147_483_647


def build_prompt(scene: Scene, category: Category) -> str:
    """Twelve distinct poses of one garment on one model, keeping the garment exactly as given."""
    return (
        f"{_SUBJECTS[category]}, {_SCENES[scene]}; a {POSES}-frame contact sheet of distinct poses "
        "(front, back, three-quarter left and right, walking, seated, close-up details); "
        "keep the garment's colour, pattern and cut exactly as in the reference image; "
        "photorealistic e-commerce fashion photography"
    )
