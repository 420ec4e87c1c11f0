"""Which row of the UNet batch plays which role.

Why: the official codes hard-code `chunk(2)` for CFG and `[:num_heads]` for "the source image", so a
batch of two edits or a reference-only conditional pass breaks them. The pipeline that builds the batch
also builds this object; controls ask for rows by role and half.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Half = Literal["uncond", "cond"]


@dataclass(frozen=True)
class Row:
    role: str  # "target", "source", "reference", "inversion", ...
    item: int = 0  # which one of that role (target 0, target 1, reference 2, ...)
    half: Half = "cond"


@dataclass(frozen=True)
class BatchLayout:
    entries: tuple[Row, ...]

    @classmethod
    def single_half(cls, roles: Sequence[str], half: Half = "cond") -> BatchLayout:
        counts: dict[str, int] = {}
        entries = []
        for role in roles:
            entries.append(Row(role, counts.get(role, 0), half))
            counts[role] = counts.get(role, 0) + 1
        return cls(tuple(entries))

    @classmethod
    def with_cfg(cls, roles: Sequence[str]) -> BatchLayout:
        """[uncond rows..., cond rows...]: the order diffusers pipelines use for classifier-free guidance."""
        return cls.single_half(roles, "uncond") + cls.single_half(roles, "cond")

    @classmethod
    def without_cfg(cls, roles: Sequence[str]) -> BatchLayout:
        return cls.single_half(roles, "cond")

    def __add__(self, other: BatchLayout) -> BatchLayout:
        return BatchLayout(self.entries + other.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def size(self) -> int:
        return len(self.entries)

    @property
    def has_cfg(self) -> bool:
        return any(row.half == "uncond" for row in self.entries)

    def indices(self, role: str | None = None, half: Half | None = None, item: int | None = None) -> list[int]:
        """Batch rows matching every given field, in batch order."""
        return [
            i
            for i, row in enumerate(self.entries)
            if (role is None or row.role == role)
            and (half is None or row.half == half)
            and (item is None or row.item == item)
        ]

    def index(self, role: str, half: Half, item: int = 0) -> int:
        rows = self.indices(role, half, item)
        if len(rows) != 1:
            raise ValueError(f"batch layout has {len(rows)} rows for role={role!r} half={half!r} item={item}")
        return rows[0]

    def count(self, role: str, half: Half | None = None) -> int:
        return len({row.item for row in self.entries if row.role == role and (half is None or row.half == half)})

    def require(self, *roles: str) -> None:
        """Raise a clear error when a control needs roles the pipeline did not put in the batch."""
        present = {row.role for row in self.entries}
        missing = [r for r in roles if r not in present]
        if missing:
            raise ValueError(f"batch layout lacks role(s) {missing}; it has {sorted(present)}")
