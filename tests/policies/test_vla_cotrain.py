"""Co-training weights: interventions up-weighted, failed episodes' own actions left out."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from policies.vla.config import AugmentConfig, CotrainConfig
from policies.vla.data import TrainingData, frame_weights
from policies.vla.normalize import identity_normalizer
from tests.policies.test_vla_train import random_source

FAILED = st.sampled_from(["all", "interventions", "none"])


@given(
    flags=st.lists(st.booleans(), min_size=1, max_size=40),
    success=st.sampled_from([True, False, None]),
    weight=st.floats(0.0, 10.0),
    failed=FAILED,
)
def test_frame_weights_follow_the_labels(
    flags: list[bool], success: bool | None, weight: float, failed: str
) -> None:
    cfg = CotrainConfig(intervention_weight=weight, failed_episodes=failed)
    w = frame_weights(np.array(flags, np.uint8), success, cfg)
    taken = np.array(flags)
    assert w.shape == (len(flags),) and np.all(w >= 0)
    # The policy failed the episode: it failed, or the operator had to take over.
    policy_failed = success is False or taken.any()
    dropped = policy_failed and failed == "none"
    np.testing.assert_array_equal(w[taken], 0.0 if dropped else weight)
    own = w[~taken]  # the policy's own frames
    if policy_failed and failed != "all":
        assert np.all(own == 0)  # what led to a failure or a takeover is never imitated
    else:
        assert np.all(own == 1)


def test_cotrain_config_names_a_bad_setting() -> None:
    with pytest.raises(ValueError, match="cotrain.failed_episodes"):
        CotrainConfig(failed_episodes="some")


def test_sampling_follows_the_frame_weights() -> None:
    source = random_source(frames=7)
    weights = np.array([0.0, 1.0, 1.0, 0.0, 4.0, 1.0, 1.0])  # frame 4: an intervention
    source = replace(source, frame_weights=weights)
    data = TrainingData(
        [source], [1.0], {"a": np.zeros(4, np.float32)}, identity_normalizer(["front"]), 3
    )
    g = torch.Generator().manual_seed(0)
    picked = []
    for _ in range(50):
        batch = data.sample(64, g, AugmentConfig(shift_px=0))
        # identify frames by their (unique) state rows
        for state in batch.state.numpy():
            picked.append(int(np.argmin(np.abs(source.states - state).sum(axis=1))))
    counts = np.bincount(picked, minlength=7)
    assert counts[0] == counts[3] == 0  # weight 0: never sampled
    assert 3.0 < counts[4] / counts[[1, 2, 5, 6]].mean() < 5.0  # ~4x as often
