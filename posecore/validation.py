"""Problems found in input data, collected and reported together.

Every check that looks at user data appends a :class:`Problem` naming the file, the
record and the field, instead of raising at the first one, so a user fixes a whole
file in one pass. :class:`DataValidationError` carries them all.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from posecore.errors import UserError


@dataclass(frozen=True)
class Problem:
    """One defect in one record: ``file: record: field: message``."""

    file: str
    record: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.record}: field '{self.field}': {self.message}"


class DataValidationError(UserError, ValueError):
    """Input data failed validation; ``problems`` lists every defect found."""

    def __init__(self, problems: list[Problem], hint: str = "", limit: int = 50) -> None:
        self.problems = list(problems)
        lines = [f"{len(self.problems)} problem(s) in the input data:"]
        lines += [f"  - {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


def summarize(problems: list[Problem]) -> dict[str, int]:
    """Count problems by ``field: message`` kind, for drop reports."""
    return dict(Counter(f"{p.field}: {p.message}" for p in problems))
