from pathlib import Path

import pytest

from app.config import SHIPPED_PROMPTS_DIR
from app.prompts import PromptError, Prompts


def test_shipped_prompts_load_and_render_language() -> None:
    prompts = Prompts.load(SHIPPED_PROMPTS_DIR)
    system, user = prompts.render(
        data='{"alerts": []}',
        status="firing",
        firing_count=1,
        resolved_count=0,
        window_minutes=30,
        language="vi",
    )
    assert "Vietnamese" in system and "Vietnamese" in user
    assert "<<<ALERT_DATA" in user and '{"alerts": []}' in user


def write(tmp_path: Path, system: str, user: str) -> Path:
    (tmp_path / "system.md").write_text(system)
    (tmp_path / "user.md").write_text(user)
    return tmp_path


def test_missing_placeholder_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match=r"missing placeholder.*data"):
        Prompts.load(write(tmp_path, "lang ${language}", "no data here"))


def test_unknown_placeholder_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match=r"unknown placeholder.*secret"):
        Prompts.load(write(tmp_path, "lang ${language}", "${data} ${secret}"))


def test_missing_template_file_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="cannot read"):
        Prompts.load(tmp_path)


def test_json_braces_need_no_escaping(tmp_path: Path) -> None:
    prompts = Prompts.load(write(tmp_path, '{"a": 1} ${language}', "${data}"))
    system, _ = prompts.render(
        data="d", status="firing", firing_count=1, resolved_count=0, window_minutes=1, language="en"
    )
    assert system == '{"a": 1} English'
