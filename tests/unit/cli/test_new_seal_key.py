"""`python -m worker new-seal-key`: a fresh key for SEAL_KEYS, which the worker's settings accept."""

from __future__ import annotations

import pytest

from worker.cli.commands import main
from worker.settings import Settings


def _new_key(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["new-seal-key"]) == 0
    return capsys.readouterr().out.strip()


def test_each_call_prints_a_new_key_that_seal_keys_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    first, second = _new_key(capsys), _new_key(capsys)
    assert first != second
    settings = Settings(_env_file=None, seal_keys=f"{first},{second}")
    assert settings.seal_key_list == [first, second]


def test_a_mistyped_key_is_refused_by_position_and_names_the_command_that_makes_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ValueError, match="SEAL_KEYS key #2 is not a Fernet key") as refused:
        Settings(_env_file=None, seal_keys=f"{_new_key(capsys)},not-a-key")
    assert "make one with `python -m worker new-seal-key`" in str(refused.value)
    assert "not-a-key" not in str(refused.value)
