"""Errors of the rules package, rooted in one base error."""

from __future__ import annotations


class RulesError(Exception):
    """Base of every error raised by `fraudops.rules`."""


class RuleSetError(RulesError, ValueError):
    """A rule set that does not validate; `errors` holds one readable line per problem, each
    naming the rule (by id) and the field at fault."""

    def __init__(self, errors: list[str], source: str = "rule set") -> None:
        self.errors = list(errors)
        self.source = source
        lines = "\n".join(f"  - {error}" for error in self.errors)
        super().__init__(f"{source} is invalid ({len(self.errors)} error(s)):\n{lines}")


class ListEntryError(RulesError, ValueError):
    """A list entry (or list definition) that does not fit its list's kind."""
