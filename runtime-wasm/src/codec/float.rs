use half::f16;

use super::{read_f32s, write_f32s};

pub fn encode_f32(data: &[f32], out: &mut [u8]) {
    write_f32s(data, out);
}

pub fn decode_f32(bytes: &[u8]) -> Vec<f32> {
    read_f32s(bytes)
}

pub fn encode_f16(data: &[f32], out: &mut [u8]) {
    for (v, o) in data.iter().zip(out.chunks_exact_mut(2)) {
        o.copy_from_slice(&f16::from_f32(*v).to_le_bytes());
    }
}

pub fn decode_f16(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}
