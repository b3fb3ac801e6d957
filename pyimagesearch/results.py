"""The wording of an answer: one image's result as a dict, its text lines, a run's summary.

Nothing here loads a model or an image; classify.py turns the probabilities
`inference.Classifier` returns into what a user reads.
"""

import os

import numpy as np

UNKNOWN = "unknown"  # the answer below --min-confidence, or unlike anything the model knows


def top_k_labels(probabilities, class_names, k):
    """The k best (label, probability) pairs of one image, best first."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
    return [(class_names[i], float(probabilities[i])) for i in order]


def true_label_from_name(path, class_names):
    """The class named in the file name (longest match wins), or None."""
    name = os.path.basename(path).lower()
    matches = [c for c in class_names if c.lower() in name]
    return max(matches, key=len) if matches else None


def describe(path, probabilities, class_names, top_k=1, min_confidence=0.0, unknown=None):
    """One image's answer as a JSON-ready dict.

    `label` is the best class, or "unknown" when its probability is below
    `min_confidence` or the model's confidence head found the image unlike
    its training images (`unknown` True; `unknown_reason` says which);
    `labels`/`probabilities` are the top-k, best first;
    `true_label` is the class named in the file name (None if none is), and
    `correct` whether `label` equals it (None when there is no true label).
    """
    best = top_k_labels(probabilities, class_names, max(1, top_k))
    reason = None
    if unknown:
        reason = "unlike the training images"
    elif best[0][1] < min_confidence:
        reason = "below --min-confidence"
    label = UNKNOWN if reason else best[0][0]
    truth = true_label_from_name(path, class_names)
    return {"path": os.fspath(path), "label": label, "probability": round(best[0][1], 6),
            "unknown_reason": reason,
            "labels": [name for name, _ in best],
            "probabilities": [round(p, 6) for _, p in best],
            "true_label": truth, "correct": None if truth is None else label == truth}


def text_lines(result):
    """Human lines for a `describe` result: `charmander: 97.31% (correct)`, then top-k."""
    best, probability = result["labels"][0], result["probability"] * 100
    if result["label"] == UNKNOWN:
        why = "; " + result["unknown_reason"] if result.get("unknown_reason") else ""
        head = f"{UNKNOWN} (best guess {best}: {probability:.2f}%{why})"
    else:
        verdict = {None: "", True: " (correct)", False: " (incorrect)"}[result["correct"]]
        head = f"{best}: {probability:.2f}%{verdict}"
    rest = [f"{rank}. {name}: {p * 100:.2f}%" for rank, (name, p) in
            enumerate(zip(result["labels"][1:], result["probabilities"][1:]), start=2)]
    return [head] + rest


def summary(results, skipped, top_k=1, max_names=5):
    """One line for many images: counts, skipped names, accuracy where file names carry labels."""
    names = [os.path.basename(path) for path in skipped[:max_names]]
    if len(skipped) > max_names:
        names.append(f"and {len(skipped) - max_names} more")
    line = f"[INFO] classified {len(results)} image(s), skipped {len(skipped)}"
    line += f" ({', '.join(names)})" if names else ""
    labelled = [result for result in results if result["true_label"] is not None]
    if labelled:
        right = sum(result["correct"] for result in labelled)
        line += (f"; accuracy {right / len(labelled):.2%} ({right} of {len(labelled)} "
                 f"named after a class)")
        if top_k > 1:
            in_top = sum(result["true_label"] in result["labels"] for result in labelled)
            line += f", top-{top_k} accuracy {in_top / len(labelled):.2%}"
    reasons = {}
    for result in results:
        if result["label"] == UNKNOWN:
            reason = result.get("unknown_reason") or "below --min-confidence"
            reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        line += f"; {sum(reasons.values())} unknown (" + ", ".join(
            f"{count} {reason}" for reason, count in reasons.items()) + ")"
    return line
