"""Serve a trained model: a REST API and an upload page for phones and desktops.

    python serve.py --model pokedex.model --labelbin lb.pickle
    python serve.py -m pokedex.model -l lb.pickle --host 0.0.0.0 --token "$(openssl rand -hex 16)"

Then open http://127.0.0.1:8000/ (the page), /docs (the API), or
    curl -F file=@examples/pikachu.png http://127.0.0.1:8000/predict
"""

import argparse
import ipaddress
import os
import socket
import sys

from pyimagesearch import cli


def bounded(convert, lowest, highest, example):
    """An argparse type for a number from `lowest` to `highest` (inf and nan are refused)."""
    return cli._number_type(f"{convert.__name__} {lowest}-{highest}", convert,
                            lambda value: lowest <= value <= highest,
                            f"between {lowest:g} and {highest:g}", example)


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        description="Serve a model trained by train.py: POST /predict, GET /info, GET /health "
                    "and an upload page at /.")
    paths = parser.add_argument_group("model")
    paths.add_argument("-m", "--model", required=True, help="trained model file")
    paths.add_argument("-l", "--labelbin", required=True, help="pickled LabelBinarizer")
    paths.add_argument("--backend", choices=("auto", "keras"), default="auto",
                       help="'auto' runs the LiteRT copy (MODEL.tflite) when it belongs to the "
                            "model (fast start, little memory); 'keras' always loads the Keras "
                            "model (default: %(default)s)")
    network = parser.add_argument_group("network")
    network.add_argument("--host", default="127.0.0.1",
                         help="address to listen on; 0.0.0.0 lets phones on your network in "
                              "(use --token then) (default: %(default)s)")
    network.add_argument("--port", type=port_number, default=8000,
                         help="TCP port (default: %(default)s)")
    network.add_argument("--token", default=None,
                         help="access token the API asks for ('Authorization: Bearer TOKEN'); "
                              "also read from $POKEDEX_TOKEN (default: none)")
    network.add_argument("--root-path", default="",
                         help="the path prefix a reverse proxy serves this under, e.g. /pokedex "
                              "(for the /docs page; the upload page works under any prefix) "
                              "(default: none)")
    network.add_argument("--max-upload-mb", type=bounded(float, 0.001, 1024, 8), default=8.0,
                         help="larger requests are refused with 413, 0.001-1024 "
                              "(default: %(default)s)")
    network.add_argument("--read-timeout-s", type=bounded(float, 0.1, 3600, 15), default=15.0,
                         help="a client must send its headers whole within this, and may not "
                              "pause an upload longer (408), 0.1-3600 (default: %(default)s)")
    network.add_argument("--max-connections", type=bounded(int, 2, 100_000, 64), default=64,
                         help="open connections at most; beyond them requests get 503, "
                              "2-100000 (default: %(default)s)")
    network.add_argument("--shutdown-timeout-s", type=bounded(float, 0, 600, 5), default=5.0,
                         help="on Ctrl-C or SIGTERM, requests still in flight get this long, "
                              "0-600 (default: %(default)s)")
    answer = parser.add_argument_group("answers")
    answer.add_argument("--top-k", type=bounded(int, 1, 1000, 3), default=3,
                        help="labels in an answer unless the request asks ?top_k=, 1-1000 "
                             "(default: %(default)s)")
    answer.add_argument("--min-confidence", type=cli.probability, default=0.0,
                        help="answer 'unknown' below this probability unless the request asks "
                             "?min_confidence= (default: %(default)s, always answer)")
    batching = parser.add_argument_group("batching")
    batching.add_argument("--max-batch", type=bounded(int, 1, 1024, 32), default=32,
                          help="images in one model call at most; 1 turns batching off, "
                               "1-1024 (default: %(default)s)")
    batching.add_argument("--batch-wait-ms", type=bounded(float, 0, 1000, 2), default=2.0,
                          help="how long a request waits for others to share its model call, "
                               "0-1000 (default: %(default)s)")
    batching.add_argument("--max-queue", type=bounded(int, 1, 100_000, 256), default=256,
                          help="images waiting for the model at most; more get 503 and "
                               "Retry-After, 1-100000 (default: %(default)s)")
    return parser.parse_args(argv)


def port_number(text):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1-65535, e.g. 8000 (got {text!r})")
    return value


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: assume it may be reachable from elsewhere
        return False


def lan_address():
    """This machine's address on its local network (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
        except OSError:
            return None


def port_problem(host, port):
    """Why (host, port) cannot be listened on, or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as trial:
        trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            trial.bind((host, port))
        except OSError as error:
            return f"cannot listen on {host}:{port}: {error.strerror or error}"
    return None


def main(argv=None):
    args = parse_args(argv)
    from pyimagesearch.server.settings import (TOKEN_VARIABLE, Settings, token_from_environment,
                                               token_problem)

    token = args.token if args.token is not None else token_from_environment()
    if token is not None and token_problem(token):
        source = "--token" if args.token is not None else f"${TOKEN_VARIABLE}"
        cli.fail("serve.py", f"{source}: {token_problem(token)}")
    for flag, path in (("--model", args.model), ("--labelbin", args.labelbin)):
        if not os.path.isfile(path):
            cli.fail("serve.py", f"{flag}: file not found: {path}")
    problem = port_problem(args.host, args.port)
    if problem:
        cli.fail("serve.py", f"--host/--port: {problem}")
    settings = Settings(model=args.model, labelbin=args.labelbin, token=token,
                        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                        top_k=args.top_k, min_confidence=args.min_confidence,
                        max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
                        max_queue=args.max_queue, backend=args.backend,
                        read_timeout_s=args.read_timeout_s,
                        max_connections=args.max_connections,
                        shutdown_timeout_s=args.shutdown_timeout_s)
    from pyimagesearch import persistence
    from pyimagesearch.server import create_app

    try:
        app = create_app(settings)
    except persistence.ArtifactError as error:
        cli.fail("serve.py", str(error))
    classifier = app.state.classifier
    print(f"[INFO] serving {args.model} ({len(classifier.class_names)} classes, "
          f"{classifier.backend})", flush=True)
    if is_loopback(args.host):
        print(f"[INFO] open http://{args.host}:{args.port}/ (only this machine can reach it)",
              flush=True)
    else:
        shown = lan_address() if args.host in ("0.0.0.0", "::") else args.host
        print(f"[INFO] open http://{shown or args.host}:{args.port}/ on a phone or computer "
              "on the same network", flush=True)
        print("[WARNING] anyone on that network can use this server"
              + ("; it asks for the token" if token else
                 "; start it with --token (or $POKEDEX_TOKEN) to keep others out"),
              file=sys.stderr, flush=True)
    import uvicorn

    from pyimagesearch.server.protocol import timed_protocol

    # h11 with header deadlines; uvicorn's own 503 beyond the connection cap; a SIGTERM
    # waits for requests in flight at most shutdown_timeout_s.
    uvicorn.run(app, host=args.host, port=args.port, root_path=args.root_path.rstrip("/"),
                log_level="warning", access_log=False,
                http=timed_protocol(settings.read_timeout_s),
                limit_concurrency=settings.max_connections,
                timeout_graceful_shutdown=settings.shutdown_timeout_s)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
