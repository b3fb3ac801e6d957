"""Confidence that means something: temperature scaling and an `unknown` score.

Both work on the network's penultimate features (the input of its last Dense
layer), so one numpy path serves the Keras model, the LiteRT copy and the
server alike: each backend returns features, and `Head.answer` turns them
into calibrated probabilities plus an unknown score. No TensorFlow here.

- Temperature scaling (Guo et al. 2017): one scalar T > 0 fitted on the
  validation split by minimising the negative log-likelihood of
  softmax(logits / T). T > 1 softens an over-confident model; the argmax,
  hence accuracy, never changes.
- Unknown score: the Mahalanobis distance (Lee et al. 2018) of an image's
  distance features (features.py: the last conv feature map, pooled) to the
  nearest class mean of the training images, with one covariance shared by
  all classes and Ledoit-Wolf shrinkage (there may be fewer images than
  feature dimensions). bench/bench_unknown.py compares it with softmax and
  energy scores; it is the one that flags photographs of unrelated things.
  The threshold is the validation images' score at the stated quantile
  (95%: about 5% of known images called unknown).
"""

import io
from dataclasses import dataclass

import numpy as np

MEMBER = "pokedex-confidence.npz"  # inside the .keras zip, beside pokedex.json
FALSE_UNKNOWN_RATE = 0.05  # the share of known images the threshold lets be called unknown
# Below this many validation images a 95% quantile (or a temperature) is a guess:
# the head then keeps T = 1 and never answers unknown (threshold infinite).
MIN_VALIDATION_IMAGES = 20
ECE_BINS = 15


def softmax(logits, temperature=1.0):
    """Row-wise softmax of logits / temperature, computed stably in float64."""
    scaled = np.asarray(logits, dtype=np.float64) / float(temperature)
    scaled -= scaled.max(axis=1, keepdims=True)
    exponentials = np.exp(scaled)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits, labels, temperature):
    scaled = np.asarray(logits, dtype=np.float64) / float(temperature)
    top = scaled.max(axis=1, keepdims=True)
    log_normaliser = top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))
    return float(np.mean(log_normaliser - scaled[np.arange(len(labels)), labels]))


def fit_temperature(logits, labels):
    """The T in [0.05, 20] minimising validation NLL (a bounded 1-D search over log T).

    With no validation mistakes the NLL keeps falling as T -> 0: the fit
    would only sharpen a model that has shown nothing to calibrate against,
    so T stays 1 then.
    """
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    if len(labels) == 0 or np.all(logits.argmax(axis=1) == labels):
        return 1.0
    result = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels,
                                                                   np.exp(log_t)),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                             options={"xatol": 1e-4})
    return float(np.exp(result.x))


def reliability_bins(probabilities, labels, bins=ECE_BINS):
    """Per confidence bin: (low, high, count, mean confidence, accuracy), equal-width bins."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds (edges[i], edges[i+1]]; a confidence of exactly 0 goes to the first.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for i in range(bins):
        members = index == i
        count = int(members.sum())
        rows.append({"low": float(edges[i]), "high": float(edges[i + 1]), "count": count,
                     "confidence": float(confidence[members].mean()) if count else None,
                     "accuracy": float(correct[members].mean()) if count else None})
    return rows


def expected_calibration_error(probabilities, labels, bins=ECE_BINS):
    """ECE: the count-weighted mean |accuracy - confidence| over confidence bins (0 = perfect)."""
    rows = reliability_bins(probabilities, labels, bins)
    total = sum(row["count"] for row in rows)
    if not total:
        return 0.0
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"])
                     for row in rows if row["count"]) / total)


@dataclass
class Mahalanobis:
    """Distance to the nearest class mean under one shared (shrunk) covariance.

    Stored whitened: with the precision P = W W^T, (f - m)^T P (f - m) is
    |W^T f - W^T m|^2, so scoring is one matrix product.
    """

    whitening: np.ndarray  # (D, D): W^T, applied as features @ whitening.T
    means: np.ndarray  # (C, D) whitened class means

    @classmethod
    def fit(cls, features, labels, num_classes):
        from sklearn.covariance import LedoitWolf

        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels)
        means = np.stack([features[labels == c].mean(axis=0) if np.any(labels == c)
                          else features.mean(axis=0) for c in range(num_classes)])
        centred = features - means[labels]
        covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
        # Symmetric inverse square root: eigenvectors are exact for a symmetric matrix.
        values, vectors = np.linalg.eigh(covariance)
        values = np.maximum(values, values.max() * 1e-9)
        whitening = (vectors / np.sqrt(values)) @ vectors.T  # (D, D), symmetric
        return cls(whitening.astype(np.float32), (means @ whitening).astype(np.float32))

    def distance(self, features):
        """(N,) squared Mahalanobis distance to the nearest class mean.

        As |w|^2 - 2 w.m + |m|^2, so memory is (N, C), never (N, C, D): the
        difference of every image with every mean was 256 MiB for 10,000
        images of 50 classes at D = 128 (bench_run_memory).
        """
        whitened = (np.asarray(features, dtype=np.float32) @ self.whitening).astype(np.float64)
        means = self.means.astype(np.float64)  # (C, D)
        squared = ((whitened ** 2).sum(axis=1)[:, None] - 2.0 * whitened @ means.T
                   + (means ** 2).sum(axis=1)[None, :])  # (N, C)
        return np.maximum(squared.min(axis=1), 0.0)


@dataclass
class Head:
    """The last Dense layer plus calibration and the unknown rule, in numpy.

    `answer(penultimate, distance)` -> (calibrated probabilities (N, C),
    unknown score (N,), is_unknown (N,) bool); the two feature kinds are
    features.py's. Built at the end of training; stored in the .keras file
    as MEMBER.
    """

    kernel: np.ndarray  # (D, C) the last Dense layer's weights
    bias: np.ndarray  # (C,)
    temperature: float
    mahalanobis: Mahalanobis
    threshold: float  # unknown when the score is above it
    false_unknown_rate: float = FALSE_UNKNOWN_RATE
    # The validation split as drift.compare_folder's reference: its mean unknown
    # score and the share of it predicted as each class.
    validation: dict = None

    def logits(self, features):
        return np.asarray(features, dtype=np.float64) @ self.kernel + self.bias

    def probabilities(self, features, calibrated=True):
        return softmax(self.logits(features), self.temperature if calibrated else 1.0)

    def answer(self, penultimate, distance):
        score = self.mahalanobis.distance(distance)
        return self.probabilities(penultimate), score, score > self.threshold

    @property
    def answers_unknown(self):
        """False when validation was too small to set a threshold (MIN_VALIDATION_IMAGES)."""
        return bool(np.isfinite(self.threshold))

    @property
    def feature_sizes(self):
        """(D, K): the penultimate and distance feature sizes it expects."""
        return self.kernel.shape[0], self.mahalanobis.whitening.shape[0]

    @classmethod
    def fit(cls, kernel, bias, train, train_labels, val, val_labels,
            false_unknown_rate=FALSE_UNKNOWN_RATE, val_logits=False):
        """`train`, `val`: (penultimate, distance) feature pairs (features.FeatureExtractor).

        Only train's distance features are used. val_logits=True: val[0] holds the
        logits already (N, C) rather than penultimate features (less memory).
        """
        kernel = np.asarray(kernel, dtype=np.float64)
        bias = np.asarray(bias, dtype=np.float64)
        logits = np.asarray(val[0], dtype=np.float64)
        if not val_logits:
            logits = logits @ kernel + bias
        enough = len(val_labels) >= MIN_VALIDATION_IMAGES
        temperature = fit_temperature(logits, val_labels) if enough else 1.0
        mahalanobis = Mahalanobis.fit(train[1], train_labels, kernel.shape[1])
        val_scores = mahalanobis.distance(val[1])
        threshold = unknown_threshold(val_scores, false_unknown_rate) if enough else float("inf")
        mix = np.bincount(logits.argmax(axis=1), minlength=kernel.shape[1]) / max(len(logits), 1)
        validation = {"mean_score": float(val_scores.mean()) if len(val_scores) else 0.0,
                      "prediction_mix": mix.tolist()}
        return cls(kernel, bias, temperature, mahalanobis, threshold, false_unknown_rate,
                   validation)

    def to_bytes(self):
        buffer = io.BytesIO()
        np.savez(buffer, kernel=self.kernel.astype(np.float32), bias=self.bias.astype(np.float32),
                 temperature=self.temperature, whitening=self.mahalanobis.whitening,
                 means=self.mahalanobis.means, threshold=self.threshold,
                 false_unknown_rate=self.false_unknown_rate,
                 val_mean_score=self.validation["mean_score"],
                 val_prediction_mix=np.asarray(self.validation["prediction_mix"]))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data):
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return cls(arrays["kernel"].astype(np.float64), arrays["bias"].astype(np.float64),
                       float(arrays["temperature"]),
                       Mahalanobis(arrays["whitening"], arrays["means"]),
                       float(arrays["threshold"]), float(arrays["false_unknown_rate"]),
                       {"mean_score": float(arrays["val_mean_score"]),
                        "prediction_mix": arrays["val_prediction_mix"].tolist()})

    def summary(self):
        """The JSON-able part for the model's description (the matrices stay in the npz)."""
        return {"temperature": round(self.temperature, 4),
                "unknown_score": "mahalanobis" if self.answers_unknown else None,
                "unknown_threshold": round(self.threshold, 4) if self.answers_unknown else None,
                "false_unknown_rate": self.false_unknown_rate}


def unknown_threshold(validation_scores, false_unknown_rate=FALSE_UNKNOWN_RATE):
    """The score above which an image is unknown: the validation scores' (1 - rate) quantile."""
    scores = np.asarray(validation_scores, dtype=np.float64)
    if not len(scores):
        return float("inf")
    return float(np.quantile(scores, 1.0 - false_unknown_rate, method="higher"))


def embed_head(model_path, head):
    """Add the head to the .keras zip at `model_path` (in place, before its atomic rename)."""
    import zipfile

    with zipfile.ZipFile(model_path, "a") as archive:
        archive.writestr(MEMBER, head.to_bytes())


def read_head(model_path):
    """The Head stored in a .keras file, or None (an older model, HDF5, or a damaged zip)."""
    import zipfile  # here, not at the top: classify.py's fast start imports this module

    try:
        with zipfile.ZipFile(model_path) as archive:
            return Head.from_bytes(archive.read(MEMBER))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None
