"""What a pokedex server is started with: one small object, its defaults commented once.

serve.py fills it from flags; tests and the load bench build their own.
"""

import dataclasses
import os

TOKEN_VARIABLE = "POKEDEX_TOKEN"  # the access token, when not given as --token


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

    def __post_init__(self):
        checks = [("max_upload_bytes", self.max_upload_bytes >= 1, "at least 1"),
                  ("top_k", self.top_k >= 1, "at least 1"),
                  ("min_confidence", 0 <= self.min_confidence <= 1, "between 0 and 1"),
                  ("max_batch", self.max_batch >= 1, "at least 1"),
                  ("batch_wait_ms", self.batch_wait_ms >= 0, "0 or more"),
                  ("max_queue", self.max_queue >= 1, "at least 1"),
                  ("backend", self.backend in ("auto", "keras"), "'auto' or 'keras'")]
        for name, valid, requirement in checks:
            if not valid:
                raise ValueError(f"{name} must be {requirement} (got {getattr(self, name)!r})")
        if self.token == "":
            raise ValueError("token must not be empty; leave it out to ask for none")


def token_from_environment():
    """The token in $POKEDEX_TOKEN, or None when it is unset or empty."""
    return os.environ.get(TOKEN_VARIABLE) or None
