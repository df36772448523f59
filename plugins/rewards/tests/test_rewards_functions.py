"""Reward functions score completions as documented; the registry builds them by name."""

from __future__ import annotations

import pytest
from ftx_rewards import ExactMatchRewardOptions, LengthPenaltyOptions, RegexRewardOptions, SimilarityOptions
from ftx_rewards.functions import ExactMatchReward, LengthPenalty, RegexReward, Similarity


def test_exact_match_compares_with_the_reference():
    reward = ExactMatchReward(ExactMatchRewardOptions())
    assert reward(["p"] * 3, ["c b a", " c  b a ", "a b c"], ["c b a", "c b a", None]) == [1.0, 1.0, 0.0]


def test_regex_rewards_matches_and_fullmatch_mode():
    search = RegexReward(RegexRewardOptions(pattern="[A-Z]"))
    full = RegexReward(RegexRewardOptions(pattern="[a-z ]+", mode="fullmatch", reward=2.0, otherwise=-1.0))
    assert search(["p", "p"], ["abc", "aBc"], [None, None]) == [0.0, 1.0]
    assert full(["p", "p"], ["a b", "a b!"], [None, None]) == [2.0, -1.0]


def test_invalid_regex_names_the_pattern():
    from ftx.errors import RecipeError

    with pytest.raises(RecipeError, match="invalid pattern"):
        RegexReward(RegexRewardOptions(pattern="(unclosed"))


def test_length_penalty_is_zero_up_to_max_then_reaches_minus_one():
    reward = LengthPenalty(LengthPenaltyOptions(max=4))
    assert reward(["p"] * 4, ["abcd", "abcdef", "abcdefgh", "a" * 40], [None] * 4) == [0.0, -0.5, -1.0, -1.0]
    words = LengthPenalty(LengthPenaltyOptions(max=2, unit="words"))
    assert words(["p"], ["a b c"], [None]) == [-0.5]


def test_similarity_gives_partial_credit():
    reward = Similarity(SimilarityOptions())
    exact, close, far = reward(["p"] * 3, ["c b a", "c b", "zzzz"], ["c b a"] * 3)
    assert exact == 1.0 and 0.5 < close < 1.0 and far == 0.0


def test_every_reward_is_registered_and_built_through_the_registry(plugin_manager):

    from ftx.context import Run

    names = plugin_manager.registry.names("reward")
    assert {"exact-match", "regex", "length-penalty", "similarity", "reward-model"} <= set(names)
    run = Run.__new__(Run)
    run.manager = plugin_manager
    reward = run.build_component("reward", "length-penalty", {"max": 3})
    assert reward(["p"], ["abcdef"], [None]) == [-1.0]

