//! A bounds-checked GGUF v3 container reader.
//!
//! Written by hand rather than with the `ggus` crate because ggus trusts its input: it
//! transmutes the tensor-type field straight into an enum, hits `unimplemented!` on unknown
//! types and slices without checks, so a damaged file could panic the converter. Here every
//! count and length is checked against the bytes that remain before anything is allocated.
//! Block dequantization itself is left to `ggml-quants`.

use std::collections::HashMap;

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::UInt(v) => Some(v),
            Value::Int(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(v) => Some(v),
            Value::UInt(v) => Some(v as f64),
            Value::Int(v) => Some(v as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: dims[0] is the contiguous (column) dimension.
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Absolute byte range in the file.
    pub start: usize,
    pub len: usize,
}

pub struct GgufFile {
    pub kv: HashMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
}

/// (elements per block, bytes per block) of the GGML types this importer dequantizes.
pub fn block_size(ggml_type: u32) -> Option<(usize, usize)> {
    Some(match ggml_type {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        30 => (1, 2),     // BF16
        _ => return None,
    })
}

pub fn type_name(ggml_type: u32) -> String {
    let known = [
        (0, "F32"),
        (1, "F16"),
        (2, "Q4_0"),
        (3, "Q4_1"),
        (6, "Q5_0"),
        (7, "Q5_1"),
        (8, "Q8_0"),
        (9, "Q8_1"),
        (10, "Q2_K"),
        (11, "Q3_K"),
        (12, "Q4_K"),
        (13, "Q5_K"),
        (14, "Q6_K"),
        (15, "Q8_K"),
        (30, "BF16"),
    ];
    known
        .iter()
        .find(|(t, _)| *t == ggml_type)
        .map_or_else(|| format!("type {ggml_type}"), |(_, n)| n.to_string())
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let remaining = (self.b.len() - self.pos) as u64;
        if n > remaining {
            bail!(
                "truncated while reading {what} at byte {} ({n} bytes needed, {remaining} left)",
                self.pos
            );
        }
        let s = &self.b[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, "u32")?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, "u64")?.try_into()?))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u64()?;
        let bytes = self.take(n, "string")?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
    fn value(&mut self, ty: u32, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::UInt(self.take(1, "u8")?[0] as u64),
            1 => Value::Int(self.take(1, "i8")?[0] as i8 as i64),
            2 => Value::UInt(u16::from_le_bytes(self.take(2, "u16")?.try_into()?) as u64),
            3 => Value::Int(i16::from_le_bytes(self.take(2, "i16")?.try_into()?) as i64),
            4 => Value::UInt(self.u32()? as u64),
            5 => Value::Int(self.u32()? as i32 as i64),
            6 => Value::Float(f32::from_le_bytes(self.take(4, "f32")?.try_into()?) as f64),
            7 => Value::Bool(self.take(1, "bool")?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                if depth > 2 {
                    bail!("metadata arrays nested too deeply");
                }
                let elem = self.u32()?;
                let n = self.u64()?;
                // Every element takes at least one byte: bounds the allocation by the file.
                let remaining = (self.b.len() - self.pos) as u64;
                if n > remaining {
                    bail!("array of {n} elements cannot fit in the {remaining} bytes left");
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(elem, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::UInt(self.u64()?),
            11 => Value::Int(self.u64()? as i64),
            12 => Value::Float(f64::from_le_bytes(self.take(8, "f64")?.try_into()?)),
            other => bail!("unknown metadata value type {other}"),
        })
    }
}

impl GgufFile {
    pub fn parse(b: &[u8]) -> Result<Self> {
        let mut c = Cursor { b, pos: 0 };
        if c.take(4, "magic")? != b"GGUF" {
            bail!("not a GGUF file (bad magic)");
        }
        let version = c.u32()?;
        if version != 3 {
            bail!("GGUF version {version} is not supported (only version 3)");
        }
        let n_tensors = c.u64()?;
        let n_kv = c.u64()?;
        let mut kv = HashMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let v = c.value(ty, 0)?;
            kv.insert(key, v);
        }
        let alignment = kv
            .get("general.alignment")
            .and_then(Value::as_u64)
            .unwrap_or(32);
        if alignment == 0 || alignment > 1 << 20 {
            bail!("implausible general.alignment {alignment}");
        }
        if n_tensors > (b.len() / 24) as u64 {
            bail!("{n_tensors} tensors cannot fit in a {}-byte file", b.len());
        }
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let nd = c.u32()?;
            if nd == 0 || nd > 4 {
                bail!("tensor {name}: {nd} dimensions");
            }
            let dims = (0..nd).map(|_| c.u64()).collect::<Result<Vec<_>>>()?;
            let ty = c.u32()?;
            let off = c.u64()?;
            raw.push((name, dims, ty, off));
        }
        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, ty, off) in raw {
            let (block_elems, block_bytes) = block_size(ty).ok_or_else(|| {
                anyhow::anyhow!("tensor {name}: unsupported GGML type {}", type_name(ty))
            })?;
            let elems = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            let elems =
                elems.ok_or_else(|| anyhow::anyhow!("tensor {name}: shape {dims:?} overflows"))?;
            if dims[0] % block_elems as u64 != 0 {
                bail!("tensor {name}: row of {} is not a whole number of {block_elems}-element blocks", dims[0]);
            }
            let len = elems / block_elems as u64 * block_bytes as u64;
            let start = data_start.checked_add(off);
            let end = start.and_then(|s| s.checked_add(len));
            match (start, end) {
                (Some(s), Some(e)) if e <= b.len() as u64 => tensors.push(TensorInfo {
                    name,
                    dims,
                    ggml_type: ty,
                    start: s as usize,
                    len: len as usize,
                }),
                _ => bail!(
                    "tensor {name}: data at offset {off} ({len} bytes) lies past the end of the file ({} bytes): truncated?",
                    b.len()
                ),
            }
        }
        Ok(Self { kv, tensors })
    }
}
