use crate::{QinsError, Result};

pub const MAGIC: [u8; 8] = *b"QINSARC\x1a";
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 32;

/// The fixed 32-byte header: magic, version, flags, manifest length and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub flags: u32,
    pub manifest_len: u64,
    pub manifest_crc32: u32,
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.manifest_len.to_le_bytes());
        b[24..28].copy_from_slice(&self.manifest_crc32.to_le_bytes());
        b
    }

    /// Parses and checks magic, version and the manifest bound.
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < HEADER_LEN {
            return Err(QinsError::Truncated {
                what: "header".into(),
                need: HEADER_LEN as u64,
                have: b.len() as u64,
            });
        }
        if b[0..8] != MAGIC {
            return Err(QinsError::BadMagic);
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(QinsError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let manifest_len = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
        if manifest_len == 0 || manifest_len > super::MAX_MANIFEST_LEN {
            return Err(QinsError::Corrupt(format!(
                "manifest length {manifest_len} is outside 1..={}",
                super::MAX_MANIFEST_LEN
            )));
        }
        Ok(Self {
            version,
            flags: u32_at(12),
            manifest_len,
            manifest_crc32: u32_at(24),
        })
    }
}
