//! The on-disk format of a segment.
//!
//! ```text
//! segment  = MAGIC u32le(header_len) header_json frame*
//! frame    = u32le(payload_len) u8(kind) u64le(seq) payload hash[32]
//! hash     = SHA-256(previous hash || kind || seq || payload_len || payload)
//! ```
//!
//! The first frame of a segment chains from the header's `prev_hash` (the
//! last hash of the previous segment; zeros for the first). Kinds: 1 entry
//! (a JSON [`crate::Record`]), 2 checkpoint (a JSON [`Checkpoint`] signed by
//! the writer's certificate key over the chain head it covers).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 8] = b"EXAUDIT1";
pub const HASH_LEN: usize = 32;
pub const FRAME_OVERHEAD: usize = 4 + 1 + 8 + HASH_LEN;
/// The largest payload a frame may carry.
pub const MAX_PAYLOAD: usize = 16 << 20;
pub const KIND_ENTRY: u8 = 1;
pub const KIND_CHECKPOINT: u8 = 2;

pub type Hash = [u8; HASH_LEN];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentHeader {
    pub version: u32,
    /// The writer's identity, e.g. `exchange://tax/node`.
    pub writer: String,
    pub segment: u64,
    pub first_seq: u64,
    /// Hex of the last hash of the previous segment (zeros for the first).
    pub prev_hash: String,
    pub created_ms: i64,
}

impl SegmentHeader {
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("a header serializes");
        let mut out = Vec::with_capacity(12 + json.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out
    }

    /// Parses the header at the start of `bytes`; returns it and its length.
    pub fn decode(bytes: &[u8]) -> Result<(SegmentHeader, usize), String> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err("not an exchange audit segment (bad magic)".into());
        }
        let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        if len > 64 << 10 || bytes.len() < 12 + len {
            return Err("the segment header is truncated or oversized".into());
        }
        let header: SegmentHeader = serde_json::from_slice(&bytes[12..12 + len])
            .map_err(|e| format!("the segment header is malformed: {e}"))?;
        if header.version != 1 {
            return Err(format!("unsupported segment version {}", header.version));
        }
        Ok((header, 12 + len))
    }

    pub fn prev_hash(&self) -> Result<Hash, String> {
        parse_hash(&self.prev_hash)
    }
}

pub fn parse_hash(text: &str) -> Result<Hash, String> {
    let bytes = hex::decode(text).map_err(|_| format!("{text:?} is not a hex hash"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{text:?} is not a 32-byte hash"))
}

/// A signed statement that the chain up to `covers_seq` has head `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub writer: String,
    pub covers_seq: u64,
    pub head: String,
    pub time_ms: i64,
    /// The signer's certificate (base64 DER).
    pub certificate: String,
    /// ECDSA P-256 signature (base64) over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    pub fn message(writer: &str, covers_seq: u64, head: &str, time_ms: i64) -> Vec<u8> {
        format!("exchange-audit-checkpoint/v1\n{writer}\n{covers_seq}\n{head}\n{time_ms}")
            .into_bytes()
    }

    pub fn sign(
        signer: &exchange_pki::MemberSigner,
        writer: &str,
        covers_seq: u64,
        head: &Hash,
        time_ms: i64,
    ) -> Result<Checkpoint, String> {
        let head = hex::encode(head);
        let signature = signer
            .sign(&Checkpoint::message(writer, covers_seq, &head, time_ms))
            .map_err(|e| e.to_string())?;
        Ok(Checkpoint {
            writer: writer.to_string(),
            covers_seq,
            head,
            time_ms,
            certificate: STANDARD.encode(signer.certificate_der()),
            signature: STANDARD.encode(signature),
        })
    }

    pub fn certificate_der(&self) -> Result<Vec<u8>, String> {
        STANDARD
            .decode(&self.certificate)
            .map_err(|_| "the checkpoint's certificate is not base64".to_string())
    }

    /// Checks the signature against the embedded certificate.
    pub fn verify_signature(&self) -> Result<(), String> {
        let cert = self.certificate_der()?;
        let signature = STANDARD
            .decode(&self.signature)
            .map_err(|_| "the checkpoint's signature is not base64".to_string())?;
        let message = Checkpoint::message(&self.writer, self.covers_seq, &self.head, self.time_ms);
        exchange_pki::verify_member_signature(&cert, &message, &signature)
            .map_err(|e| e.to_string())?;
        let identity = exchange_pki::certificate_identity(&cert).map_err(|e| e.to_string())?;
        if identity != self.writer {
            return Err(format!(
                "the checkpoint claims writer {} but is signed by {identity}",
                self.writer
            ));
        }
        Ok(())
    }
}

pub fn frame_hash(prev: &Hash, kind: u8, seq: u64, payload: &[u8]) -> Hash {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev);
    ctx.update(&[kind]);
    ctx.update(&seq.to_le_bytes());
    ctx.update(&(payload.len() as u32).to_le_bytes());
    ctx.update(payload);
    ctx.finish().as_ref().try_into().expect("32 bytes")
}

/// Appends one frame to `out` and returns its hash.
pub fn encode_frame(out: &mut Vec<u8>, prev: &Hash, kind: u8, seq: u64, payload: &[u8]) -> Hash {
    let hash = frame_hash(prev, kind, seq, payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&hash);
    hash
}

/// A frame as read back.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub kind: u8,
    pub seq: u64,
    pub payload: &'a [u8],
    pub hash: &'a [u8],
    /// Offset of the frame in its file.
    pub offset: usize,
    pub len: usize,
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes remain than the frame needs: a write cut short.
    Incomplete,
    /// The length or kind cannot be right.
    Malformed(String),
}

/// Whether a frame that fails its check, ending at `frame_end`, is the
/// last write before a crash into zeros the writer had written ahead: more
/// zeros follow it and nothing else. (A log that was cleanly closed or
/// sealed has no zeros at its end, so there the rule never applies.)
pub fn torn_in_zeroed_space(bytes: &[u8], frame_end: usize) -> bool {
    frame_end < bytes.len() && bytes[frame_end..].iter().all(|b| *b == 0)
}

/// Whether everything from `offset` on is zeros written ahead (and not yet
/// used) by the writer.
pub fn zeroed_space(bytes: &[u8], offset: usize) -> bool {
    offset < bytes.len() && bytes[offset..].iter().all(|b| *b == 0)
}

/// Reads the frame at `offset` of `bytes` (no hash check).
pub fn read_frame(bytes: &[u8], offset: usize) -> Result<Frame<'_>, FrameError> {
    let rest = &bytes[offset..];
    if rest.len() < FRAME_OVERHEAD {
        return Err(FrameError::Incomplete);
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    let kind = rest[4];
    if len > MAX_PAYLOAD {
        return Err(FrameError::Malformed(format!(
            "frame length {len} exceeds the {MAX_PAYLOAD}-byte limit"
        )));
    }
    if kind != KIND_ENTRY && kind != KIND_CHECKPOINT {
        return Err(FrameError::Malformed(format!("unknown frame kind {kind}")));
    }
    if rest.len() < FRAME_OVERHEAD + len {
        return Err(FrameError::Incomplete);
    }
    let seq = u64::from_le_bytes(rest[5..13].try_into().expect("8 bytes"));
    Ok(Frame {
        kind,
        seq,
        payload: &rest[13..13 + len],
        hash: &rest[13 + len..13 + len + HASH_LEN],
        offset,
        len: FRAME_OVERHEAD + len,
    })
}
