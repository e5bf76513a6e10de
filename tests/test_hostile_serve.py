"""Issue 22, item 8: every answer of `seqkit serve` is JSON, for hostile bodies too (NaN,
1e400, surrogates echoed back, negative seeds), and the Host header can be pinned."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("httpx", reason="starlette's TestClient needs httpx: pip install -e '.[test]'")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_export import export_tiny  # noqa: E402  (tests/ is on sys.path)

from seqkit.runtime import load_model  # noqa: E402
from seqkit.serve.app import create_app  # noqa: E402
from seqkit.serve.schemas import ServeLimits  # noqa: E402

LIMITS = ServeLimits(max_batch=4, max_chars=60, max_body_bytes=4096, max_beam_size=6, max_tokens=30)
DOCUMENTED = {200, 400, 404, 405, 413, 415, 422, 503}  # docs/serving.md; 500 would be a bug


@pytest.fixture(scope="module")
def s2s(tmp_path_factory):
    return load_model(export_tiny(tmp_path_factory.mktemp("s2s"), enc="gru", dec="gru")[1], threads=1)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return load_model(export_tiny(tmp_path_factory.mktemp("lm"), task="lm", dec="gru")[1], threads=1)


def post(client: TestClient, path: str, body: str):
    return client.post(path, content=body.encode("utf-8"), headers={"content-type": "application/json"})


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] and len(body["error"]["message"]) < 600
    return body


@pytest.mark.parametrize("model,path,body", [
    *(("s2s", "/v1/translate", body) for body in [
        '{"texts": ["a b"], "length_penalty": NaN}',
        '{"texts": ["a b"], "length_penalty": Infinity}',
        '{"texts": ["a b"], "beam_size": 1e400}',
        '{"texts": ["a b"], "beam_size": -1e400}',
        '{"texts": "\\udcff"}',
        '{"texts": ["a b"], "strategy": "\\ud800\\udfff\\udcff"}',
        '{"texts": [1e400]}',
    ]),
    *(("lm", "/v1/generate", body) for body in [
        '{"prompt": "a", "seed": -1}',
        '{"prompt": "a", "seed": 1e400}',
        '{"prompt": "a", "temperature": NaN}',
        '{"prompt": "a", "temperature": Infinity}',
        '{"prompt": "a", "top_p": NaN}',
        '{"prompt": "a", "top_k": 99999999999999999999999}',
    ]),
])
def test_hostile_bodies_answer_json(request, model, path, body):
    with TestClient(create_app(request.getfixturevalue(model), LIMITS), raise_server_exceptions=False) as client:
        response = post(client, path, body)
        assert_json_error(response, 422)
        json.dumps(response.json(), allow_nan=False)  # the error body is strict JSON itself


def test_allowed_hosts(s2s):
    app = create_app(s2s, LIMITS, allowed_hosts=["localhost", "127.0.0.1"])
    with TestClient(app, base_url="http://evil.example") as client:
        assert assert_json_error(client.get("/healthz"), 400)["error"]["code"] == "bad_host"
    with TestClient(app, base_url="http://localhost:8000") as client:
        assert client.get("/healthz").status_code == 200


def test_an_unexpected_failure_is_still_json(s2s, monkeypatch):
    with TestClient(create_app(s2s, LIMITS), raise_server_exceptions=False) as client:
        monkeypatch.setattr(s2s, "translator", lambda **_: (_ for _ in ()).throw(ZeroDivisionError()))
        body = assert_json_error(post(client, "/v1/translate", '{"texts": ["a b"]}'), 500)
        assert body["error"]["code"] == "internal_error"


# -- fuzz: bodies at the edges of every field -------------------------------------------------------
edge = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=8), st.sampled_from(["greedy", "beam", "sample", "\udcff", "a" * 100]),
                 st.lists(st.text(max_size=6), max_size=6))
TRANSLATE_KEYS = ["texts", "strategy", "beam_size", "n_best", "length_penalty", "temperature", "top_k", "top_p", "seed",
                  "attention", "extra"]
GENERATE_KEYS = ["prompt", "max_tokens", "temperature", "top_k", "top_p", "seed", "extra"]
EXAMPLES = int(os.environ.get("SEQKIT_FUZZ_EXAMPLES", "40"))


def _body(draw_dict) -> str:
    return json.dumps(draw_dict, allow_nan=True)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(TRANSLATE_KEYS), edge, max_size=5), texts=st.lists(st.text(max_size=10), max_size=5))
def test_fuzz_translate(s2s, body, texts):
    body.setdefault("texts", texts)
    with TestClient(create_app(s2s, LIMITS), raise_server_exceptions=False) as client:
        response = post(client, "/v1/translate", _body(body))
    assert response.status_code in DOCUMENTED, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(GENERATE_KEYS), edge, max_size=5))
def test_fuzz_generate(lm, body):
    body.setdefault("prompt", "a")
    with TestClient(create_app(lm, LIMITS), raise_server_exceptions=False) as client:
        response = post(client, "/v1/generate", _body(body))
    assert response.status_code in DOCUMENTED, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_fuzz_raw_bytes(s2s, raw):
    with TestClient(create_app(s2s, LIMITS), raise_server_exceptions=False) as client:
        response = client.post("/v1/translate", content=raw, headers={"content-type": "application/json"})
    assert response.status_code in DOCUMENTED and response.headers["content-type"].startswith("application/json")
