"""The HTTP service (seqkit.serve) in process: every route, request limits and bad JSON as 4xx
errors, merged batches and a health check answered while the model is busy, a full queue as
503, the request queue (Batcher) on its own, and the OpenAPI schema.

The model is a tiny randomly initialized export (tests/test_export.py); a wrapper makes its
decoding slow where a test needs the model busy. The browser test is tests/test_serve_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="starlette's TestClient needs httpx: pip install -e '.[test]'")

from fastapi.testclient import TestClient  # noqa: E402
from test_export import SRC_LINES, export_tiny  # noqa: E402  (tests/ is on sys.path)

from seqkit.runtime import RuntimeModel, load_model  # noqa: E402
from seqkit.serve.app import create_app  # noqa: E402
from seqkit.serve.batcher import Batcher, Overloaded  # noqa: E402
from seqkit.serve.schemas import ServeLimits  # noqa: E402

SEARCH = {"max_len_offset": 5, "beam_size": 3, "min_len": 1}
LIMITS = ServeLimits(max_batch=4, max_chars=60, max_body_bytes=2048, max_beam_size=6, max_tokens=50)


@pytest.fixture(scope="module")
def s2s_dir(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("serve-s2s"), enc="gru", dec="gru", attention="luong-general",
                       search=SEARCH)[1]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("serve-lm"), task="lm", dec="gru")[1]


@pytest.fixture(scope="module")
def s2s(s2s_dir) -> RuntimeModel:
    return load_model(s2s_dir, threads=1)


@pytest.fixture
def client(s2s):
    with TestClient(create_app(s2s, LIMITS)) as c:
        yield c


def post_raw(client: TestClient, body: str, content_type: str = "application/json") -> Any:
    return client.post("/v1/translate", content=body.encode("utf-8", "surrogatepass"),
                       headers={"content-type": content_type})


def test_translate_matches_the_runtime(client, s2s):
    lines = SRC_LINES[:3] + [""]
    reply = client.post("/v1/translate", json={"texts": lines, "strategy": "beam", "beam_size": 3, "n_best": 2})
    assert reply.status_code == 200
    got = reply.json()["translations"]
    want = s2s.translator(strategy="beam", beam_size=3, n_best=2).translate(lines)
    assert [t["text"] for t in got] == [r.text for r in want]
    assert [[h["text"] for h in t["n_best"]] for t in got[:3]] == [[c.text for c in r.n_best] for r in want[:3]]
    assert got[0]["score"] == pytest.approx(want[0].score, abs=1e-6)
    assert got[0]["log_prob"] == pytest.approx(want[0].log_prob, abs=1e-6) and got[0]["log_prob"] <= got[0]["score"]
    assert got[3] == {"text": "", "log_prob": 0.0, "score": 0.0, "n_best": [{"text": "", "log_prob": 0.0, "score": 0.0}],
                      "attention": None, "warnings": []}
    assert all(t["attention"] is None for t in got)  # not asked for


def test_translate_samples_with_a_seed_like_the_runtime(client, s2s):
    body = {"texts": SRC_LINES[:2], "strategy": "sample", "temperature": 0.8, "top_k": 5, "seed": 7}
    first, again = (client.post("/v1/translate", json=body) for _ in range(2))
    assert first.status_code == 200 and first.json()["translations"] == again.json()["translations"]
    want = s2s.translator(strategy="sample", temperature=0.8, top_k=5, seed=7).translate(SRC_LINES[:2])
    assert [t["text"] for t in first.json()["translations"]] == [r.text for r in want]


def test_attention_matrix_has_token_labels(client, s2s):
    reply = client.post("/v1/translate", json={"texts": [SRC_LINES[0]], "strategy": "greedy", "attention": True})
    att = reply.json()["translations"][0]["attention"]
    result = s2s.translator(strategy="greedy").translate([SRC_LINES[0]], return_attention=True)[0]
    assert att["src_tokens"] == SRC_LINES[0].split() + ["</s>"]
    assert len(att["tgt_tokens"]) == len(result.tokens) + 1 and att["tgt_tokens"][-1] == "</s>"
    assert len(att["weights"]) == len(att["tgt_tokens"])
    assert all(len(row) == len(att["src_tokens"]) for row in att["weights"])
    assert all(abs(sum(row) - 1) < 1e-3 for row in att["weights"])  # softmax over the source
    assert att["weights"][0][0] == pytest.approx(float(result.attention[0, 0]), abs=1e-4)


@pytest.mark.parametrize("body,status,code", [
    ('{"texts": [', 400, "bad_json"),
    ("", 422, "invalid_request"),  # no body at all
    ('{"texts": ["a b"], }', 400, "bad_json"),
    ('["a b"]', 422, "invalid_request"),
    ('{"texts": "a b"}', 422, "invalid_request"),
    ('{"texts": []}', 422, "invalid_request"),
    ('{"texts": [3]}', 422, "invalid_request"),
    ('{"text": ["a b"]}', 422, "invalid_request"),
    ('{"texts": ["a b"], "beam": 3}', 422, "invalid_request"),
    ('{"texts": ["a b"], "strategy": "nucleus"}', 422, "invalid_request"),
    ('{"texts": ["a b"], "beam_size": 0}', 422, "invalid_request"),
    ('{"texts": ["a b"], "beam_size": 7}', 422, "invalid_request"),
    ('{"texts": ["a b"], "beam_size": 2, "n_best": 3}', 422, "invalid_request"),
    ('{"texts": ["a", "b", "c", "d", "e"]}', 413, "too_many_texts"),
    ('{"texts": ["ok", "' + "x" * 61 + '"]}', 413, "text_too_long"),
    ('{"texts": ["' + "x" * 3000 + '"]}', 413, "body_too_large"),
    ('{"texts": ["\\ud800 lone surrogate"]}', 400, "bad_text"),
])
def test_bad_requests_are_4xx_json_errors(client, body, status, code):
    reply = post_raw(client, body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["code"] == code and error["message"]


def test_limit_errors_name_the_limit(client):
    error = post_raw(client, '{"texts": ["ok", "' + "x" * 61 + '"]}').json()["error"]
    assert error["message"] == "texts[1]: 61 characters, over the limit of 60"
    error = client.post("/v1/translate", json={"texts": ["a"] * 5}).json()["error"]
    assert error["message"] == "5 texts, over the limit of 4"
    error = post_raw(client, '{"texts": [').json()["error"]
    assert error["message"] == "the request body is not valid JSON"
    assert client.post("/v1/translate", json={"texts": ["x" * 60]}).status_code == 200  # the limit itself is allowed


def test_other_client_errors(client):
    assert post_raw(client, '{"texts": ["a"]}', "text/plain").json()["error"]["code"] == "unsupported_media_type"
    assert client.get("/v1/translate").status_code == 405
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.post("/v1/generate", json={"prompt": "a"})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "wrong_model_kind"


def test_health_model_page_and_openapi(client, s2s_dir):
    assert client.get("/healthz").json() == {"status": "ok", "model_kind": "seq2seq", "queued": 0, "in_flight": 0,
                                             "requests_done": 0, "model_calls": 0}
    info = client.get("/v1/model").json()
    assert info["config"] == json.loads((s2s_dir / "config.json").read_text())
    assert info["manifest"]["files"] == json.loads((s2s_dir / "manifest.json").read_text())["files"]
    assert info["limits"]["max_batch"] == 4 and info["config"]["has_attention"] is True
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="source"' in page.text and 'id="attention"' in page.text and "<script src" not in page.text
    schema = client.get("/openapi.json").json()
    assert {"/healthz", "/v1/model", "/v1/translate", "/v1/generate"} <= set(schema["paths"])
    translate = schema["paths"]["/v1/translate"]["post"]
    assert {"200", "400", "413", "422", "503"} <= set(translate["responses"])
    assert "texts" in schema["components"]["schemas"]["TranslateRequest"]["properties"]


def test_generate_with_a_language_model(lm_dir):
    lm = load_model(lm_dir, threads=1)
    with TestClient(create_app(lm, LIMITS)) as c:
        reply = c.post("/v1/generate", json={"prompt": "all:", "max_tokens": 20, "seed": 3, "top_k": 5})
        assert reply.status_code == 200
        body = reply.json()
        assert body["text"] == lm.generate("all:", max_tokens=20, seed=3, top_k=5)
        assert body["text"] == "all:" + body["continuation"]
        assert c.post("/v1/generate", json={"max_tokens": 51}).json()["error"]["message"] == \
            "max_tokens 51 is over the limit of 50"
        assert c.post("/v1/generate", json={"prompt": "x" * 61}).status_code == 413
        assert c.post("/v1/generate", json={"temperature": 0}).status_code == 422
        assert c.post("/v1/translate", json={"texts": ["a"]}).json()["error"]["code"] == "wrong_model_kind"


class SlowModel:
    """The real model whose every decoding call first sleeps ``delay`` s and is recorded."""

    def __init__(self, model: RuntimeModel, delay: float):
        self.model, self.delay, self.calls = model, delay, []
        self.started = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def translator(self, **overrides: Any) -> Any:
        inner, outer = self.model.translator(**overrides), self

        class Slow:
            def translate(self, lines: list[str], return_attention: bool = False) -> list:
                outer.calls.append(list(lines))
                outer.started.set()
                time.sleep(outer.delay)
                return inner.translate(lines, return_attention=return_attention)

        return Slow()


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_health_answers_while_the_model_is_busy_and_requests_merge(s2s):
    slow = SlowModel(s2s, delay=0.8)
    with TestClient(create_app(slow, LIMITS)) as c, ThreadPoolExecutor(9) as pool:
        first = pool.submit(c.post, "/v1/translate", json={"texts": [SRC_LINES[0]], "strategy": "greedy"})
        assert slow.started.wait(10)
        t0 = time.perf_counter()
        health = c.get("/healthz").json()
        assert time.perf_counter() - t0 < 0.4  # not behind the 0.8 s model call
        assert health["in_flight"] == 1
        rest = [pool.submit(c.post, "/v1/translate", json={"texts": [line], "strategy": "greedy"})
                for line in SRC_LINES[1:5]]
        wait_for(lambda: c.get("/healthz").json()["queued"] == 4)
        replies = [f.result(timeout=30) for f in [first, *rest]]
        after = c.get("/healthz").json()
    assert [r.status_code for r in replies] == [200] * 5
    assert (after["requests_done"], after["model_calls"], after["queued"]) == (5, 2, 0)
    want = s2s.translate(SRC_LINES[:5], strategy="greedy")
    assert [r.json()["translations"][0]["text"] for r in replies] == want
    # The four requests queued behind the first were decoded together, within batch_texts.
    assert len(slow.calls) == 2 and slow.calls[0] == [SRC_LINES[0]]
    assert sorted(slow.calls[1]) == sorted(SRC_LINES[1:5])  # in arrival order, which threads do not fix
    assert (health["requests_done"], health["model_calls"]) == (0, 1)


def test_a_full_queue_answers_503(s2s):
    slow = SlowModel(s2s, delay=0.5)
    limits = LIMITS.model_copy(update={"max_queue": 1})
    with TestClient(create_app(slow, limits)) as c, ThreadPoolExecutor(2) as pool:
        busy = pool.submit(c.post, "/v1/translate", json={"texts": ["a"]})
        assert slow.started.wait(10)
        queued = pool.submit(c.post, "/v1/translate", json={"texts": ["b"]})
        wait_for(lambda: c.get("/healthz").json()["queued"] == 1)
        refused = c.post("/v1/translate", json={"texts": ["c"]})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "overloaded"
        assert busy.result(30).status_code == 200 and queued.result(30).status_code == 200


def test_the_service_imports_no_torch(s2s_dir):
    from test_runtime import run_without_training_stack

    result = run_without_training_stack(f"""
        from fastapi.testclient import TestClient
        from seqkit.runtime import load_model
        from seqkit.serve.app import create_app
        with TestClient(create_app(load_model({str(s2s_dir)!r}, threads=1))) as c:
            reply = c.post("/v1/translate", json={{"texts": {SRC_LINES[:2]!r}, "attention": True}})
        print(reply.status_code, len(reply.json()["translations"]))
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "datasets")
                     and sys.modules[m] is not None))
    """)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == ["200 2", "[]"]


# -- the queue on its own --------------------------------------------------------------------------
def test_batcher_merges_equal_keys_only_and_isolates_failures():
    calls: list[list[Any]] = []

    def double(items: list[Any]) -> list[Any]:
        calls.append(list(items))
        time.sleep(0.05)
        if "boom" in items:
            raise ValueError("boom")
        return [2 * x for x in items]

    async def scenario() -> list[Any]:
        batcher = Batcher(max_items=3, max_queue=10)
        batcher.start()
        try:
            jobs = [batcher.submit("k", [1], double)]
            await asyncio.sleep(0.01)  # the first job is running; the rest queue behind it
            jobs += [batcher.submit("k", [2, 3], double), batcher.submit("other", [4], double),
                     batcher.submit("k", [5], double), batcher.submit("k", [6], double),
                     batcher.submit(None, [7], double), batcher.submit(None, [8], double)]
            out = await asyncio.gather(*jobs, return_exceptions=True)
            calls.clear()
            bad = await asyncio.gather(batcher.submit("k", ["boom"], double), batcher.submit("k", ["ok"], double),
                                       return_exceptions=True)
            return [out, bad]
        finally:
            await batcher.stop()

    out, bad = asyncio.run(scenario())
    assert out == [[2], [4, 6], [8], [10], [12], [14], [16]]
    assert isinstance(bad[0], ValueError) and bad[1] == ["okok"]


def test_batcher_groups_and_bounds():
    order: list[list[Any]] = []

    def record(items: list[Any]) -> list[Any]:
        order.append(list(items))
        time.sleep(0.05)
        return items

    async def scenario() -> Exception | None:
        batcher = Batcher(max_items=3, max_queue=4)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit("k", [0], record))
            await asyncio.sleep(0.01)
            queued = [asyncio.ensure_future(batcher.submit(key, [i], record))
                      for i, key in enumerate(["k", "o", "k", "k"], 1)]
            await asyncio.sleep(0)
            try:
                await batcher.submit("k", [9], record)
            except Overloaded as exc:
                refused: Exception | None = exc
            else:
                refused = None
            await asyncio.gather(first, *queued)
            return refused
        finally:
            await batcher.stop()

    refused = asyncio.run(scenario())
    assert isinstance(refused, Overloaded) and "limit 4" in str(refused)
    assert order == [[0], [1, 3, 4], [2]]  # same key merged up to max_items; the other key waits its turn


# -- tools/bench_serve.py still works (a smoke run, no timing asserted) ----------------------------
def load_bench_tool() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / "bench_serve.py"
    spec = importlib.util.spec_from_file_location("bench_serve", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_bench_serve_smoke_run(s2s_dir, tmp_path, capsys):
    bench = load_bench_tool()
    lines = tmp_path / "src.txt"
    lines.write_text("\n".join(SRC_LINES) + "\n", encoding="utf-8")
    out = tmp_path / "bench.json"
    code = bench.main([str(s2s_dir), "--input", str(lines), "--concurrency", "1,4", "--requests", "12",
                       "--duration", "20", "--warmup", "2", "--threads", "1", "--texts", "2", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert [(r["clients"], r["sent"], r["ok"], r["failed"]) for r in report["levels"]] == [(1, 12, 12, 0), (4, 12, 12, 0)]
    assert report["levels"][0]["requests_per_model_call"] == 1.0  # one client: nothing to merge
    assert "| clients | requests | ok | failed | p50 ms |" in capsys.readouterr().out
    for url in ("http://10.1.2.3:8000", "http://example.com", "https://127.0.0.1:8000"):
        with pytest.raises(SystemExit, match="loopback"):
            bench.check_loopback(url)
    assert bench.check_loopback("http://127.0.0.1:8000") == ("127.0.0.1", 8000)
