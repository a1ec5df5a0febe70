"""The settings of ``selfj-trl serve`` (one dataclass, parsed by ``TrlParser`` from flags or a YAML recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SelfJInputError
from ..flags import check_instance, dtype_field


@dataclass
class ServeConfig:
    """``selfj-trl serve``: serve a judge over HTTP with OpenRLHF's remote reward-model protocol."""

    judge: str = field(metadata={"help": "Judge folder, Hub id or offline alias."})
    host: str = field(
        default="127.0.0.1",
        metadata={"help": "Interface to bind. Loopback by default; a public one needs a token (see token_env)."},
    )
    port: int = field(default=5000, metadata={"help": "TCP port."})
    max_batch_size: int = field(default=64, metadata={"help": "Most texts scored in one forward batch."})
    max_wait_ms: float = field(
        default=10.0,
        metadata={"help": "How long the first queued request waits for others to fill its batch (milliseconds)."},
    )
    max_texts_per_request: int = field(default=1024, metadata={"help": "Most entries in one request's `query`."})
    max_chars_per_text: int = field(default=100_000, metadata={"help": "Most characters in one query text."})
    max_request_bytes: int = field(default=16 * 1024 * 1024, metadata={"help": "Largest accepted request body."})
    max_pending_texts: int = field(
        default=8192, metadata={"help": "Texts queued beyond this answer 503 (OpenRLHF's client retries)."}
    )
    token_env: str = field(
        default="SELFJ_SERVE_TOKEN",
        metadata={"help": "Environment variable holding the bearer token; when it is set, every request needs it."},
    )
    allow_unauthenticated: bool = field(
        default=False, metadata={"help": "Allow a non-loopback --host without a token (not recommended)."}
    )
    teacher_view_with_labels: bool = field(
        default=False,
        metadata={"help": "Score the reference-aware teacher view when a request's label is a non-empty string."},
    )
    normalize: bool = field(
        default=False,
        metadata={
            "help": "Return `rewards` as (score - mean) / std with the judge's recorded reward stats (config.mean / "
            "config.std), as OpenRLHF's --normalize_reward would; refused for a judge without them."
        },
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: best available)."})
    dtype: str = dtype_field()
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "Token cap per view (default: the max_length the judge was trained at, from config.selfj; "
            "else the model's position limit)."
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})
    log_level: str = field(default="info", metadata={"help": "uvicorn / server log level."})

    def validate(self) -> ServeConfig:
        """Raise a one-line :class:`SelfJInputError` for settings that cannot work."""
        check_instance(self)  # the ranges every command's flags share (selfj_trl.flags.NUMERIC_FLAGS)
        if self.max_pending_texts < self.max_texts_per_request:
            raise SelfJInputError(
                f"`max_pending_texts` ({self.max_pending_texts}) is below `max_texts_per_request` "
                f"({self.max_texts_per_request}); a full request could never be queued. Raise it."
            )
        if not self.token_env:
            raise SelfJInputError("`token_env` is empty; name an environment variable (default SELFJ_SERVE_TOKEN).")
        return self
