"""What a pokedex server is started with: one small object, its defaults commented once.

serve.py fills it from flags; tests and the load bench build their own. Every number has a
finite range (RANGES): a wait of 1e12 ms or an upload limit of inf is refused, not obeyed.
"""

import dataclasses
import os

from pyimagesearch.cli import available_cpus

TOKEN_VARIABLE = "POKEDEX_TOKEN"  # the access token, when not given as --token
# (lowest, highest) of each number; serve.py's flags say the same ranges.
RANGES = {"max_upload_bytes": (1, 1024**3), "top_k": (1, 1000), "min_confidence": (0, 1),
          "max_batch": (1, 1024), "batch_wait_ms": (0, 1000), "max_queue": (1, 100_000),
          "max_decodes": (1, 1024), "decode_wait_s": (0, 600), "read_timeout_s": (0.1, 3600),
          "upload_timeout_s": (0.1, 3600), "max_connections": (2, 100_000),
          "shutdown_timeout_s": (0, 600)}


@dataclasses.dataclass(frozen=True)
class Settings:
    model: str  # the trained model file (train.py's --model)
    labelbin: str  # its pickled LabelBinarizer (train.py's --labelbin)
    token: str | None = None  # API answers 401 without it; None: no token asked for
    max_upload_bytes: int = 8 * 1024 * 1024  # larger uploads get 413 before being read whole
    top_k: int = 3  # labels in an answer, unless the request says ?top_k=
    min_confidence: float = 0.0  # "unknown" below this, unless ?min_confidence=
    max_batch: int = 32  # images in one model call at most
    batch_wait_ms: float = 2.0  # how long a lone request waits for others to join its batch
    max_queue: int = 256  # images waiting for the model; beyond this, 503 + Retry-After
    backend: str = "auto"  # "auto": the LiteRT copy when it matches; "keras": always Keras
    # Decoding runs before the queue and may take far more memory than the upload: at most
    # this many at once (each bounded by the loader); an upload waiting decode_wait_s gets 503.
    max_decodes: int = dataclasses.field(default_factory=available_cpus)
    decode_wait_s: float = 10.0
    read_timeout_s: float = 15.0  # headers must arrive whole, and the body never pause, within it
    upload_timeout_s: float = 120.0  # the whole body must arrive within it (408 otherwise)
    max_connections: int = 64  # open connections at most (uvicorn answers 503 beyond)
    shutdown_timeout_s: float = 5.0  # SIGTERM: requests in flight get this long, then are cut

    def __post_init__(self):
        for name, (lowest, highest) in RANGES.items():
            value = getattr(self, name)
            if not lowest <= value <= highest:  # also refuses nan
                raise ValueError(f"{name} must be between {lowest} and {highest} (got {value!r})")
        if self.backend not in ("auto", "keras"):
            raise ValueError(f"backend must be 'auto' or 'keras' (got {self.backend!r})")
        if self.token is not None and token_problem(self.token):
            raise ValueError(f"token {token_problem(self.token)}")


def token_problem(token):
    """Why no client could send `token` in 'Authorization: Bearer ...', or None.

    HTTP drops spaces around a header value and the page trims what is typed, so a token
    that starts or ends with a space could never match; headers are not reliably UTF-8
    (browsers refuse anything beyond Latin-1), so the token is printable ASCII.
    """
    if not token.strip():
        return "must not be empty or blank; leave it out to serve without one"
    if token != token.strip():
        return "must not start or end with a space (clients cannot send those)"
    if not all(" " <= char <= "~" for char in token):
        return ("must be printable ASCII (letters, digits, punctuation), as an HTTP header "
                "can carry")
    return None


def token_from_environment():
    """The token in $POKEDEX_TOKEN, or None when it is unset or empty (blank: token_problem)."""
    return os.environ.get(TOKEN_VARIABLE) or None
