"""A model directory's named errors (issue 24, part of item 8): a malformed safetensors header and a config.json
whose vocab_size disagrees with the weights are one ModelError naming the file, checked before any loader runs."""

from __future__ import annotations

import json
import struct

import pytest

from cpt.core.errors import ModelError
from cpt.model.safetensors_io import check_model_weights, safetensors_header
from cpt.testing import make_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("m") / "model", vocab_size=64, hidden=16, layers=1, heads=2)


def test_vocab_size_disagreeing_with_the_weights_is_named(model):
    check_model_weights(model, 64)
    with pytest.raises(ModelError, match=r"model\.safetensors: model\.embed_tokens\.weight has 64 rows but .*"
                                         r"config\.json says vocab_size 80; the config and the weights disagree"):
        check_model_weights(model, 80)


@pytest.mark.parametrize("damage,message", [
    (lambda b: struct.pack("<Q", 1 << 40) + b[8:], r"header length \d+ bytes does not fit"),
    (lambda b: b[:8] + b"\xff" * 4 + b[12:], r"the header is not JSON"),
    (lambda b: b[:5], r"5 bytes, shorter than the 8-byte header length"),
    (lambda b: (lambda h: struct.pack("<Q", len(h)) + h)(b'[1, 2]'), r"the header is not a JSON object"),
])
def test_malformed_safetensors_headers_are_named(model, tmp_path, damage, message):
    path = tmp_path / "model.safetensors"
    path.write_bytes(damage((model / "model.safetensors").read_bytes()))
    with pytest.raises(ModelError, match=rf"model\.safetensors: not a valid safetensors file: {message}"):
        safetensors_header(path)


def test_offsets_outside_the_data_are_named(model, tmp_path):
    raw = (model / "model.safetensors").read_bytes()
    header, start = safetensors_header(model / "model.safetensors")
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"][1] += 10 ** 6
    head = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + raw[start:])
    with pytest.raises(ModelError, match=rf"tensor '{name}': shape or data_offsets missing or outside"):
        check_model_weights(tmp_path, None)
