"""The web pages' words: English as written in the templates and scripts, and a zh-CN dictionary.

`translate(lang, text)` gives `text` in `lang`, or `text` itself when there is no translation, so
a string missing here shows in English rather than not at all. The language is the `genq_lang`
cookie (the switch in every page's header sets it), English by default.
"""

from __future__ import annotations

from typing import Final

from api.web.strings_zh import ZH_CN

LANGUAGES: Final = {"en": "English", "zh-CN": "简体中文"}
DEFAULT: Final = "en"
CATALOGS: Final[dict[str, dict[str, str]]] = {"zh-CN": ZH_CN}

# Words the pages name by key (a status, a kind, a plan, an input field), in English.
KEYED: Final[dict[str, str]] = {
    **{
        f"status:{s}": s.replace("_", " ").capitalize()
        for s in (
            "pending_audit",
            "queued",
            "submitting",
            "processing",
            "archiving",
            "succeeded",
            "failed",
            "timed_out",
            "cancelled",
            "audit_failed",
        )
    },
    "status:pending_audit": "Being checked",
    "status:timed_out": "Timed out",
    "status:audit_failed": "Refused by moderation",
    "status:archiving": "Saving results",
    "kind:basic_clean": "White-background photo",
    "kind:model_pose12": "12 model photos",
    "kind:video": "Video",
    "kind:model_3d": "3D model",
    "plan:free": "Free",
    "plan:pro": "Pro",
    "plan:pro_plus": "Pro Plus",
    "plan:enterprise": "Enterprise",
    **{f"batch:{s}": s.capitalize() for s in ("running", "paused", "completed", "cancelled")},
    **{
        f"field:{f}": f.replace("_", " ").capitalize()
        for f in (
            "image_url",
            "upload_key",
            "scene",
            "category",
            "model",
            "resolution",
            "duration",
            "prompt",
            "version",
            "low_poly",
            "views",
        )
    },
    "field:image_url": "Image address",
    "field:upload_key": "Uploaded photo",
    "field:duration": "Length (s)",
}


def pick(requested: str | None) -> str:
    return requested if requested in LANGUAGES else DEFAULT


def translate(lang: str, text: str) -> str:
    return CATALOGS.get(lang, {}).get(text) or KEYED.get(text, text)


def catalog(lang: str) -> dict[str, str]:
    """What the pages' scripts need to translate in `lang`: the keyed words, then the language's."""
    return KEYED | CATALOGS.get(lang, {})
