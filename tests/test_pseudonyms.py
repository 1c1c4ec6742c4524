from __future__ import annotations

from visrec.pseudonyms import subject_key


def test_pseudonym_is_stable_and_hides_the_identifier(settings):
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET": "s1"}
    key = subject_key("user", 42)
    assert key == subject_key("user", "42")
    assert len(key) == 64 and "42" not in key
    assert key != subject_key("session", 42)


def test_pseudonym_depends_on_the_secret(settings):
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET": "s1"}
    first = subject_key("user", 42)
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET": "s2"}
    assert subject_key("user", 42) != first
