"""Where an export may be written: never over something that is not an earlier export.

A folder format (Core ML package, SavedModel) is replaced whole, so export.py
replaces a folder only when it can prove the folder is its own earlier export
of that format: the folder carries the marker the exporter writes (format,
run id and the list of everything the export wrote) and holds nothing else.
A file named `saved_model.pb` or `Manifest.json` proves nothing (a user's
folder may hold one beside notes and data). Exports written before the
marker existed are refused too; remove them by hand once.

The marker lives where each format keeps its users' files: a SavedModel's
`assets.extra/` (TF Serving ignores it), and in a Core ML package as an item
registered in its Manifest.json (Data/pokedex/), as the package format asks.

A single file (.onnx, .tflite) is overwritten only when it is a file of that
format (or empty), and never at `<model>.tflite`, train.py's LiteRT copy that
classify.py runs with the model's confidence head (it outputs the features
the head needs, which an export does not).
"""

import json
import os

from pyimagesearch.exporters import SUFFIXES

MARKER_NAME = "pokedex-export.json"
MARKERS = {"saved_model": f"assets.extra/{MARKER_NAME}",  # relative POSIX paths in the folder
           "coreml": f"Data/pokedex/{MARKER_NAME}"}
WRITTEN_BY = "pokedex export.py"
MAX_MARKER_BYTES = 1 << 20


def output_problem(path, format_name):
    """Why `path` cannot take a `format_name` export (one line), or None.

    Cheap (no TensorFlow, no converter): export.py asks before any work.
    """
    from pyimagesearch.cli import unwritable_reason

    suffix = SUFFIXES.get(format_name)
    if suffix and not path.endswith(suffix):
        return f"{path}: a {format_name} export is named *{suffix}, e.g. pokedex{suffix}"
    if format_name == "litert" and os.path.isfile(path[:-len(".tflite")]):
        model = path[:-len(".tflite")]
        return (f"{path} is the name of train.py's LiteRT copy of {model}, which classify.py "
                f"runs with the model's confidence head (it needs the features that copy "
                f"outputs, so `unknown` would stop working); write the export elsewhere, e.g. "
                f"{model}.float32.tflite")
    if format_name in MARKERS:
        if os.path.exists(path):
            if not os.path.isdir(path):
                return f"{path} is a file; a {format_name} export is a folder"
            problem = _not_own_export(path, format_name)
            if problem:
                return f"{path} {problem}, so it is not replaced; choose a new name"
    elif os.path.isdir(path):
        return f"{path} is a folder; a {format_name} export is one file"
    elif os.path.isfile(path) and not _is_format_file(path, format_name):
        return (f"{path} exists and is not a {suffix} file, so it is not overwritten; "
                "choose a new name")
    return unwritable_reason(path)


def folder_contents(folder):
    """Everything under `folder`: sorted relative POSIX paths, folders ending in "/"."""
    found = []
    for root, folders, files in os.walk(folder):  # links are listed, never followed
        relative = os.path.relpath(root, folder)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        found += [prefix + name + "/" for name in folders] + [prefix + name for name in files]
    return sorted(found)


def marker_text(folder, format_name, metadata):
    """The marker for the export just written in `folder` (before the marker is added)."""
    return json.dumps({"written_by": WRITTEN_BY, "format": format_name,
                       "run_id": metadata.get("run_id"), "contents": folder_contents(folder)},
                      indent=2, sort_keys=True)


def _not_own_export(folder, format_name):
    """None for an empty folder or an earlier export of `format_name`; else why it is not one."""
    contents = folder_contents(folder)
    if not contents:
        return None
    marker = _read_marker(os.path.join(folder, *MARKERS[format_name].split("/")))
    if marker is None or marker.get("format") != format_name:
        return (f"is not a {format_name} export written by export.py (it has no "
                f"{MARKERS[format_name]})")
    # The marker and the folders holding it came after the listing it records.
    parts = MARKERS[format_name].split("/")
    allowed = set(marker["contents"]) | {MARKERS[format_name]} | {
        "/".join(parts[:end]) + "/" for end in range(1, len(parts))}
    others = [name for name in contents if name not in allowed]
    if others:
        more = f" and {len(others) - 1} more" if others[1:] else ""
        return f"holds {others[0]!r}{more}, which its {format_name} export did not write"
    return None


def _read_marker(path):
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > MAX_MARKER_BYTES:
            return None
        with open(path, encoding="utf-8") as handle:
            marker = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("written_by") != WRITTEN_BY \
            or not isinstance(marker.get("contents"), list):
        return None
    return marker


def _is_format_file(path, format_name):
    """Whether the file at `path` is empty or (by its first bytes) a `format_name` file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return False  # unwritable_reason or the writer names the problem
    if not head:
        return True
    if format_name == "litert":
        return head[4:8] == b"TFL3"  # the flatbuffer's file identifier
    # ONNX: a ModelProto protobuf, written field by field: ir_version (field 1,
    # varint, tag 0x08), then another ModelProto field's tag.
    if head[0] != 0x08:
        return False
    position = 1
    while position < len(head) and head[position] & 0x80:
        position += 1
    tags = {0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72}  # fields 2-8 and 14
    return position + 1 < len(head) and head[position + 1] in tags
