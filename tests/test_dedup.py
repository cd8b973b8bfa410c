"""The character shingler and the one-permutation MinHash signature used for near-dup detection."""

from __future__ import annotations

import random

import numpy as np
import pytest

from zhtw.corpus.steps import char_shingles, oph_signature

HAN = "的一是在不了有和人這中大為上個國我以要他時來用們生到作地於出就分對成會可主發年動同工也能下過子說產種面而方後多定行學法所民得經"


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(HAN) for _ in range(n))


def jaccard(a: str, b: str, n: int = 5) -> float:
    sa = {a[i : i + n] for i in range(len(a) - n + 1)}
    sb = {b[i : i + n] for i in range(len(b) - n + 1)}
    return len(sa & sb) / len(sa | sb)


def test_char_shingles_ignore_whitespace_and_count_distinct_ngrams() -> None:
    assert np.array_equal(char_shingles("臺灣 高山\n茶葉", 5), char_shingles("臺灣高山茶葉", 5))
    assert char_shingles("臺灣高山茶葉", 5).shape == (2, 1)  # 臺灣高山茶, 灣高山茶葉
    assert char_shingles("臺灣", 5).shape == (1, 1)  # shorter than n: the whole text is one shingle
    assert char_shingles("  \n", 5).shape == (0, 1)
    assert int(char_shingles("a" * 50, 5).max()) < 2**61 - 1  # below the MinHash prime


@pytest.mark.parametrize("edits", [0, 10, 40, 150])
def test_oph_signature_agreement_estimates_jaccard(edits: int) -> None:
    rng = random.Random(edits)
    a = random_text(rng, 3000)
    b = list(a)
    for _ in range(edits):
        b[rng.randrange(len(b))] = rng.choice(HAN)
    b = "".join(b)
    true_j = jaccard(a, b)
    agree = []
    for seed in range(20):  # average over seeds: each signature has 112 bins
        sa = oph_signature(char_shingles(a, 5), 112, seed)
        sb = oph_signature(char_shingles(b, 5), 112, seed)
        agree.append(float(np.mean(sa == sb)))
    assert abs(np.mean(agree) - true_j) < 0.05, (np.mean(agree), true_j)
    if edits == 0:
        assert min(agree) == 1.0


def test_oph_signature_densifies_short_documents_and_stays_in_range() -> None:
    sig = oph_signature(char_shingles("短文一篇而已", 5), 112, 1)  # 2 shingles, 110 empty bins
    assert sig.shape == (112,)
    assert int(sig.max()) < 2**60
    assert len(set(sig.tolist())) > 100  # empty bins are filled with distinct values
    unrelated = oph_signature(char_shingles(random_text(random.Random(9), 2000), 5), 112, 1)
    other = oph_signature(char_shingles(random_text(random.Random(10), 2000), 5), 112, 1)
    assert np.mean(unrelated == other) < 0.05
