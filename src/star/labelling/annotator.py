"""An LLM annotator behind an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp's
server, Ollama, a hosted API), spoken to with the `openai` client (`star-al[llm]`).

A closed label set is answered with a label of the set and a confidence, found one of two
ways (`scoring`):

- **first-token**: one request; each label collects the probability of the first answer
  token's listed top log-probabilities that begin it (" Pos", "positive", …; a token that
  begins several labels counts for none), and the answer is the label with the most. The
  confidence is that label's own probability, not renormalised over the labels: mass the model
  put outside the set counts against it.
- **per-label**: one scored request per label, asking whether that label is right and reading
  the probability of "yes" against "no" off the reply's first token — P(True) of Kadavath et
  al. 2022 ("Language Models (Mostly) Know What They Know", arXiv 2207.05221). The answer is
  the label with the highest P(True), its confidence that P(True). It needs no top
  log-probabilities (the sampled token's own is enough) and tells apart labels that share
  their first token (card_arrival, card_linking), at the price of one request per label.
- **auto** (the default) makes the first-token request and falls back to per-label requests
  only when that read is unclear — no top log-probabilities listed, no label's token among
  them, or more mass on tokens that begin several labels than on the best label — and the
  reply carried log-probabilities at all.

A free answer is the generated text, its confidence the geometric mean of its tokens'
probabilities. An answer with no confidence (a server that returns no log-probabilities at
all) is never accepted: routing sends it to people.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from star.errors import StarError, first_line

PROMPT_VERSION = "star-annotate-2"  # changes whenever the instructions below change
TOP_LOGPROBS = 20
SCORINGS = ("auto", "first-token", "per-label")


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str | None
    timeout: float = 60.0  # seconds per request
    retries: int = 2  # the openai client's own retries, with exponential backoff
    scoring: str = "auto"  # how a closed label set's confidence is read (module docstring)

    @classmethod
    def from_options(
        cls,
        base_url: str | None,
        model: str | None,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        scoring: str = "auto",
    ) -> Endpoint:
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        model = model or os.environ.get("STAR_LLM_MODEL")
        if not base_url or not model:
            raise StarError(
                "the LLM annotator needs --base-url and --llm-model (or OPENAI_BASE_URL and "
                "STAR_LLM_MODEL)"
            )
        if not base_url.startswith(("http://", "https://")):
            raise StarError(f"--base-url must start with http:// or https://, got {base_url!r}")
        if not timeout > 0 or retries < 0:
            raise StarError("--timeout must be positive and --retries at least 0")
        if scoring not in SCORINGS:
            raise StarError(f"--scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        return cls(base_url.rstrip("/"), model, key, timeout, retries, scoring)

    def requests_per_item(self, labels: tuple[str, ...] | None) -> tuple[int, int]:
        """The fewest and most requests one item can take."""
        if not labels or self.scoring == "first-token":
            return 1, 1
        if self.scoring == "per-label":
            return len(labels), len(labels)
        return 1, 1 + len(labels)

    def client(self):
        try:
            from openai import OpenAI
        except ImportError:
            raise StarError("the LLM annotator needs `pip install 'star-al[llm]'`") from None
        # local servers need no key; the client insists on one
        return OpenAI(
            base_url=self.base_url,
            api_key=self.api_key or "no-key",
            timeout=self.timeout,
            max_retries=self.retries,
        )


@dataclass(frozen=True)
class Answer:
    answer: str | None  # None: the reply named no label of the set
    confidence: float | None  # None: the server gave no log-probabilities
    tokens: int  # prompt + completion tokens the server counted (0 if it did not say)
    requests: int = 1
    scoring: str = "first-token"  # how the confidence was read: first-token or per-label
    said: str = ""  # the first reply's text, as written

    @property
    def usable(self) -> bool:
        """Something a person or a threshold can act on: a label of the set, or a free answer."""
        return bool(self.answer)


def messages(prompt: str, labels: tuple[str, ...] | None) -> list[dict]:
    if labels:
        system = (
            "You label data. Reply with exactly one of these labels and nothing else: "
            + ", ".join(labels)
            + "."
        )
    else:
        system = "You label data. Reply with the answer only, as briefly as possible."
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


def check_messages(prompt: str, labels: tuple[str, ...], label: str) -> list[dict]:
    """The per-label question: is `label` the right one for this item?"""
    system = (
        "You check labels. The labels are: " + ", ".join(labels) + ". Reply yes if the "
        "proposed label is the right one for the text, no otherwise, and nothing else."
    )
    user = f"{prompt}\n\nProposed label: {label}\nIs this label right?"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def ask(client, endpoint: Endpoint, prompt: str, labels: tuple[str, ...] | None) -> Answer:
    """One item's answer (one request, or one per label: see the module docstring); every
    failure is one line (StarError)."""
    if not labels:
        text, content, tokens = _complete(client, endpoint, messages(prompt, None), 128)
        if not content:
            return Answer(text.strip(), None, tokens, said=text)
        mean = sum(t.logprob for t in content) / len(content)
        return Answer(text.strip(), math.exp(mean), tokens, said=text)
    spent, text = 0, ""
    if endpoint.scoring != "per-label":
        text, content, spent = _complete(client, endpoint, messages(prompt, labels), 16)
        label, confidence, clear = closed_answer(text, content, labels)
        # a reply without any log-probabilities says the server gives none: asking per label
        # would cost a request per label for no confidence either
        if clear or endpoint.scoring == "first-token" or not content:
            return Answer(label, confidence, spent, said=text)
    p_true = {}
    for label in labels:
        _, content, tokens = _complete(client, endpoint, check_messages(prompt, labels, label), 1)
        spent += tokens
        p_true[label] = true_probability(content)
    requests = len(labels) + (endpoint.scoring != "per-label")
    scored = [lab for lab in labels if p_true[lab] is not None]
    if not scored:  # no log-probabilities at all: the first reply's text, if any, unscored
        label = closed_answer(text, None, labels)[0]
        return Answer(label, None, spent, requests, "per-label", text)
    best = max(scored, key=lambda lab: p_true[lab])
    return Answer(best, p_true[best], spent, requests, "per-label", text)


def _complete(client, endpoint: Endpoint, chat: list[dict], max_tokens: int):
    """(text, the reply's per-token log-probabilities or None, tokens counted) of one request."""
    try:
        reply = client.chat.completions.create(
            model=endpoint.model,
            messages=chat,
            temperature=0,
            max_tokens=max_tokens,
            logprobs=True,
            top_logprobs=TOP_LOGPROBS,
        )
        choice = reply.choices[0]
        text = choice.message.content or ""
        content = choice.logprobs.content if choice.logprobs else None
    except Exception as e:  # openai's errors, httpx's, a malformed body: one line each
        raise StarError(f"the LLM endpoint {endpoint.base_url}: {_describe(e)}") from None
    used = getattr(reply, "usage", None)
    tokens = (used.prompt_tokens + used.completion_tokens) if used else 0
    return text, content, tokens


def closed_answer(
    text: str, content, labels: tuple[str, ...]
) -> tuple[str | None, float | None, bool]:
    """(label, confidence, clear) from the reply's text and its first token's top log-probs.
    Clear: some label's tokens were listed and carry more mass than the tokens that begin
    several labels (the per-label read is needed otherwise)."""
    if content:
        mass, shared = label_mass(_top(content[0]), labels)
        best = max(labels, key=lambda lab: mass[lab])
        if mass[best] > 0:
            return best, mass[best], mass[best] >= shared
    said = text.strip().strip(".").lower()
    named = [lab for lab in labels if said == lab.lower()]
    return (named[0] if named else None), None, False


def true_probability(content) -> float | None:
    """P(yes) / (P(yes) + P(no)) from the reply's first token; from the sampled token alone
    when the server lists no top log-probabilities (P(yes) = 1 − P(no)); None without any."""
    if not content:
        return None
    first = content[0]
    if not first.top_logprobs:
        said, p = first.token.strip().lower(), math.exp(first.logprob)
        if said and "yes".startswith(said):
            return p
        return 1 - p if said and "no".startswith(said) else None
    mass, _ = label_mass(_top(first), ("yes", "no"))
    total = mass["yes"] + mass["no"]
    return mass["yes"] / total if total > 0 else None


def _top(token) -> list[tuple[str, float]]:
    return [(t.token, t.logprob) for t in token.top_logprobs or ()]


def label_mass(
    top: list[tuple[str, float]], labels: tuple[str, ...]
) -> tuple[dict[str, float], float]:
    """Probability each label gets from the listed first tokens that begin it and no other,
    and the probability of the listed tokens that begin several labels."""
    mass, shared = dict.fromkeys(labels, 0.0), 0.0
    for token, logprob in top:
        piece = token.strip().lower()
        if not piece:
            continue
        starts = [lab for lab in labels if lab.lower().startswith(piece)]
        if len(starts) == 1:
            mass[starts[0]] += math.exp(logprob)
        elif len(starts) > 1:
            shared += math.exp(logprob)
    return mass, shared


def _describe(e: Exception) -> str:
    """What went wrong, in the words a user acts on."""
    name = type(e).__name__
    status = getattr(e, "status_code", None)
    if name == "APITimeoutError":
        return "no answer in time (raise --timeout, or check the server)"
    if name == "APIConnectionError":
        return "cannot connect: is the server running, and is --base-url right?"
    if status == 401:
        return "refused the API key (401): set OPENAI_API_KEY or --api-key"
    if status == 404:
        return "not found (404): check --base-url (it usually ends in /v1) and --llm-model"
    if status is not None:
        return f"answered {status}: {first_line(e)[:200]}"
    return f"an unreadable reply ({name}: {first_line(e)[:200]})"
