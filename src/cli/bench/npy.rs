//! Writing float32 tensors as NumPy `.npy` files, for the ONNX Runtime side.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{ensure, Context, Result};

/// Writes `data` of `shape` (C order) as a version 1.0 `.npy` file of
/// little-endian float32.
///
/// # Errors
/// `data` does not fill `shape`, or the file cannot be written.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    ensure!(shape.iter().product::<usize>() == data.len(), "{} values do not make a {shape:?} array", data.len());
    let write = || -> std::io::Result<()> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(&header(shape))?;
        for v in data {
            out.write_all(&v.to_le_bytes())?;
        }
        out.flush()
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Magic, version, header length, then the header dict padded with spaces
/// and a newline so that the data starts 64-byte aligned (NPY format 1.0).
fn header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = match dims.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    const PREAMBLE: usize = 10;
    let padded = (PREAMBLE + dict.len() + 1).next_multiple_of(64) - PREAMBLE;
    dict.extend(std::iter::repeat_n(' ', padded - dict.len() - 1));
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((dict.len() as u16).to_le_bytes());
    bytes.extend(dict.bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_64_byte_aligned_and_spells_the_shape() {
        for (shape, text) in [
            (vec![1, 3, 1024, 1024], "'shape': (1, 3, 1024, 1024), }"),
            (vec![1], "'shape': (1,), }"),
            (vec![], "'shape': (), }"),
        ] {
            let h = header(&shape);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
            assert_eq!(usize::from(u16::from_le_bytes([h[8], h[9]])), h.len() - 10);
            let dict = std::str::from_utf8(&h[10..]).unwrap();
            assert!(dict.starts_with("{'descr': '<f4', 'fortran_order': False, "), "{dict}");
            assert!(dict.contains(text) && dict.ends_with('\n'), "{dict}");
        }
    }

    #[test]
    fn file_holds_header_then_little_endian_values() {
        let path = std::env::temp_dir().join(format!("maskd-npy-{}.npy", std::process::id()));
        write_f32(&path, &[2], &[1.0, -2.5]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let start = header(&[2]).len();
        assert_eq!(bytes.len(), start + 8);
        assert_eq!(&bytes[start..start + 4], &1.0f32.to_le_bytes());
        assert_eq!(&bytes[start + 4..], &(-2.5f32).to_le_bytes());
        std::fs::remove_file(&path).unwrap();
        assert!(write_f32(&path, &[3], &[1.0]).is_err());
    }
}
