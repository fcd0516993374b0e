//! IVF container reading: a 32-byte file header, then frames of (u32 size, u64 timestamp, data).
//! The fourcc is not checked (some VP8 files carry "I420").

use crate::error::DecodeError;

/// The IVF file header fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IvfHeader {
    /// Codec FourCC (`VP80`).
    pub fourcc: [u8; 4],
    /// Picture width.
    pub width: u16,
    /// Picture height.
    pub height: u16,
    /// Frame rate numerator: `rate / scale` frames per second.
    pub rate: u32,
    /// Frame rate denominator; timestamps count `scale / rate` seconds.
    pub scale: u32,
    /// Frame count as the header declares it.
    pub frame_count: u32,
}

/// One IVF frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IvfFrame<'a> {
    /// Presentation timestamp, in units of `scale / rate` seconds.
    pub timestamp: u64,
    /// The frame's bytes.
    pub data: &'a [u8],
}

/// Parse a whole IVF file held in memory.
pub fn parse_ivf(data: &[u8]) -> Result<(IvfHeader, Vec<IvfFrame<'_>>), DecodeError> {
    if data.len() < 32 {
        return Err(DecodeError::Ivf(format!(
            "file too short for a header ({} bytes)",
            data.len()
        )));
    }
    if &data[0..4] != b"DKIF" {
        return Err(DecodeError::Ivf("not an IVF file (missing DKIF signature)".into()));
    }
    let u16at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]);
    let u32at = |o: usize| u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
    let header_len = u16at(6) as usize;
    if header_len < 32 || header_len > data.len() {
        return Err(DecodeError::Ivf(format!("bad header length {header_len}")));
    }
    let header = IvfHeader {
        fourcc: [data[8], data[9], data[10], data[11]],
        width: u16at(12),
        height: u16at(14),
        rate: u32at(16),
        scale: u32at(20),
        frame_count: u32at(24),
    };
    let mut frames = Vec::new();
    let mut pos = header_len;
    while pos < data.len() {
        if data.len() - pos < 12 {
            return Err(DecodeError::Ivf(format!("truncated frame header at offset {pos}")));
        }
        let size = u32at(pos) as usize;
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&data[pos + 4..pos + 12]);
        pos += 12;
        if data.len() - pos < size {
            return Err(DecodeError::Ivf(format!(
                "truncated frame {} at offset {pos}: {size} bytes declared, {} present",
                frames.len(),
                data.len() - pos
            )));
        }
        frames.push(IvfFrame { timestamp: u64::from_le_bytes(ts), data: &data[pos..pos + size] });
        pos += size;
    }
    Ok((header, frames))
}
