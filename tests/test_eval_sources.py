"""Built-in held-out sets without the project's data folder: fetched from a local stand-in for GitHub raw files and
the Hub (127.0.0.1, never the real network), served in each source's original format, converted into the rows the
loaders read, cached, and refused in one line when nothing can be had."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import huggingface_hub
import pytest

from selfj_trl.cli import main as cli_main
from selfj_trl.eval_sets import PublicDataUnavailable, load_eval_set, sources


Q_SINGLE = (
    '[Instruction]\nPlease act as an impartial judge ... "Rating: [[5]]".\n\n[Question]\n{question}\n\n'
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)
Q_MATH = (
    '[Instruction]\nPlease act as an impartial judge ... "Rating: [[5]]".\n\n[Question]\n{question}\n\n'
    "[The Start of Reference Answer]\n{ref_answer_1}\n[The End of Reference Answer]\n\n"
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)
PROMETHEUS_PROMPT = (
    "###Task Description:\nAn instruction ...\n\n###The instruction to evaluate:\n{instruction}\n\n"
    "###Response to evaluate:\n{response}\n\n###Reference Answer (Score 5):\n{reference}\n\n"
    "###Score Rubrics:\n{rubric}\n\n###Feedback: "
)


def annotation(instruction: str, dataset: str, model: str, answer: str, preference: float | None) -> dict:
    return {
        "instruction": instruction,
        "output_1": f"reference for {instruction}",
        "generator_1": "gpt4_1106_preview",
        "dataset": dataset,
        "output_2": answer,
        "generator_2": model,
        "annotator": "weighted_alpaca_eval_gpt4_turbo",
        "preference": preference,
        "raw_completion": {"text": "M"},
    }


def original_files() -> dict[str, bytes]:
    """A few rows of every source, in the original repositories' formats, by URL path on the stand-in."""
    a, lb, pr, fc = sources.ALPACA_EVAL, sources.LLMBAR, sources.PROMETHEUS, sources.FASTCHAT
    items = [("Tell a joke.", "koala"), ("Sum 2 and 3.", "vicuna"), ("Name a colour.", "helpful_base")]
    files = {
        f"{a[0]}/{a[1]}/results/{m}/weighted_alpaca_eval_gpt4_turbo/annotations.json": [
            annotation(i, d, m, f"{m} answers {i}", 1.0 + p) for (i, d), p in zip(items, probs, strict=True)
        ]
        for m, probs in (("claude-2", (0.75, 0.5, 0.25)), ("NullModel", (0.9, 0.0, 0.1)))
    }
    files[f"{a[0]}/{a[1]}/{sources.ALPACA_LEADERBOARD}"] = (
        ",win_rate,standard_error,n_wins,mode,avg_length,length_controlled_winrate,lc_standard_error\n"
        "claude-2,17.19,1.17,131,verified,1069,28.16,\nNullModel,86.5,0.8,1,dev,1,40.0,\ngpt4,23.6,1.3,179,verified,"
        "1365,38.1,\n"
    )
    files[f"{fc[0]}/{fc[1]}/fastchat/llm_judge/data/mt_bench/question.jsonl"] = "".join(
        json.dumps(q) + "\n"
        for q in (
            {"question_id": 81, "category": "writing", "turns": ["Write a haiku.", "Now a limerick."]},
            {"question_id": 111, "category": "math", "turns": ["What is 3 * 4?", "And 5 * 6?"]},
        )
    )
    grades = [
        (81, "alpaca-13b", "single-v1", 1, 6, "Cold wind\n[Not a header]\nold pond"),
        (111, "alpaca-13b", "single-math-v1", 1, 2, "It is 13."),
        (81, "alpaca-13b", "single-v1-multi-turn", 2, 9, "There once was..."),  # turn 2: not turn-1 data
        (111, "gpt-4", "single-math-v1", 1, -1, "12"),  # -1: the grade could not be parsed
        (81, "alpaca-13b", "single-v1", 1, 1, "a second grade of the same answer"),
    ]
    files["spaces/lmsys/mt-bench/resolve/main/" + sources.MTBENCH_JUDGMENTS] = "".join(
        json.dumps(
            {
                "question_id": q,
                "model": m,
                "judge": ["gpt-4", p],
                "turn": t,
                "score": s,
                "judgment": f"Rating: [[{s}]]",
                "user_prompt": (Q_MATH if "math" in p else Q_SINGLE).format(
                    question="What is 3 * 4?" if q == 111 else "Write a haiku.", answer=ans, ref_answer_1="3 * 4 = 12"
                ),
            }
        )
        + "\n"
        for q, m, p, t, s, ans in grades
    )
    dialogue = (
        "Here is a previous dialogue between an assistant and an user. Generate a human preferable response by "
        "the assistant.\nUser: Plan a trip.\n\nAssistant:Go to Rome.\n\nUser: Make it shorter.\n\nAssistant: "
    )
    files[f"{pr[0]}/{pr[1]}/eval/benchmark/data/mt_bench_eval.json"] = [
        {
            "idx": 83,
            "response_source": "vicuna_13b",
            "category": "writing",
            "gpt4_score": [3, 2, 3],
            "instruction": PROMETHEUS_PROMPT.format(
                instruction=dialogue,
                response="Rome.",
                reference="Rome, 3 days.",
                rubric="[Is it short?]\nScore 1: no.",
            ),
        }
    ]
    files[f"{pr[0]}/{pr[1]}/eval/benchmark/data/vicuna_eval.json"] = [
        {
            "idx": 20,
            "response_source": "wizard",
            "category": "knowledge",
            "gpt4_score": [5, 5, 4],
            "instruction": PROMETHEUS_PROMPT.format(
                instruction="Explain tides.",
                response="The moon pulls the sea.",
                reference="Gravity of moon and sun.",
                rubric="[Accurate?]",
            ),
        }
    ]
    files[f"{lb[0]}/{lb[1]}/Dataset/LLMBar/Natural/dataset.json"] = [
        {"input": "Say hi.", "output_1": "hi", "output_2": "bye", "label": 1},
        {"input": "Count to 2.", "output_1": "1 3", "output_2": "1 2", "label": 2},
    ]
    files[f"{lb[0]}/{lb[1]}/Dataset/Processed/LLMEval^2/dataset.json"] = [
        {"input": "Rhyme with cat.", "output_1": "dog", "output_2": "hat", "label": 2}
    ]
    pandalm = [
        {
            "idx": 0,
            "cmp_key": "bloom-7b_llama-7b",
            "instruction": "Shorten it.",
            "input": "A long sentence.",
            "response1": "Long.",
            "response2": "Short.",
            "annotator1": 2,
            "annotator2": 2,
            "annotator3": 1,
        },
        {
            "idx": 1,
            "cmp_key": "opt-7b_pythia-6.9b",
            "instruction": "Name a fruit.",
            "input": float("nan"),
            "response1": "apple",
            "response2": "pear",
            "annotator1": 0,
            "annotator2": 1,
            "annotator3": 0,
        },
        {
            "idx": 2,
            "cmp_key": "opt-7b_llama-7b",
            "instruction": "Pick one.",
            "input": float("nan"),
            "response1": "a",
            "response2": "b",
            "annotator1": 0,
            "annotator2": 1,
            "annotator3": 2,
        },
    ]
    files[f"{sources.PANDALM[0]}/{sources.PANDALM[1]}/{sources.PANDALM_FILE}"] = json.dumps(pandalm)  # NaN, as PandaLM
    return {k: (v if isinstance(v, str) else json.dumps(v)).encode() for k, v in files.items()}


class StandIn:
    """GitHub raw files under /gh and Hub ``resolve`` URLs (HEAD with the headers ``hf_hub_download`` reads)."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self, with_body: bool) -> None:
                path = self.path.split("?")[0].lstrip("/")
                stand_in.requests.append(path)
                body = stand_in.files.get(unquote(path.removeprefix("gh/")))
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{hashlib.sha1(body).hexdigest()}"')
                self.send_header("X-Repo-Commit", "a" * 40)
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_HEAD(self):
                self._serve(False)

            def do_GET(self):
                self._serve(True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stand_in(no_data_folder, monkeypatch):
    hub = StandIn(original_files())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv(sources.GITHUB_RAW_ENV, hub.url + "/gh")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    yield hub
    hub.server.shutdown()


def test_sets_rebuilt_from_original_formats(stand_in):
    alpaca = load_eval_set("alpaca_eval")
    ids = {sources.alpaca_id(i): i for i in ("Tell a joke.", "Sum 2 and 3.", "Name a colour.")}
    assert sorted(set(alpaca.groups)) == sorted(k for k, i in ids.items() if i != "Name a colour.")  # test split
    win = dict(zip(zip(alpaca.models, alpaca.groups, strict=True), alpaca.quality, strict=True))
    assert win[("claude-2", sources.alpaca_id("Tell a joke."))] == pytest.approx(0.75)
    assert win[("NullModel", sources.alpaca_id("Sum 2 and 3."))] == pytest.approx(0.0)
    assert alpaca.calibration.groups == [sources.alpaca_id("Name a colour.")] * 2  # helpful_base: the train split
    assert alpaca.leaderboard == {"claude-2": 17.19, "NullModel": 86.5}  # models not fetched are left out
    assert alpaca.other_leaderboards["length_controlled_win_rate"]["claude-2"] == 28.16
    assert alpaca.group_references[sources.alpaca_id("Tell a joke.")] == "reference for Tell a joke."
    notes = " ".join(alpaca.notes)
    assert (
        "the same data" in notes
        and "AlpacaEval annotations of falcon-7b-instruct, AlpacaEval annotations of alpaca-7b" in notes
    )

    mtbench = load_eval_set("mtbench")
    assert list(zip(mtbench.groups, mtbench.models, mtbench.quality, strict=True)) == [
        ("81", "alpaca-13b", 6.0),
        ("111", "alpaca-13b", 2.0),
    ]  # turn 2, unparsed and repeated grades left out
    assert mtbench.responses[0] == "Cold wind\n[Not a header]\nold pond"
    assert mtbench.references == [None, "3 * 4 = 12"] and mtbench.subsets == ["writing", "math"]
    assert "differs: GPT-4 grades of FastChat's own models" in " ".join(mtbench.notes)

    prometheus = load_eval_set("prometheus")
    assert prometheus.instructions == [
        "User: Plan a trip.\n\nAssistant:Go to Rome.\n\nUser: Make it shorter.",
        "Explain tides.",
    ]
    assert prometheus.responses == ["Rome.", "The moon pulls the sea."]
    assert prometheus.references == ["Rome, 3 days.", "Gravity of moon and sun."]
    assert prometheus.quality.tolist() == [pytest.approx(2.6667), pytest.approx(4.6667)]
    assert prometheus.groups == ["mt_bench-83", "vicuna_bench-20"]

    human = load_eval_set("human_pairwise")
    rows = list(zip(human.subsets, human.instructions, human.labels, strict=True))
    assert rows == [
        ("llmbar_natural", "Say hi.", "A"),
        ("llmbar_natural", "Count to 2.", "B"),
        ("llmeval2", "Rhyme with cat.", "B"),
        ("pandalm_test", "Shorten it.\n\nA long sentence.", "B"),
        ("pandalm_test", "Name a fruit.", "tie"),
    ]  # no majority among 0, 1, 2: left out
    assert "left out: LLMBar llmbar_adv_neighbor, LLMBar llmbar_adv_gptinst" in " ".join(human.notes)


def test_cache_serves_offline_and_partial_sets_are_retried_online(stand_in, monkeypatch):
    load_eval_set("human_pairwise")
    fetched = len(stand_in.requests)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert len(load_eval_set("human_pairwise", max_instructions=2)) == 2
    assert len(stand_in.requests) == fetched  # offline: read from the cache only
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    neighbor = f"{sources.LLMBAR[0]}/{sources.LLMBAR[1]}/Dataset/LLMBar/Adversarial/Neighbor/dataset.json"
    stand_in.files[neighbor] = json.dumps(
        [{"input": "Be brief.", "output_1": "ok", "output_2": "well...", "label": 1}]
    ).encode()
    again = load_eval_set("human_pairwise")  # a set built with parts missing is fetched again when online
    assert "llmbar_adv_neighbor" in again.subsets and len(stand_in.requests) > fetched
    assert not any("Natural" in r for r in stand_in.requests[fetched:])  # fetched files come from the cache


def test_nothing_available_is_one_line(no_data_folder, capsys):
    with pytest.raises(PublicDataUnavailable) as err:
        load_eval_set("prometheus")
    message = str(err.value)
    assert "\n" not in message and message.startswith("prometheus: no data folder")
    assert "offline" in message and "python -m selfj_trl.eval_sets prometheus" in message
    code = cli_main(
        [
            "evaluate",
            "--baselines",
            "length",
            "--eval_sets",
            "alpaca_eval",
            "--output_dir",
            str(no_data_folder / "eval"),
        ]
    )
    stderr = capsys.readouterr().err.strip()
    assert code == 2 and len(stderr.splitlines()) == 1 and "alpaca_eval: no data folder" in stderr


def test_data_dir_given_is_never_replaced(stand_in, tmp_path):
    (tmp_path / "mine").mkdir()
    with pytest.raises(Exception, match="is missing"):
        load_eval_set("mtbench", data_dir=tmp_path / "mine")
    assert stand_in.requests == []


def test_fetch_command_fills_the_cache(stand_in, capsys, monkeypatch):
    from selfj_trl.eval_sets.__main__ import main as fetch_main

    assert fetch_main(["mt_bench", "prometheus"]) == 0
    out = capsys.readouterr().out
    assert "mtbench: " in out and "prometheus: " in out
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert len(load_eval_set("mtbench")) == 2
    assert fetch_main(["alpaca_eval"]) == 2  # offline and not fetched yet


def test_a_new_set_declares_its_own_public_files(stand_in):
    from selfj_trl.eval_sets import PointwiseSet, PublicSource, register, unregister
    from selfj_trl.eval_sets.base import load_shared_table

    stand_in.files["me/toy/abc1234/toy.json"] = json.dumps([{"q": "hi?", "a": "hello", "grade": 3}]).encode()

    def build(fetch: sources.Fetcher) -> dict[str, str]:
        rows = json.loads(fetch.github(("me/toy", "abc1234"), "toy.json", "the toy file").read_text())
        return {
            "toy/toy.jsonl": "".join(
                json.dumps({"instruction": r["q"], "response": r["a"], "quality": r["grade"]}) + "\n" for r in rows
            )
        }

    toy = PublicSource("toy", "me/toy@abc1234", build, differs="a toy")
    with pytest.raises(TypeError, match="takes no data_dir"):
        register("toy_broken", public=toy)(lambda seed=0: None)
    try:

        @register("toy", public=toy)
        def load_toy(data_dir=None) -> PointwiseSet:
            from selfj_trl.eval_sets import load_custom_set

            return load_custom_set(load_shared_table(data_dir, "toy/toy.jsonl"), name="toy")

        ds = load_eval_set("toy")
        assert ds.responses == ["hello"] and ds.quality.tolist() == [3.0]
        assert "me/toy@abc1234" in ds.notes[-1] and "differs: a toy" in ds.notes[-1]
    finally:
        unregister("toy")
