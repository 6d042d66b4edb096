"""The strengths of the training augmentations: the `data.<name>` fields every data module's schema
has (`cifar_ft.data.config`) and `transforms.BatchTransform` applies. Light: no torch."""
from __future__ import annotations

from dataclasses import dataclass, fields

from cifar_ft.errors import ConfigError
from cifar_ft.schema import knob


def _scale(v: object) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and 0 < v[0] <= v[1] <= 1



@dataclass
class AugmentOptions:
    """Strengths of the training augmentations (`data.augment` chooses the preset that uses them)."""

    pad_fraction: float = knob(0.125, "pad-crop shift, as a fraction of the stored side (4 px at 32 px)",
                               ge=0.0, le=0.5)
    color_jitter: float = knob(0.4, "jitter: brightness/contrast/saturation factors in [1-s, 1+s]", ge=0.0, le=1.0)
    rotation_deg: float = knob(15.0, "jitter: max rotation, degrees", ge=0.0, le=180.0)
    rrc_scale: list[float] = knob([0.35, 1.0], "rrc: crop area range, as a fraction of the image",
                                  check=_scale, valid="[low, high] with 0 < low <= high <= 1")
    random_erasing: float = knob(0.0, "any preset: probability of one erased box per image (0: off)",
                                 ge=0.0, le=1.0)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(AugmentOptions)]

    @classmethod
    def from_options(cls, options: dict) -> AugmentOptions:
        valid = cls.field_names()
        for key in options:
            if key not in valid:
                raise ConfigError(f"data.{key}: no such augmentation option; valid: {', '.join(valid)}")
        if "rrc_scale" in options:
            options = {**options, "rrc_scale": tuple(float(v) for v in options["rrc_scale"])}
        return AugmentOptions(**options)
