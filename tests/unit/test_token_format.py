"""API tokens: ``delta_`` + 30 base62 characters + a 6-character base62 CRC32 of those 30."""

from __future__ import annotations

import hashlib
import string
import zlib

import pytest

from farm.db.tokens import hash_token, is_well_formed, new_token, token_checksum

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def reference_checksum(random_part: str) -> str:
    """The checksum as a secret scanner would write it from the docs, independently."""
    number = zlib.crc32(random_part.encode("ascii"))
    return "".join(BASE62[(number // 62**power) % 62] for power in range(5, -1, -1))


def test_a_new_token_has_the_prefix_the_length_and_a_valid_checksum() -> None:
    token = new_token()
    assert token.startswith("delta_")
    assert len(token) == len("delta_") + 30 + 6
    assert set(token.removeprefix("delta_")) <= set(BASE62)
    assert token[-6:] == reference_checksum(token[6:36])
    assert is_well_formed(token)


def test_tokens_are_random() -> None:
    assert len({new_token() for _ in range(200)}) == 200


def test_the_checksum_is_zero_padded_to_six_characters() -> None:
    for random_part in ("0" * 30, "z" * 30, "a" * 30):
        assert token_checksum(random_part) == reference_checksum(random_part)
        assert len(token_checksum(random_part)) == 6


def test_any_one_changed_character_fails_the_checksum() -> None:
    """CRC32 catches every error within 32 bits, so one changed character never passes."""
    token = new_token()
    for position in range(len("delta_"), len(token)):
        for replacement in ("0", "Z", "z", "q"):
            if token[position] == replacement:
                continue
            changed = token[:position] + replacement + token[position + 1 :]
            assert not is_well_formed(changed), (position, replacement)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "delta_",
        "not-a-token",
        "ghp_" + "a" * 36,
        "Delta_" + "a" * 36,
        "delta-" + "a" * 36,
    ],
)
def test_wrong_shapes_are_not_well_formed(bad: str) -> None:
    assert not is_well_formed(bad)


def test_extra_characters_around_a_good_token_are_refused() -> None:
    token = new_token()
    for bad in (token + "\n", " " + token, token + "0", token[:-1], token.replace("_", "-")):
        assert not is_well_formed(bad)


def test_the_stored_form_is_the_sha256_of_the_whole_token() -> None:
    token = new_token()
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token not in hash_token(token)
