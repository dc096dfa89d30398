"""ECE, NLL, Brier and reliability bins: known values, and agreement with torchmetrics' ECE."""

import math

import pytest
import torch
from torchmetrics.classification import BinaryCalibrationError

from star.method.metrics import (
    accuracy,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)


def test_ece_known_value():
    confidence = torch.tensor([0.95, 0.95, 0.55, 0.55, 0.15])
    correct = torch.tensor([True, False, True, True, False])
    # (0.9, 1]: acc .5, conf .95 -> 2/5·.45; (.5, .6]: 1 vs .55 -> 2/5·.45; (.1, .2]: 1/5·.15
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.18 + 0.18 + 0.03)
    bins = reliability_bins(confidence, correct)
    assert [b["count"] for b in bins] == [0, 1, 0, 0, 0, 2, 0, 0, 0, 2]
    assert accuracy(correct) == pytest.approx(0.6)


def test_ece_matches_torchmetrics():
    """torchmetrics' binary ECE takes the probability of class 1: for a prediction that is the
    model's chosen label, that is its confidence with target = correct."""
    g = torch.Generator().manual_seed(0)
    confidence = torch.rand(500, generator=g)
    correct = torch.rand(500, generator=g) < confidence
    reference = BinaryCalibrationError(n_bins=10, norm="l1")(confidence, correct.long())
    assert expected_calibration_error(confidence, correct) == pytest.approx(
        reference.item(), abs=1e-6
    )


def test_perfectly_calibrated_and_empty():
    assert expected_calibration_error(torch.tensor([1.0, 1.0]), torch.tensor([True, True])) == 0.0
    assert expected_calibration_error(torch.tensor([]), torch.tensor([], dtype=torch.bool)) == 0.0


def test_brier_and_nll_known_values():
    confidence = torch.tensor([0.9, 0.6, 0.2, 1.0])
    correct = torch.tensor([True, False, False, False])
    # Brier: (.1² + .6² + .2² + 1²) / 4
    assert brier_score(confidence, correct) == pytest.approx((0.01 + 0.36 + 0.04 + 1.0) / 4)
    # NLL: −(log .9 + log .4 + log .8 + log 1e-6) / 4; the certain mistake is clamped
    expected = -(math.log(0.9) + math.log(0.4) + math.log(0.8) + math.log(1e-6)) / 4
    assert negative_log_likelihood(confidence, correct) == pytest.approx(expected, rel=1e-6)
    empty = torch.tensor([])
    assert brier_score(empty, empty.bool()) == negative_log_likelihood(empty, empty.bool()) == 0.0
