"""Do a tokenizer, a model and a dataset belong together? One identity of a tokenizer, one clear error if not.

The identity of a tokenizer directory (`tokenizer_identity`) is its vocabulary -- the piece of every id, read
from tokenizer.json (any tokenizers model: BPE, Unigram, WordPiece; plus added tokens) or, without one, from the
SentencePiece tokenizer.model -- hashed, with its size, plus the sha256 of each of those files that exists.
Token ids mean the same thing exactly when the vocabularies are equal, so that is what is compared; the file
hashes say which files were identical. A dataset's manifest records the identity of the tokenizer it was
tokenized with; `cpt train` compares it with the tokenizer files shipped in the model directory
(`check_dataset_model`), so a dataset tokenized with another vocabulary stops the run before any step.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping

from cpt.core.errors import DatasetError, TokenizerError

IDENTITY_FILES = ("tokenizer.json", "tokenizer.model")
UNPADDED_KEY = "cpt_tokenizer_vocab_size"  # config.json key of models whose rows were padded (cpt.model)


def has_tokenizer(directory: str | os.PathLike) -> bool:
    d = Path(directory)
    return any((d / name).is_file() for name in IDENTITY_FILES)


def require_tokenizer(directory: str | os.PathLike, what: str = "tokenizer directory") -> Path:
    """The directory, or one TokenizerError saying which files a tokenizer directory needs."""
    d = Path(directory)
    if not d.is_dir():
        raise TokenizerError(f"{d}: no such {what}")
    if not has_tokenizer(d):
        present = sorted(p.name for p in d.iterdir())[:10]
        raise TokenizerError(
            f"{d}: not a {what}: it has neither tokenizer.json nor tokenizer.model "
            f"({'empty' if not present else 'it holds ' + ', '.join(present)}); point at a Hugging Face tokenizer "
            f"directory such as results/<experiment>/tokenizer/base or .../extended")
    return d


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _pieces_from_json(path: Path) -> dict[int, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        model = data.get("model") or {}
        vocab = model.get("vocab")
        pieces: dict[int, str] = {}
        if isinstance(vocab, dict):  # BPE, WordPiece, WordLevel: piece -> id
            pieces = {int(i): str(p) for p, i in vocab.items()}
        elif isinstance(vocab, list):  # Unigram: [[piece, score], ...]
            pieces = {i: str(entry[0]) for i, entry in enumerate(vocab)}
        for tok in data.get("added_tokens") or []:
            pieces[int(tok["id"])] = str(tok["content"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise TokenizerError(f"{path}: cannot read the vocabulary ({type(exc).__name__}: {exc})") from None
    if not pieces:
        raise TokenizerError(f"{path}: holds no vocabulary (model.vocab is empty)")
    return pieces


def _pieces_from_sentencepiece(directory: Path) -> dict[int, str]:
    from sentencepiece import sentencepiece_model_pb2 as pb

    path = directory / "tokenizer.model"
    proto = pb.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise TokenizerError(f"{path}: not a SentencePiece model ({exc})") from None
    pieces = {i: p.piece for i, p in enumerate(proto.pieces)}
    added = directory / "added_tokens.json"
    if added.is_file():
        for content, i in json.loads(added.read_text(encoding="utf-8")).items():
            pieces[int(i)] = content
    cfg = directory / "tokenizer_config.json"
    if cfg.is_file():
        decoder = json.loads(cfg.read_text(encoding="utf-8")).get("added_tokens_decoder") or {}
        for i, tok in decoder.items():
            pieces[int(i)] = tok.get("content", "") if isinstance(tok, dict) else str(tok)
    return pieces


def tokenizer_identity(directory: str | os.PathLike) -> dict:
    """{"vocab_size", "vocab_sha256", "source", "files": {name: sha256}} of a tokenizer (or model) directory."""
    d = require_tokenizer(directory)
    if (d / "tokenizer.json").is_file():
        pieces, source = _pieces_from_json(d / "tokenizer.json"), "tokenizer.json"
    else:
        pieces, source = _pieces_from_sentencepiece(d), "tokenizer.model"
    size = max(pieces) + 1
    ordered = [pieces.get(i) for i in range(size)]
    digest = hashlib.sha256(json.dumps(ordered, ensure_ascii=False).encode("utf-8")).hexdigest()
    return {"vocab_size": size, "vocab_sha256": digest, "source": source,
            "files": {name: _sha256(d / name) for name in IDENTITY_FILES if (d / name).is_file()}}


def model_vocab_size(model_dir: str | os.PathLike) -> tuple[int | None, int | None]:
    """(rows of the embedding, unpadded tokenizer size recorded at padding or None) from config.json."""
    path = Path(model_dir) / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    return cfg.get("vocab_size"), cfg.get(UNPADDED_KEY)


def check_dataset_model(dataset_dir: str | os.PathLike, manifest: Mapping, model_dir: str | os.PathLike) -> str:
    """Raise DatasetError unless the dataset was tokenized with the model's tokenizer; returns what was checked.

    Compared: the manifest's `tokenizer_identity` with the tokenizer files of the model directory (vocabulary
    digest and size); the tokenizer size with the model's embedding rows. Datasets without a recorded identity
    (prepared elsewhere) and models without tokenizer files are checked on sizes only."""
    dataset_dir, model_dir = Path(dataset_dir), Path(model_dir)
    manifest_path = dataset_dir / "manifest.json"
    recorded = manifest.get("tokenizer_identity") if isinstance(manifest, Mapping) else None
    rows, unpadded = model_vocab_size(model_dir)
    what = []
    if recorded and has_tokenizer(model_dir):
        mine = tokenizer_identity(model_dir)
        if recorded.get("vocab_sha256") != mine["vocab_sha256"]:
            where = manifest.get("tokenizer") or "its tokenizer"
            raise DatasetError(
                f"{manifest_path}: the dataset was tokenized with {where} ({recorded.get('vocab_size'):,} ids, "
                f"vocabulary sha256 {str(recorded.get('vocab_sha256'))[:12]}), but the model {model_dir} has "
                f"another tokenizer ({mine['vocab_size']:,} ids, sha256 {mine['vocab_sha256'][:12]}). Train on a "
                f"dataset prepared with the model's tokenizer (or the model built for that tokenizer): the token "
                f"ids would mean other pieces")
        what.append(f"tokenizer vocabulary {mine['vocab_size']:,} ids = the dataset's")
    size = (recorded or {}).get("vocab_size")
    limit = unpadded or rows
    if size and limit and size > limit:
        raise DatasetError(f"{manifest_path}: the dataset's tokenizer has {size:,} ids but the model {model_dir} "
                           f"only {limit:,} embedding rows; it was tokenized for another model")
    if size and unpadded and size != unpadded:
        raise DatasetError(f"{manifest_path}: the dataset's tokenizer has {size:,} ids, the model {model_dir} was "
                           f"built for {unpadded:,} ({UNPADDED_KEY} in config.json); they are not a pair")
    top = manifest.get("max_token_id") if isinstance(manifest, Mapping) else None
    if top is not None and limit and int(top) >= limit:
        raise DatasetError(f"{dataset_dir}: token id {top:,} in the data, but the model {model_dir} has {limit:,} "
                           f"embedding rows; the data was tokenized for another model")
    if not recorded:
        what.append("no tokenizer identity in the manifest: token ids are checked against the vocabulary")
    return "; ".join(what)
