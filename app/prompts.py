"""Loads `prompts/` once and renders it; a template with a missing or unknown placeholder fails at start.

Templates use `${name}` placeholders (string.Template), so JSON braces in the text need no escaping.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

SYSTEM_PLACEHOLDERS = frozenset({"language"})
USER_PLACEHOLDERS = frozenset(
    {"data", "status", "firing_count", "resolved_count", "window_minutes", "language"}
)
LANGUAGES = {"en": "English", "vi": "Vietnamese (tiếng Việt)"}


class PromptError(Exception):
    """A prompt template is missing or does not match the placeholders the code fills in."""


def _load(
    directory: Path, name: str, required: frozenset[str], allowed: frozenset[str]
) -> Template:
    path = directory / name
    try:
        template = Template(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PromptError(f"cannot read prompt template {path}: {exc.strerror}") from exc
    if not template.is_valid():
        raise PromptError(f"{path}: malformed placeholder (use ${{name}}; write $$ for a dollar)")
    used = set(template.get_identifiers())
    if missing := required - used:
        raise PromptError(f"{path}: missing placeholder(s) {', '.join(sorted(missing))}")
    if unknown := used - allowed:
        raise PromptError(f"{path}: unknown placeholder(s) {', '.join(sorted(unknown))}")
    return template


def language_name(code: str) -> str:
    return LANGUAGES.get(code.lower(), code)


@dataclass(frozen=True)
class Prompts:
    system: Template
    user: Template

    @classmethod
    def load(cls, directory: Path) -> Prompts:
        return cls(
            system=_load(directory, "system.md", SYSTEM_PLACEHOLDERS, SYSTEM_PLACEHOLDERS),
            user=_load(directory, "user.md", frozenset({"data"}), USER_PLACEHOLDERS),
        )

    def render(
        self,
        *,
        data: str,
        status: str,
        firing_count: int,
        resolved_count: int,
        window_minutes: int,
        language: str,
    ) -> tuple[str, str]:
        """(system, user) messages. `data` is already a JSON text with `<` and `>` escaped."""
        name = language_name(language)
        system = self.system.substitute(language=name)
        user = self.user.substitute(
            data=data,
            status=status,
            firing_count=firing_count,
            resolved_count=resolved_count,
            window_minutes=window_minutes,
            language=name,
        )
        return system, user
