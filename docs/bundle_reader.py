#!/usr/bin/env python3
"""A complete `model.edgebert` reader in plain Python (no dependencies), written from
docs/bundle-format.md alone: it checks what the runtime checks and prints the header as JSON.

    python3 docs/bundle_reader.py model.edgebert [--onnx OUT.onnx]

--onnx writes the payload's model bytes (an ONNX protobuf) to a file.
"""
import json
import struct
import sys
import zlib

MAGIC = b"EDGEBERT"
VERSION = 1
PREAMBLE = 24


class Postcard:
    """Decodes the postcard encoding of the header, one field at a time."""

    def __init__(self, data):
        self.data, self.pos = data, 0

    def byte(self):
        if self.pos >= len(self.data):
            raise ValueError("header ends inside a field")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self, max_bytes):
        """Unsigned LEB128: 7 bits per byte, least significant group first, high bit = more."""
        out = 0
        for i in range(max_bytes):
            b = self.byte()
            out |= (b & 0x7F) << (7 * i)
            if b & 0x80 == 0:
                if out >= 1 << (32 if max_bytes == 5 else 64):
                    raise ValueError("varint overflows its type")
                return out
        raise ValueError("varint longer than its type allows")

    def u32(self):
        return self.varint(5)

    def u64(self):  # serde encodes usize as u64
        return self.varint(10)

    def boolean(self):
        b = self.byte()
        if b > 1:
            raise ValueError(f"bool byte {b}")
        return b == 1

    def string(self):
        n = self.u64()
        if self.pos + n > len(self.data):
            raise ValueError("string runs past the header")
        s = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def option(self, read):
        tag = self.byte()
        if tag > 1:
            raise ValueError(f"option tag {tag}")
        return read() if tag == 1 else None

    def seq(self, read):
        return [read() for _ in range(self.u64())]


def decode_header(b):
    p = Postcard(b)
    h = {}
    h["labels"] = p.seq(p.string)
    h["tokenizer"] = {
        "lowercase": p.boolean(),
        "strip_accents": p.option(p.boolean),
        "handle_chinese_chars": p.boolean(),
        "clean_text": p.boolean(),
        "unk_token": p.string(),
        "cls_token": p.string(),
        "sep_token": p.string(),
        "pad_token": p.string(),
        "continuing_subword_prefix": p.string(),
        "max_input_chars_per_word": p.u64(),
    }
    h["vocab"] = p.string()
    h["max_len"] = p.u32()
    h["input_names"] = p.seq(p.string)
    h["output_name"] = p.string()
    h["quantization"] = p.string()
    h["model_format"] = p.string()
    h["metadata"] = dict(p.seq(lambda: (p.string(), p.string())))
    return h


def read_bundle(data):
    if data[:8] != MAGIC:
        raise ValueError(f"not an edgebert bundle: magic {data[:8]!r}")
    if len(data) < PREAMBLE:
        raise ValueError("truncated preamble")
    version, payload_len, crc = struct.unpack_from("<IQI", data, 8)
    if version != VERSION:
        raise ValueError(f"format version {version}, this reader reads {VERSION}")
    payload = data[PREAMBLE:]
    if payload_len != len(payload):
        raise ValueError(f"payload length {payload_len} but {len(payload)} bytes follow the preamble")
    if zlib.crc32(payload) != crc:
        raise ValueError(f"checksum mismatch: stored {crc:#010x}, payload {zlib.crc32(payload):#010x}")
    (header_len,) = struct.unpack_from("<I", payload, 0)
    if 4 + header_len > len(payload):
        raise ValueError("header runs past the payload")
    header = decode_header(payload[4:4 + header_len])
    model = payload[4 + header_len:]
    if not model:
        raise ValueError("model bytes are empty")
    return header, model


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        sys.exit(__doc__)
    data = open(args[0], "rb").read()
    header, model = read_bundle(data)
    vocab = header.pop("vocab")
    header["vocab"] = f"<{vocab.count(chr(10))} tokens>"
    header["model_bytes"] = len(model)
    print(json.dumps(header, indent=2, ensure_ascii=False))
    if "--onnx" in args:
        with open(args[args.index("--onnx") + 1], "wb") as f:
            f.write(model)


if __name__ == "__main__":
    main()
