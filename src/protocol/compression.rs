//! Body compression as kombu registers it (`kombu/compression.py`): the serialized body bytes are
//! compressed and the `compression` header carries the MIME type.

use std::io::{Read, Write};

use super::ProtocolError;

/// A compression scheme kombu offers, named by the MIME type it writes in the `compression` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `application/x-gzip`: despite the name kombu writes a zlib stream (RFC 1950), not gzip framing.
    Zlib,
    /// `application/x-bz2`.
    Bzip2,
    /// `application/x-lzma`: the xz container.
    Lzma,
    /// `application/zstd`.
    Zstd,
    /// `application/x-brotli`.
    Brotli,
}

impl Compression {
    /// Every scheme, for tests and `--help` texts.
    pub const ALL: [Compression; 5] =
        [Compression::Zlib, Compression::Bzip2, Compression::Lzma, Compression::Zstd, Compression::Brotli];

    /// Resolves a Celery setting value (`task_compression = "gzip"`) or a header value (MIME type).
    pub fn from_name(name: &str) -> Result<Self, ProtocolError> {
        Ok(match name {
            "gzip" | "zlib" | "application/x-gzip" => Compression::Zlib,
            "bzip2" | "bzip" | "application/x-bz2" => Compression::Bzip2,
            "lzma" | "xz" | "application/x-lzma" => Compression::Lzma,
            "zstd" | "zstandard" | "application/zstd" => Compression::Zstd,
            "brotli" | "application/x-brotli" => Compression::Brotli,
            other => return Err(ProtocolError::UnknownCompression(other.to_owned())),
        })
    }

    /// The value of the `compression` header.
    pub fn mime(self) -> &'static str {
        match self {
            Compression::Zlib => "application/x-gzip",
            Compression::Bzip2 => "application/x-bz2",
            Compression::Lzma => "application/x-lzma",
            Compression::Zstd => "application/zstd",
            Compression::Brotli => "application/x-brotli",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Compression::Zlib => "zlib",
            Compression::Bzip2 => "bzip2",
            Compression::Lzma => "lzma",
            Compression::Zstd => "zstd",
            Compression::Brotli => "brotli",
        }
    }

    /// Compresses `data` the way kombu does for this scheme.
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let fail = |e: std::io::Error| ProtocolError::Compression {
            method: self.label(),
            op: "compress",
            reason: e.to_string(),
        };
        match self {
            Compression::Zlib => {
                let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(data).map_err(fail)?;
                enc.finish().map_err(fail)
            }
            Compression::Bzip2 => {
                let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
                enc.write_all(data).map_err(fail)?;
                enc.finish().map_err(fail)
            }
            Compression::Lzma => {
                let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
                enc.write_all(data).map_err(fail)?;
                enc.finish().map_err(fail)
            }
            Compression::Zstd => zstd::bulk::compress(data, 3).map_err(fail),
            Compression::Brotli => {
                let mut out = Vec::new();
                {
                    let mut enc = brotli::CompressorWriter::new(&mut out, 4096, 11, 22);
                    enc.write_all(data).map_err(fail)?;
                }
                Ok(out)
            }
        }
    }

    /// Decompresses `data`; corrupt input is an error, never a panic.
    pub fn decompress(self, data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        self.decompress_max(data, usize::MAX)
    }

    /// Decompresses `data` into at most `limit` bytes: a body that inflates past it is an error
    /// as soon as the limit is crossed, so a small bomb never costs more than `limit` of memory.
    pub fn decompress_max(self, data: &[u8], limit: usize) -> Result<Vec<u8>, ProtocolError> {
        let fail = |e: std::io::Error| ProtocolError::Compression {
            method: self.label(),
            op: "decompress",
            reason: e.to_string(),
        };
        let reader: Box<dyn Read + '_> = match self {
            Compression::Zlib => Box::new(flate2::read::ZlibDecoder::new(data)),
            Compression::Bzip2 => Box::new(bzip2::read::BzDecoder::new(data)),
            Compression::Lzma => Box::new(liblzma::read::XzDecoder::new(data)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(data).map_err(fail)?),
            Compression::Brotli => Box::new(brotli::Decompressor::new(data, 4096)),
        };
        let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
        // One byte past the limit tells "exactly at the limit" from "over it".
        let took = reader.take(limit.saturating_add(1) as u64).read_to_end(&mut out).map_err(fail)?;
        if took > limit {
            return Err(ProtocolError::TooLarge { what: "decompressed body", limit });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_round_trips_and_names_itself() {
        let data = br#"[[2, 3], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#;
        for c in Compression::ALL {
            let z = c.compress(data).unwrap();
            assert_eq!(c.decompress(&z).unwrap(), data, "{c:?}");
            assert_eq!(Compression::from_name(c.mime()).unwrap(), c);
        }
    }

    #[test]
    fn gzip_alias_writes_a_zlib_stream_like_kombu() {
        let z = Compression::from_name("gzip").unwrap().compress(b"x").unwrap();
        assert_eq!(&z[..2], &[0x78, 0x9c]);
    }

    #[test]
    fn a_body_inflating_past_the_limit_is_refused_without_inflating_it() {
        let bomb = vec![0u8; 8 * 1024 * 1024];
        for c in Compression::ALL {
            let z = c.compress(&bomb).unwrap();
            assert!(z.len() < 64 * 1024, "{c:?} compresses zeros well");
            let e = c.decompress_max(&z, 1024 * 1024).unwrap_err();
            assert!(matches!(e, ProtocolError::TooLarge { limit: 1_048_576, .. }), "{c:?}: {e}");
            assert_eq!(c.decompress_max(&z, bomb.len()).unwrap().len(), bomb.len(), "{c:?}: at the limit is fine");
        }
    }

    #[test]
    fn corrupt_input_is_an_error() {
        for c in Compression::ALL {
            assert!(c.decompress(b"\x00\x01garbage-not-compressed").is_err(), "{c:?}");
        }
        assert!(matches!(Compression::from_name("snappy"), Err(ProtocolError::UnknownCompression(_))));
    }
}
