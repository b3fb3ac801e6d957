"""Serve a trained model: a REST API and an upload page for phones and desktops.

    python serve.py --model pokedex.model --labelbin lb.pickle
    python serve.py -m pokedex.model -l lb.pickle --host 0.0.0.0 --token "$(openssl rand -hex 16)"

Then open http://127.0.0.1:8000/ (the page), /docs (the API), or
    curl -F file=@examples/pikachu.png http://127.0.0.1:8000/predict
"""

import ipaddress
import os
import socket
import sys

from pyimagesearch import cli


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
    network.add_argument("--max-upload-mb", type=cli.positive_float, default=8.0,
                         help="larger requests are refused with 413 (default: %(default)s)")
    answer = parser.add_argument_group("answers")
    answer.add_argument("--top-k", type=cli.positive_int, default=3,
                        help="labels in an answer unless the request asks ?top_k= "
                             "(default: %(default)s)")
    answer.add_argument("--min-confidence", type=cli.probability, default=0.0,
                        help="answer 'unknown' below this probability unless the request asks "
                             "?min_confidence= (default: %(default)s, always answer)")
    batching = parser.add_argument_group("batching")
    batching.add_argument("--max-batch", type=cli.positive_int, default=32,
                          help="images in one model call at most; 1 turns batching off "
                               "(default: %(default)s)")
    batching.add_argument("--batch-wait-ms", type=cli.non_negative_float, default=2.0,
                          help="how long a request waits for others to share its model call "
                               "(default: %(default)s)")
    batching.add_argument("--max-queue", type=cli.positive_int, default=256,
                          help="images waiting for the model at most; more get 503 and "
                               "Retry-After (default: %(default)s)")
    return parser.parse_args(argv)


def port_number(text):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= 65535:
        import argparse

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
    for flag, path in (("--model", args.model), ("--labelbin", args.labelbin)):
        if not os.path.isfile(path):
            cli.fail("serve.py", f"{flag}: file not found: {path}")
    from pyimagesearch.server.settings import Settings, token_from_environment

    token = args.token if args.token is not None else token_from_environment()
    if args.token is not None and not args.token.strip():
        cli.fail("serve.py", "--token: must not be empty; leave it out to serve without one")
    problem = port_problem(args.host, args.port)
    if problem:
        cli.fail("serve.py", f"--host/--port: {problem}")
    settings = Settings(model=args.model, labelbin=args.labelbin, token=token,
                        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                        top_k=args.top_k, min_confidence=args.min_confidence,
                        max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
                        max_queue=args.max_queue, backend=args.backend)
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

    uvicorn.run(app, host=args.host, port=args.port, root_path=args.root_path.rstrip("/"),
                log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
