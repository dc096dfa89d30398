"""The LLM annotator's reading of a reply: a label and its confidence from the first token's
top log-probabilities or from one yes/no request per label (hand-computed), and one-line
errors for what a user must fix."""

import math
from types import SimpleNamespace

import pytest

from star.errors import StarError
from star.labelling.annotator import (
    Endpoint,
    ask,
    check_messages,
    closed_answer,
    label_mass,
    messages,
    true_probability,
)

LABELS = ("positive", "negative", "neutral")


def test_each_label_collects_the_tokens_that_begin_it_and_no_other():
    top = [(" positive", math.log(0.5)), ("Pos", math.log(0.2)), ("ne", math.log(0.1)),
           ("negative", math.log(0.05)), ("The", math.log(0.1))]  # fmt: skip
    mass, shared = label_mass(top, LABELS)
    # "ne" begins negative and neutral: it counts for neither (but is shared mass); "The" for none
    assert mass == pytest.approx({"positive": 0.7, "negative": 0.05, "neutral": 0.0})
    assert shared == pytest.approx(0.1)


def _content(top, listed=True):
    tokens = [SimpleNamespace(token=t, logprob=lp) for t, lp in top]
    return [
        SimpleNamespace(token=top[0][0], logprob=top[0][1], top_logprobs=tokens if listed else [])
    ]


def test_the_answer_is_the_label_with_most_probability_unrenormalised():
    top = [("neg", math.log(0.3)), ("pos", math.log(0.25)), ("I", math.log(0.45))]
    # the model wrote "I think…" but its label mass says negative, at 0.3 (not 0.3 / 0.55)
    assert closed_answer("I think negative", _content(top), LABELS) == ("negative", 0.3, True)


def test_without_log_probabilities_the_text_is_read_and_confidence_is_unknown():
    assert closed_answer(" Neutral.", None, LABELS) == ("neutral", None, False)
    assert closed_answer("It is mixed", None, LABELS) == (None, None, False)  # outside the set
    no_label = _content([("zzz", math.log(0.9))])
    assert closed_answer("x", no_label, LABELS) == (None, None, False)


def test_a_read_dominated_by_shared_first_tokens_is_unclear():
    top = [("ne", math.log(0.6)), ("pos", math.log(0.2))]
    assert closed_answer("ne", _content(top), LABELS) == ("positive", pytest.approx(0.2), False)


def test_p_true_is_yes_against_no_or_the_sampled_token_alone():
    listed = [(" Yes", math.log(0.6)), ("no", math.log(0.2)), ("N", math.log(0.1)),
              ("Maybe", math.log(0.1))]  # fmt: skip
    assert true_probability(_content(listed)) == pytest.approx(0.6 / 0.9)
    assert true_probability(_content([("yes", math.log(0.8))], listed=False)) == pytest.approx(0.8)
    assert true_probability(_content([("No", math.log(0.7))], listed=False)) == pytest.approx(0.3)
    assert true_probability(_content([("Maybe", math.log(0.7))], listed=False)) is None
    assert true_probability(None) is None


class _Server:
    """Replies by the request's last user message: the first-token reply, then a yes/no per
    label; records what it was asked. `logprobs=False`: a server that returns none."""

    def __init__(self, first, yes, logprobs=True):
        self.first, self.yes, self.asked, self.logprobs = first, yes, [], logprobs
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, messages, max_tokens, **_):
        user = messages[-1]["content"]
        self.asked.append(user)
        if "Proposed label: " in user:
            label = user.split("Proposed label: ")[1].split("\n")[0]
            top = [("yes", math.log(self.yes[label])), ("no", math.log(1 - self.yes[label]))]
        else:
            top = self.first
        message = SimpleNamespace(content=top[0][0])
        listed = SimpleNamespace(content=_content(top)) if self.logprobs else None
        reply = SimpleNamespace(message=message, logprobs=listed)
        usage = SimpleNamespace(prompt_tokens=10, completion_tokens=1)
        return SimpleNamespace(choices=[reply], usage=usage)


CARDS = ("card_arrival", "card_linking", "balance")


@pytest.mark.parametrize(
    "scoring,first,answer,confidence,requests",
    [
        # a clear first token: one request
        ("auto", [("bal", math.log(0.9))], "balance", 0.9, 1),
        # "card" begins two labels: auto asks once per label and takes the best P(True)
        ("auto", [("card", math.log(0.8)), ("bal", math.log(0.1))], "card_linking", 0.7, 4),
        ("first-token", [("card", math.log(0.8)), ("bal", math.log(0.1))], "balance", 0.1, 1),
        ("per-label", [("bal", math.log(0.9))], "card_linking", 0.7, 3),
    ],
)
def test_scoring_asks_per_label_when_the_first_token_cannot_tell(
    scoring, first, answer, confidence, requests
):
    server = _Server(first, {"card_arrival": 0.4, "card_linking": 0.7, "balance": 0.2})
    endpoint = Endpoint("http://h/v1", "m", None, scoring=scoring)
    said = ask(server, endpoint, "my card has not come", CARDS)
    assert (said.answer, said.confidence) == (answer, pytest.approx(confidence))
    assert said.requests == len(server.asked) == requests and said.tokens == 11 * requests
    assert said.scoring == (
        "per-label" if requests > 1 or scoring == "per-label" else "first-token"
    )
    assert endpoint.requests_per_item(CARDS)[0] <= requests <= endpoint.requests_per_item(CARDS)[1]


def test_the_per_label_question_names_the_set_and_the_label():
    system, user = check_messages("my card has not come", CARDS, "balance")
    assert "card_arrival, card_linking, balance" in system["content"]
    assert (
        user["content"] == "my card has not come\n\nProposed label: balance\nIs this label right?"
    )


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
        (("http://h/v1", "m", None, 1.0, 2, "best"), "--scoring must be one of auto, "),
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


def test_auto_does_not_ask_per_label_a_server_that_gives_no_log_probabilities():
    server = _Server([("balance", 0.0)], {}, logprobs=False)
    said = ask(server, Endpoint("http://h/v1", "m", None), "how much is left?", CARDS)
    assert (said.answer, said.confidence, said.requests) == ("balance", None, 1)
    assert len(server.asked) == 1
