"""An LLM annotator behind an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp's
server, Ollama, a hosted API), spoken to with the `openai` client (`star-al[llm]`).

A closed label set is answered with the label and a confidence read off the first answer
token's top log-probabilities: each label collects the probability of the listed tokens that
begin it (" Pos", "positive", …; a token that begins several labels counts for none), and the
answer is the label with the most. The confidence is that label's own probability, not
renormalised over the labels: mass the model put outside the set counts against it. A free
answer is the generated text, its confidence the geometric mean of its tokens' probabilities.
A server that returns no log-probabilities gives answers with no confidence, which routing
sends to people.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from star.errors import StarError, first_line

PROMPT_VERSION = "star-annotate-1"  # changes whenever the instructions below change
TOP_LOGPROBS = 20


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str | None
    timeout: float = 60.0  # seconds per request
    retries: int = 2  # the openai client's own retries, with exponential backoff

    @classmethod
    def from_options(
        cls,
        base_url: str | None,
        model: str | None,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
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
        key = api_key or os.environ.get("OPENAI_API_KEY")
        return cls(base_url.rstrip("/"), model, key, timeout, retries)

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


def ask(client, endpoint: Endpoint, prompt: str, labels: tuple[str, ...] | None) -> Answer:
    """One chat-completions request; every failure is one line (StarError)."""
    try:
        reply = client.chat.completions.create(
            model=endpoint.model,
            messages=messages(prompt, labels),
            temperature=0,
            max_tokens=16 if labels else 128,
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
    if labels:
        return Answer(*closed_answer(text, content, labels), tokens)
    if not content:
        return Answer(text.strip(), None, tokens)
    mean = sum(t.logprob for t in content) / len(content)
    return Answer(text.strip(), math.exp(mean), tokens)


def closed_answer(text: str, content, labels: tuple[str, ...]) -> tuple[str | None, float | None]:
    """(label, confidence) from the reply's text and its first token's top log-probs."""
    if content:
        mass = label_mass([(t.token, t.logprob) for t in content[0].top_logprobs], labels)
        best = max(labels, key=lambda lab: mass[lab])
        if mass[best] > 0:
            return best, mass[best]
    said = text.strip().strip(".").lower()
    named = [lab for lab in labels if said == lab.lower()]
    return (named[0] if named else None), None


def label_mass(top: list[tuple[str, float]], labels: tuple[str, ...]) -> dict[str, float]:
    """Probability each label gets from the listed first tokens that begin it and no other."""
    mass = dict.fromkeys(labels, 0.0)
    for token, logprob in top:
        piece = token.strip().lower()
        if not piece:
            continue
        starts = [lab for lab in labels if lab.lower().startswith(piece)]
        if len(starts) == 1:
            mass[starts[0]] += math.exp(logprob)
    return mass


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
