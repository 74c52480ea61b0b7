"""Every setting payflow reads is documented where an operator looks: `.env.example` (with its
default) and the README's configuration table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from payflow.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = sorted(name.upper() for name in Settings.model_fields)


@pytest.mark.parametrize("name", SETTINGS)
def test_the_setting_is_in_env_example(name: str) -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert re.search(rf"^{name}=", text, re.MULTILINE), f"{name} is missing from .env.example"


@pytest.mark.parametrize("name", SETTINGS)
def test_the_setting_is_in_the_readme_table(name: str) -> None:
    rows = [
        line
        for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| `")
    ]
    assert any(f"`{name}`" in row for row in rows), f"{name} is missing from the README table"


def test_env_example_names_only_real_settings() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    named = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    assert named - set(SETTINGS) == set()
