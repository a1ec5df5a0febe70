"""``selfj-trl serve``: a judge behind HTTP, speaking OpenRLHF's remote reward-model protocol.

OpenRLHF (Ray + vLLM + DeepSpeed) takes a reward model as a URL (``--reward.remote_url`` since 0.10.2,
``--remote_rm_url`` before). Its client POSTs ``{"query": [...], "prompts": [...], "labels": [...]}`` (``query`` is the
prompt plus the sampled response, already in the policy's template) and reads ``rewards``, ``scores`` and
``extra_logs`` from the JSON answer. Since 0.10 it sends ONE sample per request, many requests at once, so the server
gathers requests that arrive together into one forward batch (micro-batching); otherwise a GPU judge would run at
batch size 1.

Scores are :meth:`SelfJudge.score_texts` of the query, the same numbers the judge gives in-process. With
``--teacher_view_with_labels`` and a string label, the reference-aware teacher view is scored instead
(:meth:`SelfJudge.format` of the instruction, the response and the label, i.e. what ``SelfJudge.score(...,
references=...)`` scores).

Where things live: ``config`` (:class:`ServeConfig`), ``batching`` (:class:`MicroBatcher`), ``protocol`` (request
parsing, the teacher view, score scaling) and ``app`` (the FastAPI app, auth, the uvicorn server, ``main``).
"""

from .app import build_server, check_exposure, create_app, is_authorized, is_loopback, main, read_token
from .batching import MicroBatcher, ScoringJob, ServerBusy
from .config import ServeConfig
from .protocol import (
    REWARD_ROUTE,
    RequestError,
    RewardRequest,
    TeacherViewBuilder,
    parse_reward_request,
    reward_response,
    score_scale,
    texts_to_score,
    unit_scores,
)


__all__ = [
    "REWARD_ROUTE",
    "MicroBatcher",
    "RequestError",
    "RewardRequest",
    "ScoringJob",
    "ServeConfig",
    "ServerBusy",
    "TeacherViewBuilder",
    "build_server",
    "check_exposure",
    "create_app",
    "is_authorized",
    "is_loopback",
    "main",
    "parse_reward_request",
    "read_token",
    "reward_response",
    "score_scale",
    "texts_to_score",
    "unit_scores",
]
