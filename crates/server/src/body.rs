//! Reading request bodies within limits: the raw body is capped while it streams in, and a
//! gzip or deflate body is decompressed by streaming with the same cap, so a small
//! compressed body cannot expand into gigabytes (a zip bomb) before it is refused.

use crate::error::ApiError;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::io::Read;

/// How a body is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Deflate,
}

pub fn content_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let text = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match text.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "deflate" => Ok(Encoding::Deflate),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!("Content-Encoding '{other}' is not supported (use gzip, deflate or none)"),
        )),
    }
}

/// Reads the raw body, refusing with 413 once it passes `limit` bytes.
pub async fn read(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared {
        if n > limit as u64 {
            return Err(too_large(n, limit));
        }
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::too_large(
            format!("request body is larger than {limit} bytes"),
        )),
        Err(e) => Err(ApiError::bad_request(
            "invalid_payload",
            format!("the request body could not be read: {e}"),
        )),
    }
}

fn too_large(n: u64, limit: usize) -> ApiError {
    ApiError::too_large(format!(
        "request body is {n} bytes, over the limit of {limit} bytes"
    ))
}

/// The body decompressed as `encoding` says, refused with 413 past `limit` bytes of output.
pub fn decode(raw: Bytes, encoding: Encoding, limit: usize) -> Result<Bytes, ApiError> {
    match encoding {
        Encoding::Identity => {
            if raw.len() > limit {
                return Err(too_large(raw.len() as u64, limit));
            }
            Ok(raw)
        }
        Encoding::Gzip => inflate(flate2::read::MultiGzDecoder::new(&raw[..]), "gzip", limit),
        Encoding::Deflate => {
            // HTTP's "deflate" is zlib-wrapped, but some clients send raw deflate.
            let zlib = inflate(flate2::read::ZlibDecoder::new(&raw[..]), "deflate", limit);
            match zlib {
                Err(e) if e.status == StatusCode::BAD_REQUEST => inflate(
                    flate2::read::DeflateDecoder::new(&raw[..]),
                    "deflate",
                    limit,
                ),
                other => other,
            }
        }
    }
}

fn inflate(reader: impl Read, name: &str, limit: usize) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    let read = reader.take(limit as u64 + 1).read_to_end(&mut out);
    match read {
        Ok(_) if out.len() > limit => Err(ApiError::too_large(format!(
            "the {name} body decompresses to more than {limit} bytes"
        ))),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(ApiError::bad_request(
            "invalid_payload",
            format!("the body is not valid {name} data: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        Bytes::from(enc.finish().unwrap())
    }

    #[test]
    fn decodes_gzip_zlib_and_raw_deflate() {
        let data = b"{\"batch\": []}".repeat(10);
        assert_eq!(
            decode(gzip(&data), Encoding::Gzip, 1000).unwrap(),
            &data[..]
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&data).unwrap();
        let z = Bytes::from(z.finish().unwrap());
        assert_eq!(decode(z, Encoding::Deflate, 1000).unwrap(), &data[..]);
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        d.write_all(&data).unwrap();
        let d = Bytes::from(d.finish().unwrap());
        assert_eq!(decode(d, Encoding::Deflate, 1000).unwrap(), &data[..]);
    }

    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        // 64 MB of zeros compress to about 64 KB.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 200_000);
        let err = decode(bomb, Encoding::Gzip, 4 << 20).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        let err = decode(Bytes::from_static(b"not gzip"), Encoding::Gzip, 100).unwrap_err();
        assert_eq!(err.code, "invalid_payload");
    }
}
