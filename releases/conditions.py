"""Safe evaluation of an analysis metric's ``successCondition`` / ``failureCondition`` over ``result``.

Called by ``activities.analysis`` (every measurement) and by ``releases.loader.parse_spec`` (release validation:
an expression that does not parse is refused, exit 2, before anything happens). Never ``eval``: the expression is
parsed with ``ast`` and only a whitelist of node types is walked (see ``evaluate``).
"""

from __future__ import annotations

from typing import Any


class ConditionError(ValueError):
    """The expression is not allowed (validation) or could not be evaluated on this result (measurement)."""


def check(expr: str) -> None:
    """Raises ConditionError when ``expr`` is not a valid condition."""
    raise NotImplementedError


def evaluate(expr: str, result: Any) -> bool:
    """The condition's truth for ``result``; ConditionError on a bad expression or a failing evaluation."""
    raise NotImplementedError
