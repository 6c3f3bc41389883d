//! Frames on a QUIC stream: a 4-byte big-endian length, a 2-byte protocol version,
//! then a bincode-2 body. Frames over [`MAX_FRAME`] are refused before they are read;
//! bytes that do not decode are an error, never a panic. The decoder itself is
//! limited too: a length *inside* a small frame (a string claiming 2^62 bytes) is
//! refused by bincode's limit before anything is allocated.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Version of the messages in `proto`; a peer speaking another is refused.
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest frame either side accepts (version + body).
pub const MAX_FRAME: usize = 1 << 20;
/// How long a peer may take to deliver one whole frame once a stream is open.
pub const FRAME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a frame could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("peer speaks protocol version {0}, this side speaks {PROTOCOL_VERSION}")]
    Version(u16),
    #[error("frame does not decode: {0}")]
    Decode(String),
    #[error("frame does not encode: {0}")]
    Encode(String),
    #[error("stream closed before a whole frame arrived")]
    Truncated,
    #[error("stream: {0}")]
    Stream(String),
    #[error("no whole frame within {FRAME_TIMEOUT:?}")]
    Timeout,
}

/// bincode's standard encoding, refusing any claimed length past [`MAX_FRAME`] bytes.
fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME>,
> {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

/// The frame for `body`, length prefix included.
pub fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; 6];
    out[4..6].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    bincode::serde::encode_into_std_write(body, &mut out, config()).map_err(|e| WireError::Encode(e.to_string()))?;
    let len = out.len() - 4;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decodes a frame's version and body (the bytes after the length prefix).
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, WireError> {
    let (version, body) = frame.split_first_chunk::<2>().ok_or(WireError::Truncated)?;
    let version = u16::from_be_bytes(*version);
    if version != PROTOCOL_VERSION {
        return Err(WireError::Version(version));
    }
    let (value, used) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| WireError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(WireError::Decode(format!("{} trailing bytes", body.len() - used)));
    }
    Ok(value)
}

/// Writes one frame.
pub async fn write<T: Serialize>(send: &mut quinn::SendStream, body: &T) -> Result<(), WireError> {
    let frame = encode(body)?;
    send.write_all(&frame).await.map_err(|e| WireError::Stream(e.to_string()))
}

/// Reads one frame, refusing it before reading the body if it is too large, and
/// giving up when the peer does not deliver it within [`FRAME_TIMEOUT`].
pub async fn read<T: DeserializeOwned>(recv: &mut quinn::RecvStream) -> Result<T, WireError> {
    tokio::time::timeout(FRAME_TIMEOUT, read_unbounded(recv)).await.map_err(|_| WireError::Timeout)?
}

async fn read_unbounded<T: DeserializeOwned>(recv: &mut quinn::RecvStream) -> Result<T, WireError> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.map_err(read_error)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    let mut frame = vec![0u8; len];
    recv.read_exact(&mut frame).await.map_err(read_error)?;
    decode(&frame)
}

fn read_error(e: quinn::ReadExactError) -> WireError {
    match e {
        quinn::ReadExactError::FinishedEarly(_) => WireError::Truncated,
        quinn::ReadExactError::ReadError(e) => WireError::Stream(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Request;

    #[test]
    fn frames_round_trip_and_bad_bytes_are_errors() {
        let frame = encode(&Request::Ping { sent_ns: 7 }).unwrap();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        assert!(matches!(decode::<Request>(&frame[4..]), Ok(Request::Ping { sent_ns: 7 })));

        let mut other_version = frame[4..].to_vec();
        other_version[..2].copy_from_slice(&9u16.to_be_bytes());
        assert!(matches!(decode::<Request>(&other_version), Err(WireError::Version(9))));
        assert!(matches!(decode::<Request>(&[0]), Err(WireError::Truncated)));
        let mut trailing = frame[4..].to_vec();
        trailing.push(0);
        assert!(matches!(decode::<Request>(&trailing), Err(WireError::Decode(_))));
        // Every truncation and a spray of garbage: errors, never panics.
        for cut in 0..frame.len() - 4 {
            let _ = decode::<Request>(&frame[4..4 + cut]);
        }
        let mut garbage = vec![0u8, 1];
        garbage.extend((0..512u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        assert!(decode::<Request>(&garbage).is_err());
    }

    #[test]
    fn a_length_inside_a_small_frame_is_refused_before_allocation() {
        // A Join whose token claims 2^62 bytes: the frame from the security report.
        let frame = [0u8, 1, 0, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0x40];
        assert!(matches!(decode::<Request>(&frame), Err(WireError::Decode(_))));
    }

    #[test]
    fn oversized_frames_are_refused() {
        let big = Request::RenewCert { public_key: vec![0; MAX_FRAME] };
        assert!(matches!(encode(&big), Err(WireError::TooLarge(_))));
    }
}
