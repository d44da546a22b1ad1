"""The `relaxed` (ChartQA) and `anls` (DocVQA) graders against their published definitions and an independent edit distance."""

from __future__ import annotations

import random

import pytest

from harness.graders import available_graders, grade
from harness.graders.vision import levenshtein, nls, relaxed_match, to_number
from harness.records import Item


def item(ref):
    return Item(id="x", fields={}, reference=ref)


def test_registered_under_contract_names():
    assert {"relaxed", "anls"} <= set(available_graders())


@pytest.mark.parametrize(
    "pred, gold, ok",
    [
        ("0.59", "0.57", True),  # 3.5% off
        ("0.60", "0.57", False),  # 5.3% off
        ("105", "100", True),  # exactly 5%: the published rule is <=
        ("105.01", "100", False),
        ("95", "100", True),
        ("-104", "-100", True),
        ("12%", "0.12", True),  # a percent sign reads as /100 on either side
        ("12", "12%", False),
        ("1,200", "1200", True),
        ("0", "0", True),  # gold 0: text match, as the published scorer falls back to
        ("0.01", "0", False),
        ("Yes", "yes", True),
        ("Canada", "canada ", True),
        ("Canadas", "Canada", False),
    ],
)
def test_relaxed_match_published_rule(pred, gold, ok):
    assert relaxed_match(pred, gold) is ok


def test_to_number():
    assert to_number("$1,234.5") == 1234.5
    assert to_number("45%") == pytest.approx(0.45)
    assert to_number("nan") is None and to_number("abc") is None


def test_relaxed_grader_reads_the_answer_line():
    g = grade("relaxed", "The chart shows Q3 bars.\nAnswer: 41.8", item("42"))
    assert g.passed and g.extracted == "41.8"
    assert not grade("relaxed", "Answer: 45", item("42")).passed
    assert grade("relaxed", "the answer is **0.57**.", item(["0.9", "0.58"])).passed  # best of several golds
    assert not grade("relaxed", "", item("42")).passed


def test_levenshtein_matches_rapidfuzz():
    from rapidfuzz.distance import Levenshtein

    rng = random.Random(7)
    for _ in range(300):
        a = "".join(rng.choice("abcd 收据") for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice("abcd 收据") for _ in range(rng.randint(0, 12)))
        assert levenshtein(a, b) == Levenshtein.distance(a, b)


def test_nls_against_independent_normalised_distance():
    from rapidfuzz.distance import Levenshtein

    rng = random.Random(11)
    for _ in range(300):
        a = "".join(rng.choice("abcXY ") for _ in range(rng.randint(1, 10)))
        b = "".join(rng.choice("abcxy ") for _ in range(rng.randint(1, 10)))
        na, nb = " ".join(a.lower().split()), " ".join(b.lower().split())
        if not na and not nb:
            continue
        d = Levenshtein.normalized_distance(na, nb)  # distance / max(len)
        expected = 1 - d if d < 0.5 else 0.0
        assert nls(a, b) == pytest.approx(expected)


@pytest.mark.parametrize(
    "pred, gold, score",
    [
        ("1925", "1924", 0.75),  # one substitution in four characters
        ("ITC Limited", "itc  limited", 1.0),  # case and whitespace are normalised away
        ("abc", "xyz", 0.0),
        ("ab", "abcd", 0.5),  # NL = 0.5 is not < 0.5... see next line
    ],
)
def test_anls_examples(pred, gold, score):
    expected = score if score != 0.5 else 0.0  # the threshold: distance 0.5 scores 0
    assert nls(pred, gold) == pytest.approx(expected)


def test_anls_grader_best_gold_and_pass_threshold():
    g = grade("anls", "Answer: 1925", item(["2001", "1924"]))
    assert g.score == pytest.approx(0.75) and g.passed
    bad = grade("anls", "Answer: nothing", item("1924"))
    assert bad.score == 0.0 and not bad.passed
    assert grade("anls", "合计: 128.00\nAnswer: 128.00", item("128.00")).score == 1.0
