"""How names become files: one stem per name, safe everywhere and unique among the names."""

from __future__ import annotations

import hashlib

import pytest

from captum_polycam.resources import file_stem, unique_file_stems


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def test_a_name_alone_keeps_its_safe_stem() -> None:
    assert file_stem("<b>&c d.jpg") == "_b__c_d.jpg"
    assert unique_file_stems(["cat.png", "<b>&c d.jpg"]) == {
        "cat.png": "cat.png",
        "<b>&c d.jpg": "_b__c_d.jpg",
    }


def test_names_that_share_a_stem_get_their_own_hash() -> None:
    stems = unique_file_stems(["a b.png", "a_b.png", "cat.png"])
    assert stems == {
        "a b.png": f"a_b.png-{_digest('a b.png')[:8]}",
        "a_b.png": f"a_b.png-{_digest('a_b.png')[:8]}",
        "cat.png": "cat.png",
    }


def test_stems_that_differ_only_in_case_are_shared_on_case_insensitive_systems() -> None:
    stems = unique_file_stems(["Cat.png", "cat.png"])
    assert {stem.lower() for stem in stems.values()} == {
        f"cat.png-{_digest('Cat.png')[:8]}".lower(),
        f"cat.png-{_digest('cat.png')[:8]}",
    }


@pytest.mark.parametrize("name", ["con", "NUL.png", "com1.jpg", "lpt9", "aux.tar.gz"])
def test_names_windows_reserves_get_a_hash(name: str) -> None:
    assert unique_file_stems([name]) == {name: f"{name}-{_digest(name)[:8]}"}


def test_long_names_are_cut_and_get_a_hash() -> None:
    long = "x" * 150 + ".png"
    assert unique_file_stems([long]) == {long: "x" * 100 + f"-{_digest(long)[:8]}"}
    assert unique_file_stems(["x" * 100]) == {"x" * 100: "x" * 100}


def test_a_hashed_stem_equal_to_another_name_gets_the_whole_digest() -> None:
    hashed = f"a_b-{_digest('a b')[:8]}"
    stems = unique_file_stems(["a b", "a_b", hashed])
    assert stems == {
        "a b": f"a_b-{_digest('a b')}",
        "a_b": f"a_b-{_digest('a_b')[:8]}",
        hashed: f"{hashed}-{_digest(hashed)}",
    }
    assert len({stem.lower() for stem in stems.values()}) == 3


def test_the_stems_depend_on_the_names_not_their_order_nor_repeats() -> None:
    names = ["a b.png", "a_b.png", "con.png", "cat.png", "x" * 120]
    assert unique_file_stems(names) == unique_file_stems([*reversed(names), *names])
