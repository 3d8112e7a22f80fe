"""Numeric precisions (data types) used for matmuls, weights, gradients and caches."""

from __future__ import annotations

import enum

from rainier.errors import field_error


class Precision(enum.StrEnum):
    """A numeric format. The value is the spelling used in files and on the command line."""

    FP32 = "fp32"
    TF32 = "tf32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"
    FP4 = "fp4"

    @property
    def bytes_per_element(self) -> float:
        """Storage size of one element (TF32 is stored as FP32)."""
        return _BYTES[self]

    @classmethod
    def parse(cls, value: str, field: str = "precision") -> Precision:
        """Parse a user string, with a one-line error naming the field."""
        try:
            return cls(value.strip().lower())
        except ValueError:
            allowed = ", ".join(p.value for p in cls)
            raise field_error(field, value, f"allowed: {allowed}") from None


_BYTES: dict[Precision, float] = {
    Precision.FP32: 4.0,
    Precision.TF32: 4.0,
    Precision.BF16: 2.0,
    Precision.FP16: 2.0,
    Precision.FP8: 1.0,
    Precision.INT8: 1.0,
    Precision.FP4: 0.5,
}
