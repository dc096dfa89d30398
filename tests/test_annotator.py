"""The LLM annotator's reading of a reply: a label and its confidence from the first token's
top log-probabilities (hand-computed), and one-line errors for what a user must fix."""

import math
from types import SimpleNamespace

import pytest

from star.errors import StarError
from star.labelling.annotator import Endpoint, closed_answer, label_mass, messages

LABELS = ("positive", "negative", "neutral")


def test_each_label_collects_the_tokens_that_begin_it_and_no_other():
    top = [(" positive", math.log(0.5)), ("Pos", math.log(0.2)), ("ne", math.log(0.1)),
           ("negative", math.log(0.05)), ("The", math.log(0.1))]  # fmt: skip
    mass = label_mass(top, LABELS)
    # "ne" begins negative and neutral: it counts for neither; "The" for none
    assert mass == pytest.approx({"positive": 0.7, "negative": 0.05, "neutral": 0.0})


def _content(top):
    tokens = [SimpleNamespace(token=t, logprob=lp) for t, lp in top]
    return [SimpleNamespace(token=top[0][0], logprob=top[0][1], top_logprobs=tokens)]


def test_the_answer_is_the_label_with_most_probability_unrenormalised():
    top = [("neg", math.log(0.3)), ("pos", math.log(0.25)), ("I", math.log(0.45))]
    # the model wrote "I think…" but its label mass says negative, at 0.3 (not 0.3 / 0.55)
    assert closed_answer("I think negative", _content(top), LABELS) == ("negative", 0.3)


def test_without_log_probabilities_the_text_is_read_and_confidence_is_unknown():
    assert closed_answer(" Neutral.", None, LABELS) == ("neutral", None)
    assert closed_answer("It is mixed", None, LABELS) == (None, None)  # outside the set
    assert closed_answer("x", _content([("zzz", math.log(0.9))]), LABELS) == (None, None)


def test_the_instructions_name_the_labels():
    system, user = messages("Great film!", LABELS)
    assert system["content"].endswith("these labels and nothing else: positive, negative, neutral.")
    assert user == {"role": "user", "content": "Great film!"}


@pytest.mark.parametrize(
    "options,message",
    [
        ((None, "m"), "needs --base-url and --llm-model"),
        (("localhost:8080/v1", "m"), "--base-url must start with http:// or https://"),
        (("http://h/v1", "m", None, 0.0), "--timeout must be positive"),
    ],
)
def test_bad_endpoint_options_are_one_line(monkeypatch, options, message):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("STAR_LLM_MODEL", raising=False)
    with pytest.raises(StarError, match=message):
        Endpoint.from_options(*options)


def test_an_error_status_without_a_message_is_still_one_line():
    from star.labelling.annotator import _describe

    class Refused(Exception):
        status_code = 503

    assert _describe(Refused()) == "answered 503: Refused"  # an empty message read [0] before
