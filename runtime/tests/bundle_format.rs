//! The bundle format: round trip, atomic writes, and a clear error (never a panic) for every
//! truncation, every single-bit flip, a wrong magic, a newer version and invalid headers.
mod common;

use edgebert_runtime::bundle::{
    Bundle, BundleHeader, BundleWriter, FORMAT_VERSION, MAGIC, PREAMBLE_LEN,
};
use edgebert_runtime::tokenizer::{Tokenizer, TokenizerConfig};
use edgebert_runtime::Error;

fn tokenizer() -> Tokenizer {
    let vocab = std::fs::read_to_string(common::tiny_bert().join("vocab.txt")).expect("vocab.txt");
    Tokenizer::new(&vocab, TokenizerConfig::default()).expect("fixture vocab loads")
}

fn small_bundle() -> Bundle {
    BundleWriter::new(
        &tokenizer(),
        vec!["neg".into(), "neu".into(), "pos".into()],
        b"\x08\x07fake onnx bytes".to_vec(),
    )
    .max_len(64)
    .metadata("test", "bundle_format")
    .build()
    .expect("valid bundle")
}

#[test]
fn round_trip_preserves_header_and_model() {
    let b = small_bundle();
    let bytes = b.to_bytes().expect("encode");
    assert_eq!(&bytes[..8], MAGIC);
    let back = Bundle::from_bytes(&bytes).expect("decode");
    assert_eq!(back, b);
    assert_eq!(back.header.max_len, 64);
    assert_eq!(back.header.quantization, "none");
    assert_eq!(
        back.header.metadata.get("test").map(String::as_str),
        Some("bundle_format")
    );
    assert!(back.header.metadata.contains_key("producer"));
    // The vocab survives: the tokenizer rebuilt from the bundle encodes identically.
    let tok = back.tokenizer().expect("tokenizer from bundle");
    assert_eq!(tok.vocab_size(), tokenizer().vocab_size());
    assert_eq!(tok.vocab_txt(), tokenizer().vocab_txt());
}

#[test]
fn write_to_is_atomic_and_overwrites() {
    let dir = common::scratch("bundle-write");
    let path = dir.join("model.edgebert");
    std::fs::write(&path, b"old contents").expect("seed file");
    let b = small_bundle();
    b.write_to(&path).expect("write");
    assert_eq!(Bundle::read(&path).expect("read back"), b);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n != "model.edgebert")
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
    // Writing into a missing directory is an error naming the path, and leaves nothing.
    let err = b
        .write_to(dir.join("missing").join("m.edgebert"))
        .expect_err("missing dir");
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("m.edgebert"), "{err}");
}

#[test]
fn writer_write_to_returns_bundle() {
    let dir = common::scratch("writer");
    let path = dir.join("x.edgebert");
    let b = BundleWriter::new(&tokenizer(), vec!["a".into(), "b".into()], vec![1, 2, 3])
        .quantization("int8")
        .output_name("scores")
        .input_names(vec!["input_ids".into()])
        .write_to(&path)
        .expect("write");
    let back = Bundle::read(&path).expect("read");
    assert_eq!(back, b);
    assert_eq!(back.header.quantization, "int8");
    assert_eq!(back.header.output_name, "scores");
    assert_eq!(back.header.input_names, vec!["input_ids".to_string()]);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = small_bundle().to_bytes().expect("encode");
    for len in 0..bytes.len() {
        let err = Bundle::from_bytes(&bytes[..len]).expect_err("truncated bundle must not load");
        assert!(
            matches!(err, Error::BundleTruncated { .. } | Error::BadMagic { .. }),
            "len {len}: unexpected {err:?}"
        );
        if len >= PREAMBLE_LEN {
            assert!(err.to_string().contains("truncated"), "len {len}: {err}");
        }
    }
}

#[test]
fn trailing_garbage_is_an_error() {
    let mut bytes = small_bundle().to_bytes().expect("encode");
    bytes.extend_from_slice(b"junk");
    let err = Bundle::from_bytes(&bytes).expect_err("extra bytes");
    assert!(
        matches!(
            err,
            Error::LengthMismatch {
                declared: _,
                available: _
            }
        ),
        "{err:?}"
    );
}

#[test]
fn from_vec_reads_what_from_bytes_reads_and_rejects_the_same() {
    let bytes = small_bundle().to_bytes().expect("encode");
    assert_eq!(
        Bundle::from_vec(bytes.clone()).expect("decode"),
        Bundle::from_bytes(&bytes).expect("decode")
    );
    for len in [0, 7, 23, bytes.len() - 1] {
        let err = Bundle::from_vec(bytes[..len].to_vec()).expect_err("truncated");
        let reference = Bundle::from_bytes(&bytes[..len]).expect_err("truncated");
        assert_eq!(err.to_string(), reference.to_string());
    }
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(
        Bundle::from_vec(flipped),
        Err(Error::ChecksumMismatch { .. })
    ));
}

#[test]
fn every_single_bit_flip_is_detected() {
    let bytes = small_bundle().to_bytes().expect("encode");
    let mut flipped = bytes.clone();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            flipped[i] ^= 1 << bit;
            let r = Bundle::from_bytes(&flipped);
            flipped[i] ^= 1 << bit;
            let err = r.expect_err("a flipped bit must not load");
            let ok = match i {
                0..=7 => matches!(err, Error::BadMagic { .. }),
                8..=11 => matches!(err, Error::UnsupportedVersion { .. }),
                12..=19 => matches!(
                    err,
                    Error::BundleTruncated { .. } | Error::LengthMismatch { .. }
                ),
                _ => matches!(err, Error::ChecksumMismatch { .. }),
            };
            assert!(ok, "byte {i} bit {bit}: unexpected {err:?}");
        }
    }
}

#[test]
fn wrong_magic_names_what_was_found() {
    let mut bytes = small_bundle().to_bytes().expect("encode");
    bytes[..8].copy_from_slice(b"PK\x03\x04zip!");
    let err = Bundle::from_bytes(&bytes).expect_err("bad magic");
    assert!(matches!(err, Error::BadMagic { .. }));
    assert!(err.to_string().contains("PK"), "{err}");
}

#[test]
fn newer_version_asks_for_an_upgrade() {
    let mut bytes = small_bundle().to_bytes().expect("encode");
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = Bundle::from_bytes(&bytes).expect_err("future version");
    match &err {
        Error::UnsupportedVersion { found, supported } => {
            assert_eq!(*found, FORMAT_VERSION + 1);
            assert_eq!(*supported, FORMAT_VERSION);
        }
        e => panic!("unexpected {e:?}"),
    }
    assert!(err.to_string().contains("upgrade"), "{err}");
}

/// Re-encodes a bundle whose header was tampered with after validation, with a correct checksum,
/// to check that the reader validates the header itself.
fn encode_unchecked(header: &BundleHeader, model: &[u8]) -> Vec<u8> {
    let h = postcard::to_allocvec(header).expect("postcard");
    let mut payload = (h.len() as u32).to_le_bytes().to_vec();
    payload.extend_from_slice(&h);
    payload.extend_from_slice(model);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

#[test]
fn invalid_headers_name_the_field() {
    let b = small_bundle();
    // Sanity: the unchecked encoder matches the real one.
    assert_eq!(
        encode_unchecked(&b.header, &b.model),
        b.to_bytes().expect("encode")
    );
    type Tamper = Box<dyn Fn(&mut BundleHeader)>;
    let cases: Vec<(&str, Tamper)> = vec![
        ("labels", Box::new(|h| h.labels.clear())),
        ("labels", Box::new(|h| h.labels[1].clear())),
        ("max_len", Box::new(|h| h.max_len = 1)),
        ("max_len", Box::new(|h| h.max_len = 100_000)),
        ("vocab", Box::new(|h| h.vocab.clear())),
        (
            "input_names",
            Box::new(|h| h.input_names = vec!["x".into()]),
        ),
        ("output_name", Box::new(|h| h.output_name.clear())),
        ("quantization", Box::new(|h| h.quantization = "int4".into())),
        (
            "model_format",
            Box::new(|h| h.model_format = "tflite".into()),
        ),
    ];
    for (field, tamper) in cases {
        let mut h = b.header.clone();
        tamper(&mut h);
        let err = Bundle::from_bytes(&encode_unchecked(&h, &b.model)).expect_err(field);
        assert!(matches!(err, Error::BadHeader(_)), "{field}: {err:?}");
        assert!(err.to_string().contains(field), "{field}: {err}");
        // The writer refuses the same header.
        assert!(
            Bundle::new(h, b.model.clone()).is_err(),
            "{field}: writer accepted it"
        );
    }
    // Empty model bytes.
    let err = Bundle::from_bytes(&encode_unchecked(&b.header, &[])).expect_err("empty model");
    assert!(err.to_string().contains("model"), "{err}");
}

#[test]
fn header_garbage_with_valid_checksum_is_an_error() {
    let b = small_bundle();
    let good = b.to_bytes().expect("encode");
    // Replace the header bytes with noise, fix the checksum: postcard must fail cleanly.
    let mut bytes = good.clone();
    let header_len = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes")) as usize;
    for (i, x) in bytes[28..28 + header_len].iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(151).wrapping_add(7) | 0x80;
    }
    let crc = crc32fast::hash(&bytes[PREAMBLE_LEN..]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    let err = Bundle::from_bytes(&bytes).expect_err("garbage header");
    assert!(matches!(err, Error::BadHeader(_)), "{err:?}");
    // A header length pointing past the payload.
    let mut bytes = good;
    bytes[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32fast::hash(&bytes[PREAMBLE_LEN..]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    let err = Bundle::from_bytes(&bytes).expect_err("header length too big");
    assert!(
        matches!(err, Error::BundleTruncated { what: "header", .. }),
        "{err:?}"
    );
}

#[test]
fn checksum_matches_preamble() {
    let b = small_bundle();
    let bytes = b.to_bytes().expect("encode");
    let stored = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    assert_eq!(b.checksum().expect("checksum"), stored);
    assert_eq!(stored, crc32fast::hash(&bytes[PREAMBLE_LEN..]));
}
