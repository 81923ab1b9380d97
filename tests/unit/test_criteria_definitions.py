"""What a criterion may be called and template, how its versions are named, and the alignment stats."""

from __future__ import annotations

import pytest
from criteria_judge.definitions import (
    MAX_PROMPT_CHARS,
    Invalid,
    check_name,
    check_prompt,
    check_variables,
    criterion_not_found,
    parse_ref,
    version_not_found,
)
from criteria_judge.stats import alignment_stats


@pytest.mark.parametrize("name", ["a", "highlight-format", "juicebox-relevance", "0-start", "x" * 64])
def test_good_names_are_kept(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-lead", "Upper", "under_score", "dot.ted", "sp ace", "a@v1", "x" * 65, "é"])
def test_bad_names_are_refused_naming_the_rule(name: str) -> None:
    with pytest.raises(Invalid, match="name must be 1-64 characters of a-z, 0-9 and '-'"):
        check_name(name)


def test_judge_is_reserved_for_the_judge_route() -> None:
    with pytest.raises(Invalid, match="'judge' is reserved"):
        check_name("judge")
    assert check_name("judge-2") == "judge-2"


def test_variables_are_a_subset_in_canonical_order_with_output_required() -> None:
    assert check_variables(["output", "messages"]) == ["messages", "output"]
    assert check_variables(["output", "output", "tools"]) == ["tools", "output"]
    assert check_variables(["tool_choice", "output", "tools", "messages"]) == [
        "messages", "tools", "tool_choice", "output"]
    with pytest.raises(Invalid, match="must include 'output'"):
        check_variables(["messages", "tools"])
    with pytest.raises(Invalid, match="unknown variable 'input'"):
        check_variables(["input", "output"])


def test_prompts_must_say_something_and_stay_bounded() -> None:
    assert check_prompt("Mark it failed if the output is rude.") == "Mark it failed if the output is rude."
    with pytest.raises(Invalid, match="prompt is required"):
        check_prompt("  \n ")
    with pytest.raises(Invalid, match=f"at most {MAX_PROMPT_CHARS}"):
        check_prompt("x" * (MAX_PROMPT_CHARS + 1))


@pytest.mark.parametrize(("text", "name", "version", "written"), [
    ("highlight-format", "highlight-format", None, None),
    ("juicebox-relevance@v2", "juicebox-relevance", 2, "v2"),
    ("juicebox-relevance@2", "juicebox-relevance", 2, "2"),
    ("c@v10", "c", 10, "v10"),
    ("highlight-format@fake-version", "highlight-format", None, "fake-version"),
    ("c@v0", "c", None, "v0"),
    ("c@", "c", None, ""),
])
def test_refs_name_a_version_or_the_latest(text: str, name: str, version: int | None, written: str | None) -> None:
    ref = parse_ref(text)
    assert (ref.name, ref.version, ref.version_text) == (name, version, written)
    assert ref.pinned is (written is not None)


def test_an_empty_ref_is_a_bad_request() -> None:
    with pytest.raises(Invalid, match="criterion_id is required"):
        parse_ref("  ")


def test_not_found_messages_are_the_sdks_words() -> None:
    assert str(criterion_not_found("invalid-criterion-name")) == "Criterion invalid-criterion-name not found"
    assert str(version_not_found("fake-version", "highlight-format")) == (
        "Criterion version fake-version not found for criterion highlight-format")


def test_stats_count_fail_as_the_positive_class() -> None:
    pairs = [
        ("FAIL", "FAIL"), ("FAIL", "FAIL"), ("FAIL", "FAIL"),  # TP 3
        ("PASS", "FAIL"),  # FP 1
        ("FAIL", "PASS"), ("FAIL", "PASS"),  # FN 2
        ("PASS", "PASS"), ("PASS", "PASS"), ("PASS", "PASS"), ("PASS", "PASS"),  # TN 4
        ("SKIP", "FAIL"), (None, "FAIL"), (None, None),  # left out
        ("FAIL", "ERROR"),  # labeled, judged ERROR: left out
        ("PASS", None), ("FAIL", None),  # pending
    ]
    s = alignment_stats(pairs)
    assert (s.true_positives, s.false_positives, s.false_negatives, s.true_negatives) == (3, 1, 2, 4)
    assert (s.pending, s.labeled, s.total) == (2, 13, 16)
    assert s.precision == pytest.approx(3 / 4)
    assert s.recall == pytest.approx(3 / 5)
    assert s.f1 == pytest.approx(2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5))


def test_ratios_without_a_denominator_are_absent() -> None:
    nothing = alignment_stats([])
    assert (nothing.precision, nothing.recall, nothing.f1, nothing.total) == (None, None, None, 0)
    never_failed = alignment_stats([("PASS", "PASS"), ("FAIL", "PASS")])  # the judge never said FAIL
    assert never_failed.precision is None and never_failed.recall == 0.0 and never_failed.f1 is None
    no_human_fail = alignment_stats([("PASS", "FAIL"), ("PASS", "PASS")])
    assert no_human_fail.precision == 0.0 and no_human_fail.recall is None and no_human_fail.f1 is None
    all_wrong = alignment_stats([("PASS", "FAIL"), ("FAIL", "PASS")])
    assert all_wrong.precision == 0.0 and all_wrong.recall == 0.0 and all_wrong.f1 is None
    perfect = alignment_stats([("FAIL", "FAIL"), ("PASS", "PASS")])
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)
