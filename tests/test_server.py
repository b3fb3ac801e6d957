"""The web service through FastAPI's TestClient, on the tiny colour model (LiteRT copy beside it).

Every refusal is a 4xx with one line of JSON and the server goes on serving;
batching and the queue bound are checked on BatchingPredictor directly.
"""

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import (BLUE, GREEN, RED, REPO_ROOT, build_color_model, make_noise_image,
                      run_main)
from described import describe_as_trained
from fastapi.testclient import TestClient
from PIL import Image
from test_imageio import _png_bomb

from pyimagesearch.server import Settings, create_app
from pyimagesearch.server.batching import BatchingPredictor, QueueFullError

ANSWER_FIELDS = {"path", "label", "probability", "labels", "probabilities", "true_label",
                 "correct", "unknown_reason"}  # classify.py --json's, less its "output"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The colour model as train.py leaves it: description inside, matching .tflite beside."""
    folder = tmp_path_factory.mktemp("served model")
    model_path, labels_path = build_color_model(folder)
    describe_as_trained(model_path, labels_path, tflite=True)
    return str(model_path), str(labels_path)


@pytest.fixture(scope="module")
def client(trained):
    with TestClient(create_app(Settings(*trained))) as client:
        yield client


def png_bytes(color=RED, size=(24, 24), image_format="PNG"):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=image_format)
    return buffer.getvalue()


def assert_refused(response, status, *words):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "\n" not in response.text and "Traceback" not in response.text
    message = response.json()["error"]
    for word in words:
        assert word in message, message
    return message


def test_health_and_info(client):
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/health").json()["backend"] == "litert"  # the fast path was taken
    info = client.get("/info").json()
    assert info["classes"] == ["blue", "green", "red"] and info["image_size"] == 16
    for key in ("architecture", "trained", "test_accuracy", "run_id", "backend"):
        assert key in info


@pytest.mark.parametrize("color, label", [(RED, "red"), (GREEN, "green"), (BLUE, "blue")])
def test_multipart_and_raw_body_give_classify_answers(client, color, label):
    data = png_bytes(color)
    by_form = client.post("/predict", files={"file": (f"{label} photo.png", data, "image/png")})
    by_body = client.post("/predict", content=data, headers={"content-type": "image/png"})
    assert by_form.status_code == by_body.status_code == 200
    assert set(by_form.json()) == ANSWER_FIELDS
    assert by_form.json()["label"] == by_body.json()["label"] == label
    assert by_form.json()["path"] == f"{label} photo.png"  # the upload's name, as a label
    assert by_form.json()["correct"] is True and by_body.json()["true_label"] is None


def test_same_probabilities_as_the_classifier(client, trained, tmp_path):
    from pyimagesearch.inference import Classifier

    path = make_noise_image(tmp_path / "noise.png", size=(40, 30))
    expected = Classifier(*trained).predict([path])[0]
    with open(path, "rb") as handle:
        answer = client.post("/predict?top_k=3", content=handle.read()).json()
    order = np.argsort(-expected, kind="stable")
    assert answer["probabilities"] == pytest.approx(expected[order], abs=1e-6)


def test_top_k_and_min_confidence_query_parameters(client):
    answer = client.post("/predict?top_k=2", content=png_bytes(GREEN)).json()
    assert answer["labels"][0] == "green" and len(answer["labels"]) == 2
    gray = png_bytes((128, 128, 128))  # the three classes tie: 1/3 each
    answer = client.post("/predict?min_confidence=0.9", content=gray).json()
    assert answer["label"] == "unknown" and answer["labels"][0] in ("blue", "green", "red")


def test_file_names_are_labels_never_paths(client):
    answer = client.post("/predict", files={"file": ("../../etc/passwd", png_bytes(), "image/png")})
    assert answer.json()["path"] == "passwd"


def _truncated_png():
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()[:2000]


BAD_UPLOADS = {
    "text": (dict(content=b"hello, not a picture"), 422, ["not an image"]),
    "empty": (dict(content=b""), 400, ["empty"]),
    "truncated": (dict(content=_truncated_png(), headers={"content-type": "image/png"}), 422,
                  ["truncated"]),
    "text content type": (dict(content=b"hi", headers={"content-type": "text/plain"}), 415,
                          ["text/plain"]),
    "form fields, no file": (dict(data={"file": "pikachu"}), 415, ["urlencoded"]),
    "multipart without a file": (dict(files={"note": (None, "hi")}), 400, ["'file'"]),
    "multipart text file": (dict(files={"file": ("a.txt", b"hello", "text/plain")}), 415,
                            ["text/plain"]),
    "multipart not an image": (dict(files={"file": ("a.png", b"hello", "image/png")}), 422,
                               ["a.png: not an image"]),
    "malformed multipart": (dict(content=b"--x\r\nnonsense",
                                 headers={"content-type": "multipart/form-data; boundary=x"}),
                            400, []),
    "top_k zero": (dict(content=png_bytes(), params={"top_k": 0}), 422, ["top_k"]),
    "top_k word": (dict(content=png_bytes(), params={"top_k": "three"}), 422, ["top_k"]),
    "min_confidence above 1": (dict(content=png_bytes(), params={"min_confidence": 2}), 422,
                               ["min_confidence"]),
}


@pytest.mark.parametrize("case", BAD_UPLOADS, ids=list(BAD_UPLOADS))
def test_bad_input_is_a_one_line_4xx_and_the_server_goes_on(client, case):
    request, status, words = BAD_UPLOADS[case]
    assert_refused(client.post("/predict", **request), status, *words)
    assert client.post("/predict", content=png_bytes(BLUE)).json()["label"] == "blue"


def test_decompression_bomb_is_refused(client, tmp_path):
    with open(_png_bomb(tmp_path / "bomb.png", 20000, 20000), "rb") as handle:
        bomb = handle.read()
    assert_refused(client.post("/predict", files={"file": ("bomb.png", bomb, "image/png")}),
                   422, "bomb.png", "too large")


def test_routing_errors_are_json_too(client):
    assert_refused(client.get("/predict"), 405)
    assert_refused(client.get("/no/such/page"), 404)


def test_chunked_upload_over_the_limit_is_413_while_streaming(trained):
    settings = Settings(*trained, max_upload_bytes=10_000)
    sent = []

    def chunks():  # no Content-Length: the server has to count
        for _ in range(100):
            sent.append(1)
            yield b"\0" * 1000

    with TestClient(create_app(settings)) as small:
        assert_refused(small.post("/predict", content=chunks()), 413, "10,000")
        assert small.post("/predict", content=png_bytes(RED)).json()["label"] == "red"


def _asgi_post(app, headers, body_chunks, pause_s=0):
    """POST /predict straight through ASGI; (status, JSON, body chunks the app read).

    The client waits `pause_s` before each chunk."""
    messages = [{"type": "http.request", "body": chunk, "more_body": True}
                for chunk in body_chunks] + [{"type": "http.request", "body": b""}]
    read, sent = [], []

    async def receive():
        await asyncio.sleep(pause_s)
        read.append(1)
        return messages[len(read) - 1]

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/predict", "raw_path": b"/predict",
             "root_path": "", "query_string": b"", "server": ("test", 80),
             "client": ("test", 1), "headers": [(k.encode(), v.encode()) for k, v in headers]}
    asyncio.run(app(scope, receive, send))
    body = b"".join(message.get("body", b"") for message in sent
                    if message["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), len(read)


def test_declared_content_length_over_the_limit_is_413_before_reading(trained):
    app = create_app(Settings(*trained, max_upload_bytes=1000))
    status, answer, chunks_read = _asgi_post(
        app, [("content-length", "50000"), ("content-type", "image/png")], [b"x" * 1000] * 50)
    assert status == 413 and "50,000" in answer["error"]
    assert chunks_read == 0  # refused on the header alone


def test_content_length_that_lies_is_caught_while_streaming(trained):
    app = create_app(Settings(*trained, max_upload_bytes=1000))
    status, answer, chunks_read = _asgi_post(
        app, [("content-length", "10"), ("content-type", "image/png")], [b"x" * 600] * 50)
    assert status == 413 and chunks_read == 2  # stopped at the chunk that crossed the limit


@pytest.mark.parametrize("pause_s, timeouts, words", [
    (0.6, dict(read_timeout_s=0.2), "stalled: no data for 0.2 s"),
    (0.05, dict(upload_timeout_s=0.3), "took longer than 0.3 s"),  # a trickle is cut too
])
def test_an_upload_that_stalls_or_trickles_is_408_and_closed(trained, pause_s, timeouts, words):
    app = create_app(Settings(*trained, **timeouts))
    status, answer, chunks_read = _asgi_post(app, [("content-type", "image/png")],
                                             [b"x" * 100] * 100, pause_s=pause_s)
    assert status == 408 and words in answer["error"] and chunks_read < 20


def _counting_decoder(monkeypatch):
    """load_image, held at a gate, counting the decodes in flight: (gate, counts)."""
    from pyimagesearch.server import app as app_module

    real, lock, gate, counts = app_module.load_image, threading.Lock(), threading.Event(), \
        {"now": 0, "peak": 0}

    def held(source, image_size):
        with lock:
            counts["now"] += 1
            counts["peak"] = max(counts["peak"], counts["now"])
        try:
            gate.wait(10)
            return real(source, image_size)
        finally:
            with lock:
                counts["now"] -= 1

    monkeypatch.setattr(app_module, "load_image", held)
    return gate, counts


def test_decodes_in_flight_are_bounded_and_a_long_wait_is_503(trained, monkeypatch):
    gate, counts = _counting_decoder(monkeypatch)
    settings = Settings(*trained, max_decodes=2, decode_wait_s=1.5)

    def post_all(client, count):
        answers = []
        posts = [threading.Thread(target=lambda: answers.append(
            client.post("/predict", content=png_bytes(BLUE)))) for _ in range(count)]
        for post in posts:
            post.start()
        return posts, answers

    with TestClient(create_app(settings)) as limited:
        posts, answers = post_all(limited, 4)  # two decode, two wait for a slot
        time.sleep(0.5)
        assert counts["now"] == 2
        gate.set()
        for post in posts:
            post.join(20)
        assert [answer.json()["label"] for answer in answers] == ["blue"] * 4
        assert counts["peak"] == 2
        gate.clear()
        posts, answers = post_all(limited, 2)  # both slots held at the gate
        time.sleep(0.3)
        refused = limited.post("/predict", content=png_bytes(BLUE))
        gate.set()
        for post in posts:
            post.join(20)
    assert_refused(refused, 503, "busy", "decoding")
    assert refused.headers["retry-after"] == "1" and counts["peak"] == 2


def test_token(trained):
    with TestClient(create_app(Settings(*trained, token="s3cret"))) as guarded:
        assert_refused(guarded.post("/predict", content=png_bytes()), 401, "token")
        wrong = guarded.post("/predict", content=png_bytes(),
                             headers={"authorization": "Bearer guess"})
        assert_refused(wrong, 401)
        assert wrong.headers["www-authenticate"] == "Bearer"
        assert_refused(guarded.get("/info"), 401)
        assert_refused(guarded.post("/predict?top_k=0", content=b"x"), 401)  # before the query
        right = {"authorization": "Bearer s3cret"}
        assert guarded.post("/predict", content=png_bytes(), headers=right).json()["label"] == "red"
        assert guarded.get("/info", headers=right).json()["token_required"] is True
        assert guarded.get("/health").status_code == 200  # for load balancers, no secrets in it
        assert guarded.get("/").status_code == 200  # the page asks for the token itself


def test_page_and_its_files_are_served_by_the_app(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert 'accept="image/*"' in html and 'capture="environment"' in html
    assert 'name="viewport"' in html
    for asset in ("static/app.css", "static/app.js"):
        response = client.get("/" + asset)
        assert response.status_code == 200 and asset in html
        assert "://" not in response.text  # nothing loaded from elsewhere
    assert "://" not in html.replace("http-equiv", "")


def test_openapi_docs_describe_predict(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/*" in body
    assert client.get("/docs").status_code == 200


# --- batching --------------------------------------------------------------------------------

def _run(coroutine):
    return asyncio.run(coroutine)


def test_requests_that_arrive_together_share_a_model_call():
    calls, threads = [], []

    def predict_batch(images):
        calls.append(len(images))
        threads.append(threading.current_thread().name)
        return images.reshape(len(images), -1)[:, :2].astype(float)

    async def scenario():
        predictor = BatchingPredictor(predict_batch, max_batch=8, wait_s=0.01)
        await predictor.start()
        try:
            images = [np.full((4, 4, 3), i, dtype=np.uint8) for i in range(20)]
            answers = await asyncio.gather(*(predictor.predict(image) for image in images))
        finally:
            await predictor.stop()
        return answers

    answers = _run(scenario())
    assert [row[0] for row in answers] == list(range(20))  # each request gets its own row
    assert sum(calls) == 20 and max(calls) == 8 and len(calls) <= 4
    assert all(name.startswith("pokedex-predict") for name in threads)  # off the event loop


def test_full_queue_raises_and_a_failing_model_reaches_every_waiter():
    gate = threading.Event()

    def slow(images):
        gate.wait(5)
        raise RuntimeError("model broke")

    async def scenario():
        predictor = BatchingPredictor(slow, max_batch=1, wait_s=0, max_queue=2)
        await predictor.start()
        try:
            first = asyncio.ensure_future(predictor.predict(np.zeros((2, 2, 3), np.uint8)))
            await asyncio.sleep(0.05)  # the first is in the model; two more fill the queue
            waiting = [asyncio.ensure_future(predictor.predict(np.zeros((2, 2, 3), np.uint8)))
                       for _ in range(2)]
            await asyncio.sleep(0.01)
            with pytest.raises(QueueFullError):
                await predictor.predict(np.zeros((2, 2, 3), np.uint8))
            gate.set()
            outcomes = await asyncio.gather(first, *waiting, return_exceptions=True)
        finally:
            gate.set()
            await predictor.stop()
        return outcomes

    assert [str(outcome) for outcome in _run(scenario())] == ["model broke"] * 3


def test_full_queue_is_503_with_retry_after(trained):
    from pyimagesearch.inference import Classifier

    real, gate = Classifier(*trained), threading.Event()

    class Slow:  # the real classifier, held at the gate
        def __getattr__(self, name):
            return getattr(real, name)

        def answer_arrays(self, images, batch_size=32):
            gate.wait(10)
            return real.answer_arrays(images, batch_size)

    settings = Settings(*trained, max_batch=1, batch_wait_ms=0, max_queue=1)
    with TestClient(create_app(settings, classifier=Slow())) as busy:
        answers = []
        posts = [threading.Thread(target=lambda: answers.append(
            busy.post("/predict", content=png_bytes(GREEN)))) for _ in range(2)]
        for post in posts:  # one in the model, one queued
            post.start()
            time.sleep(0.3)
        refused = busy.post("/predict", content=png_bytes(GREEN))
        gate.set()
        for post in posts:
            post.join(10)
        assert_refused(refused, 503, "busy")
        assert refused.headers["retry-after"] == "1"
        assert [answer.json()["label"] for answer in answers] == ["green", "green"]


# --- serve.py --------------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--model", "missing.model", "--labelbin", "x"], "--model: file not found"),
    (["--port", "70000"], "port number"),
    (["--max-upload-mb", "0"], "--max-upload-mb"),
    (["--min-confidence", "2"], "--min-confidence"),
    (["--token", " "], "--token"),
])
def test_serve_bad_arguments_are_one_line_exit_2(trained, capsys, args, words):
    base = ["--model", trained[0], "--labelbin", trained[1]]
    code, out, err = run_main("serve", base + args, capsys)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_beyond_loopback_prints_the_address_and_a_warning(trained, capsys, monkeypatch):
    import uvicorn

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.append(options))
    monkeypatch.delenv("POKEDEX_TOKEN", raising=False)
    code, out, err = run_main("serve", ["-m", trained[0], "-l", trained[1], "--host", "0.0.0.0",
                                        "--port", _free_port()], capsys)
    assert code == 0 and started[0]["host"] == "0.0.0.0"
    assert "open http://" in out and "anyone on that network" in err and "--token" in err
    monkeypatch.setenv("POKEDEX_TOKEN", "from-env")
    code, out, err = run_main("serve", ["-m", trained[0], "-l", trained[1], "--host", "0.0.0.0",
                                        "--port", _free_port()], capsys)
    assert "asks for the token" in err


def test_serve_on_loopback_says_where_without_a_warning(trained, capsys, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    code, out, err = run_main("serve", ["-m", trained[0], "-l", trained[1],
                                        "--port", _free_port()], capsys)
    assert code == 0 and "http://127.0.0.1:" in out and "WARNING" not in err


@pytest.mark.parametrize("flags, env_token, words", [
    (["--batch-wait-ms", "1e12"], None, "--batch-wait-ms: must be between 0 and 1000"),
    (["--batch-wait-ms", "inf"], None, "--batch-wait-ms: must be a finite number"),
    (["--max-upload-mb", "inf"], None, "--max-upload-mb: must be a finite number"),
    (["--max-upload-mb", "1e-9"], None, "--max-upload-mb: must be between 0.001 and 1024"),
    (["--max-batch", "10000000000000000000"], None, "--max-batch: must be between 1 and 1024"),
    (["--max-queue", "1e9"], None, "--max-queue: must be a whole number"),
    (["--top-k", "5000"], None, "--top-k: must be between 1 and 1000"),
    (["--read-timeout-s", "nan"], None, "--read-timeout-s: must be a finite number"),
    (["--max-connections", "1"], None, "--max-connections: must be between 2 and 100000"),
    (["--shutdown-timeout-s", "-1"], None, "--shutdown-timeout-s: must be between 0 and 600"),
    ([], "   ", "$POKEDEX_TOKEN: must not be empty or blank"),
    ([], " s3cret", "$POKEDEX_TOKEN: must not start or end with a space"),
    (["--token", "s3cret\t"], None, "--token: must not start or end with a space"),
    (["--token", "pässwort"], None, "--token: must be printable ASCII"),
])
def test_serve_refuses_numbers_out_of_range_and_odd_tokens_up_front(tmp_path, flags, env_token,
                                                                   words):
    """The real serve.py, before it looks at the model (which does not exist here)."""
    env = {key: value for key, value in os.environ.items() if key != "POKEDEX_TOKEN"}
    if env_token is not None:
        env["POKEDEX_TOKEN"] = env_token
    missing = tmp_path / "no such folder"
    result = subprocess.run([sys.executable, "serve.py", "-m", str(missing / "m.model"),
                             "-l", str(missing / "lb.pickle"), *flags], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --- serve.py on loopback: one server for the rest of this file (the last test stops it) -----

READ_TIMEOUT_S, MAX_CONNECTIONS, SHUTDOWN_TIMEOUT_S = 1, 8, 1
UPLOAD_HEAD = b"POST /predict HTTP/1.1\r\nHost: pokedex\r\nContent-Type: image/png\r\n"


@pytest.fixture(scope="module")
def served(trained):
    """(serve.py process, port), with a short read timeout, few connections, a quick SIGTERM."""
    from test_browser import start_server, stop_server

    process, url = start_server(*trained, "--read-timeout-s", str(READ_TIMEOUT_S),
                                "--max-connections", str(MAX_CONNECTIONS),
                                "--shutdown-timeout-s", str(SHUTDOWN_TIMEOUT_S))
    yield process, url
    stop_server(process)


class SlowClient(threading.Thread):
    """A raw connection that sends `head`, then `trickle` one byte each 0.2 s, until the server
    closes it: `.answer` is what the server sent, `.open_s` how long the connection lasted
    (None: still open after `limit_s`, or stopped)."""

    def __init__(self, url, head, trickle=b"", limit_s=15):
        super().__init__(daemon=True)
        self.port = int(url.rstrip("/").rsplit(":", 1)[1])
        self.head, self.trickle, self.limit_s = head, trickle, limit_s
        self.answer, self.open_s, self.stopped = b"", None, threading.Event()

    def run(self):
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(self.head)
            connection.settimeout(0.2)
            while time.monotonic() - start < self.limit_s and not self.stopped.is_set():
                try:
                    received = connection.recv(65536)
                    if not received:
                        break
                    self.answer += received
                except TimeoutError:
                    pass
                except OSError:  # reset
                    break
                try:
                    connection.sendall(self.trickle)
                except OSError:
                    break
            else:
                return
        self.open_s = time.monotonic() - start


def status_of(url, path="health"):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url + path, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


STALLS = {  # what a client sends, then what trickles in byte by byte
    "nothing": (b"", b""),
    "half the headers": (b"POST /predict HTTP/1.1\r\nHost: pokedex\r\n", b""),
    "headers that trickle": (UPLOAD_HEAD + b"X-Slow: ", b"a"),
    "a body shorter than its Content-Length": (
        UPLOAD_HEAD + b"Content-Length: 7000000\r\n\r\n" + b"x" * 1000, b""),
    "a chunked upload that never ends": (
        UPLOAD_HEAD + b"Transfer-Encoding: chunked\r\n\r\n400\r\n" + b"x" * 1024 + b"\r\n", b""),
    "a body sent on after the 413": (UPLOAD_HEAD + b"Content-Length: 900000000\r\n\r\n", b"x"),
}


def test_stalled_and_slow_clients_are_closed_after_the_read_timeout(served):
    clients = {name: SlowClient(served[1], *sent) for name, sent in STALLS.items()}
    for client in clients.values():
        client.start()
    for client in clients.values():
        client.join(20)
    lasted = {name: client.open_s for name, client in clients.items()}
    assert all(seconds is not None and seconds < READ_TIMEOUT_S + 6
               for seconds in lasted.values()), lasted
    for name in ("a body shorter than its Content-Length", "a chunked upload that never ends"):
        assert clients[name].answer.startswith(b"HTTP/1.1 408"), clients[name].answer
        assert b"the upload stalled" in clients[name].answer
    assert clients["a body sent on after the 413"].answer.startswith(b"HTTP/1.1 413")
    assert status_of(served[1]) == 200


def test_connections_beyond_the_cap_get_503_and_serving_goes_on(served):
    holders = [SlowClient(served[1], UPLOAD_HEAD + b"Content-Length: 7000000\r\n\r\n", b"x")
               for _ in range(2 * MAX_CONNECTIONS)]  # uploads that trickle: kept open
    for holder in holders:
        holder.start()
    deadline = time.monotonic() + 10  # until the server has answered those beyond the cap
    while sum(holder.is_alive() for holder in holders) >= MAX_CONNECTIONS and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    held = [holder for holder in holders if holder.is_alive()]
    refused = [holder.answer for holder in holders if not holder.is_alive()]
    for holder in holders:
        holder.stopped.set()
        holder.join(10)
    assert 0 < len(held) < MAX_CONNECTIONS, len(held)  # uvicorn counts the asking one too
    assert all(answer.startswith(b"HTTP/1.1 503") for answer in refused), refused
    deadline = time.monotonic() + 10
    while status_of(served[1]) != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status_of(served[1]) == 200


def test_serve_answers_over_http_from_the_litert_copy_without_tensorflow(served):
    import urllib.request

    process, url = served
    with urllib.request.urlopen(url + "health", timeout=10) as response:
        assert json.load(response)["backend"] == "litert"
    request = urllib.request.Request(url + "predict", data=png_bytes(GREEN),
                                     headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["label"] == "green"
    if sys.platform.startswith("linux"):  # what the process has mapped: no TensorFlow
        with open(f"/proc/{process.pid}/maps") as maps:
            assert "tensorflow" not in maps.read()


def test_sigterm_ends_the_server_while_an_upload_trickles(served):  # keep last: it stops it
    process, url = served
    upload = SlowClient(url, UPLOAD_HEAD + b"Content-Length: 7000000\r\n\r\n", b"x")
    upload.start()
    time.sleep(0.5 + READ_TIMEOUT_S)  # still being read: the trickle beats the read timeout
    assert upload.is_alive() and process.poll() is None
    started = time.monotonic()
    process.terminate()
    try:
        process.wait(20)
    finally:
        upload.stopped.set()
        upload.join(10)
    assert time.monotonic() - started < SHUTDOWN_TIMEOUT_S + 8
