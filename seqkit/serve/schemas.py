"""Request limits and the JSON bodies of the HTTP API (pydantic v2; FastAPI derives the
OpenAPI schema from these models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ServeLimits(BaseModel):
    """What one request may ask for. Each default lives here (the CLI flags reuse them)."""

    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(default=64, ge=1, description="texts per /v1/translate request")
    max_chars: int = Field(default=2000, ge=1, description="characters per text or prompt")
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="request body size")
    max_beam_size: int = Field(default=16, ge=1, description="largest beam_size a request may ask for")
    max_tokens: int = Field(default=1000, ge=1, description="largest max_tokens for /v1/generate")
    max_queue: int = Field(default=256, ge=1, description="requests waiting for the model; beyond: 503")
    batch_texts: int = Field(default=64, ge=1, description="texts merged from queued requests into one model call")


class TranslateRequest(BaseModel):
    """A batch of texts and optional search options (unset options: the model's defaults)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"texts": ["Ein Hund rennt über die Wiese."], "strategy": "beam", "beam_size": 5}]})

    texts: list[str] = Field(min_length=1, description="source texts; an empty text gives an empty translation")
    strategy: Literal["greedy", "beam", "sample"] | None = None
    beam_size: int | None = Field(default=None, ge=1)
    n_best: int | None = Field(default=None, ge=1, description="hypotheses per text (<= beam_size)")
    length_penalty: float | None = Field(default=None, ge=0, le=10)
    temperature: float | None = Field(default=None, gt=0, description="strategy sample only")
    top_k: int | None = Field(default=None, ge=0, description="strategy sample only; 0: off")
    top_p: float | None = Field(default=None, gt=0, le=1, description="strategy sample only; 1: off")
    seed: int | None = Field(default=None, description="strategy sample only: same seed, same output")
    attention: bool = Field(default=False, description="also return the attention matrix of the best hypothesis")

    def search_overrides(self) -> dict[str, Any]:
        options = {"strategy": self.strategy, "beam_size": self.beam_size, "n_best": self.n_best,
                   "length_penalty": self.length_penalty, "temperature": self.temperature,
                   "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed}
        return {k: v for k, v in options.items() if v is not None}


class Hypothesis(BaseModel):
    text: str
    log_prob: float = Field(description="sum of the token log-probabilities, eos included")
    score: float = Field(description="what the search ranked by: log_prob / GNMT length penalty for beam, "
                                     "log_prob for greedy and sampling")


class AttentionMatrix(BaseModel):
    """weights[t][s]: attention on source token s while emitting target token t (last row: eos)."""

    src_tokens: list[str]
    tgt_tokens: list[str]
    weights: list[list[float]]


class Translation(BaseModel):
    text: str
    log_prob: float = Field(description="the best hypothesis' log-probability (sum over its tokens, eos included)")
    score: float = Field(description="the best hypothesis' ranking score (log_prob, length-normalized for beam)")
    n_best: list[Hypothesis]
    attention: AttentionMatrix | None = None
    warnings: list[str] = Field(default_factory=list)


class TranslateResponse(BaseModel):
    translations: list[Translation]
    elapsed_ms: float = Field(description="time in the server, queueing included")


class GenerateRequest(BaseModel):
    """Sample a continuation of ``prompt`` from a language model."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"prompt": "ROMEO:", "max_tokens": 200, "temperature": 0.8, "seed": 1}]})

    prompt: str = ""
    max_tokens: int | None = Field(default=None, ge=1, description="tokens to generate (default: the model's max_len)")
    temperature: float | None = Field(default=None, gt=0)
    top_k: int | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None


class GenerateResponse(BaseModel):
    text: str = Field(description="prompt + continuation")
    continuation: str
    elapsed_ms: float


class Health(BaseModel):
    status: Literal["ok"]
    model_kind: str
    queued: int = Field(description="requests waiting for the model")
    in_flight: int = Field(description="requests being decoded now")
    requests_done: int = Field(description="requests answered by the model since start (results or errors)")
    model_calls: int = Field(description="model calls since start; requests_done / model_calls = requests merged per call")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[Any] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
