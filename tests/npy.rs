//! Integration tests of the `.npy` reader and writer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gpu_linalg::npy::{
    encode_npy_f32, encode_npy_i64, parse_npy, read_npy, write_npy_f32, write_npy_i64, NpyArray,
};
use gpu_linalg::{DType, Error};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Builds a `.npy` file from a raw header string (no padding added) and raw data bytes.
fn npy(major: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.push(major);
    out.push(0);
    if major == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn header(descr: &str, fortran: bool, shape: &str) -> String {
    let f = if fortran { "True" } else { "False" };
    format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {shape}, }}\n")
}

fn f4_le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f4_be(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

fn f8_le(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f8_be(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

/// The message of an `Error::Npy`, failing the test on anything else.
fn npy_err(bytes: &[u8]) -> String {
    match parse_npy(bytes, "a.npy") {
        Err(Error::Npy(m)) => {
            assert!(
                m.starts_with("a.npy: "),
                "message does not name the file: {m}"
            );
            assert!(!m.contains('\n'), "message is not one line: {m:?}");
            m
        }
        Err(e) => panic!("expected Error::Npy, got {e:?}"),
        Ok(a) => panic!("expected an error, parsed {a:?}"),
    }
}

fn assert_err_contains(bytes: &[u8], needles: &[&str]) -> String {
    let m = npy_err(bytes);
    for n in needles {
        assert!(
            m.to_lowercase().contains(&n.to_lowercase()),
            "message {m:?} lacks {n:?}"
        );
    }
    m
}

/// A fresh, empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "gpu-linalg-npy-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips and encoding

#[test]
fn f32_round_trip_in_memory() {
    let cases: Vec<(Vec<usize>, usize)> = vec![
        (vec![], 1),
        (vec![0], 0),
        (vec![5], 5),
        (vec![2, 3], 6),
        (vec![0, 3], 0),
        (vec![3, 0], 0),
        (vec![2, 3, 4], 24),
        (vec![1, 1, 1, 1, 7], 7),
    ];
    for (shape, n) in cases {
        let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bytes = encode_npy_f32(&shape, &data).unwrap();
        let a = parse_npy(&bytes, "mem").unwrap();
        assert_eq!(
            a,
            NpyArray {
                shape: shape.clone(),
                data: data.clone(),
                dtype: DType::F32,
            }
        );
    }
}

#[test]
fn f32_special_values_round_trip() {
    let data = [
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        f32::MIN_POSITIVE,
        f32::MAX,
        1e-45,
    ];
    let a = parse_npy(&encode_npy_f32(&[6], &data).unwrap(), "m").unwrap();
    for (x, y) in a.data.iter().zip(&data) {
        assert_eq!(x.to_bits(), y.to_bits());
    }
    let nan = parse_npy(&encode_npy_f32(&[], &[f32::NAN]).unwrap(), "m").unwrap();
    assert!(nan.data[0].is_nan());
}

#[test]
fn f32_round_trip_on_disk_and_no_temp_files_left() {
    let dir = TempDir::new();
    let path = dir.path().join("x.npy");
    let data: Vec<f32> = (0..12).map(|i| i as f32).collect();
    write_npy_f32(&path, &[3, 4], &data).unwrap();
    let a = read_npy(&path).unwrap();
    assert_eq!(a.shape, vec![3, 4]);
    assert_eq!(a.data, data);
    // Overwrite in place.
    write_npy_f32(&path, &[2], &[1.0, 2.0]).unwrap();
    let b = read_npy(&path).unwrap();
    assert_eq!(
        b,
        NpyArray {
            shape: vec![2],
            data: vec![1.0, 2.0],
            dtype: DType::F32,
        }
    );
    assert_eq!(dir.entries(), vec!["x.npy".to_string()]);
    // The file on disk is exactly what the encoder produces.
    assert_eq!(
        std::fs::read(&path).unwrap(),
        encode_npy_f32(&[2], &[1.0, 2.0]).unwrap()
    );
}

#[test]
fn f32_encoding_bytes() {
    let bytes = encode_npy_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0, "header not aligned to 64");
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
    assert!(header.ends_with('\n'));
    assert!(header[..hlen - 1].trim_end_matches(' ').ends_with('}'));
    assert_eq!(
        &bytes[10 + hlen..],
        &f4_le(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])[..]
    );

    for (shape, text) in [(vec![], "()"), (vec![7], "(7,)"), (vec![0, 3], "(0, 3)")] {
        let n: usize = shape.iter().product();
        let bytes = encode_npy_f32(&shape, &vec![0.0; n]).unwrap();
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
        assert!(header.contains(&format!("'shape': {text}, }}")), "{header}");
        assert_eq!(bytes.len(), 10 + hlen + 4 * n);
    }
}

#[test]
fn i64_encoding_bytes_and_refused_on_read() {
    let data = [1i64, -2, i64::MAX, i64::MIN];
    let bytes = encode_npy_i64(&[2, 2], &data).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0);
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(header.starts_with("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }"));
    let want: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(&bytes[10 + hlen..], &want[..]);
    assert_err_contains(
        &bytes,
        &[
            "unsupported dtype",
            "'<i8'",
            "int64",
            "astype(numpy.float32)",
        ],
    );
}

#[test]
fn i64_write_to_disk() {
    let dir = TempDir::new();
    let path = dir.path().join("labels.npy");
    write_npy_i64(&path, &[3], &[7, 8, 9]).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        encode_npy_i64(&[3], &[7, 8, 9]).unwrap()
    );
    assert_eq!(dir.entries(), vec!["labels.npy".to_string()]);
}

#[test]
fn encode_shape_mismatch_is_an_error() {
    assert!(matches!(
        encode_npy_f32(&[2, 3], &[1.0; 5]),
        Err(Error::Shape(_))
    ));
    assert!(matches!(encode_npy_i64(&[], &[]), Err(Error::Shape(_))));
    assert!(encode_npy_f32(&[usize::MAX, 2], &[]).is_err());
    let dir = TempDir::new();
    let path = dir.path().join("bad.npy");
    let e = write_npy_f32(&path, &[4], &[1.0]).unwrap_err();
    assert!(e.to_string().contains("bad.npy"), "{e}");
    assert!(dir.entries().is_empty());
}

#[test]
fn large_header_uses_version_2() {
    // 30000 dimensions of 1 make a header longer than 65535 bytes.
    let shape = vec![1usize; 30000];
    let bytes = encode_npy_f32(&shape, &[4.5]).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x02\x00");
    let hlen = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    assert!(hlen > 65535);
    assert_eq!((12 + hlen) % 64, 0);
    let a = parse_npy(&bytes, "big").unwrap();
    assert_eq!(a.shape, shape);
    assert_eq!(a.data, vec![4.5]);
}

// ---------------------------------------------------------------------------------------------
// Hand-built files that must be accepted

#[test]
fn f8_big_endian() {
    let vals = [1.5f64, -2.25, 0.1, 3.0e10, 1e300];
    let bytes = npy(1, &header(">f8", false, "(5,)"), &f8_be(&vals));
    let a = parse_npy(&bytes, "a.npy").unwrap();
    assert_eq!(a.shape, vec![5]);
    assert_eq!(a.data, vec![1.5, -2.25, 0.1f32, 3.0e10, f32::INFINITY]);
}

#[test]
fn f8_little_endian_and_f4_variants() {
    let a = parse_npy(
        &npy(1, &header("<f8", false, "(2,)"), &f8_le(&[0.5, -1.0])),
        "a",
    )
    .unwrap();
    assert_eq!(a.data, vec![0.5, -1.0]);
    let vals = [1.0f32, -7.25, 3.5];
    let be = parse_npy(&npy(1, &header(">f4", false, "(3,)"), &f4_be(&vals)), "a").unwrap();
    assert_eq!(be.data, vals);
    for d in ["<f4", "=f4", "|f4", "f4"] {
        let a = parse_npy(&npy(1, &header(d, false, "(3,)"), &f4_le(&vals)), "a").unwrap();
        assert_eq!(a.data, vals, "descr {d}");
    }
    let a = parse_npy(&npy(1, &header("=f8", false, "(1,)"), &f8_le(&[2.0])), "a").unwrap();
    assert_eq!(a.data, vec![2.0]);
}

#[test]
fn fortran_order_2x3() {
    // a[i, j] = 10 i + j, stored column by column.
    let fortran = [0.0f32, 10.0, 1.0, 11.0, 2.0, 12.0];
    let a = parse_npy(
        &npy(1, &header("<f4", true, "(2, 3)"), &f4_le(&fortran)),
        "a",
    )
    .unwrap();
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.data, vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0]);
}

#[test]
fn fortran_order_3d_and_f8() {
    let (d0, d1, d2) = (2usize, 3usize, 4usize);
    let mut fortran = vec![0.0f64; d0 * d1 * d2];
    for i in 0..d0 {
        for j in 0..d1 {
            for k in 0..d2 {
                fortran[i + d0 * (j + d1 * k)] = (100 * i + 10 * j + k) as f64;
            }
        }
    }
    let a = parse_npy(
        &npy(1, &header(">f8", true, "(2, 3, 4)"), &f8_be(&fortran)),
        "a",
    )
    .unwrap();
    let want: Vec<f32> = (0..d0)
        .flat_map(|i| {
            (0..d1).flat_map(move |j| (0..d2).map(move |k| (100 * i + 10 * j + k) as f32))
        })
        .collect();
    assert_eq!(a.data, want);
    // 1-d and 0-d Fortran arrays are the same as C order; empty ones stay empty.
    let a = parse_npy(
        &npy(1, &header("<f4", true, "(3,)"), &f4_le(&[1.0, 2.0, 3.0])),
        "a",
    )
    .unwrap();
    assert_eq!(a.data, vec![1.0, 2.0, 3.0]);
    let a = parse_npy(&npy(1, &header("<f4", true, "()"), &f4_le(&[9.0])), "a").unwrap();
    assert_eq!(a.data, vec![9.0]);
    let a = parse_npy(&npy(1, &header("<f4", true, "(0, 5)"), &[]), "a").unwrap();
    assert_eq!((a.shape, a.data), (vec![0, 5], vec![]));
}

#[test]
fn zero_dimensional() {
    let a = parse_npy(&npy(1, &header("<f4", false, "()"), &f4_le(&[42.0])), "a").unwrap();
    assert_eq!(
        a,
        NpyArray {
            shape: vec![],
            data: vec![42.0],
            dtype: DType::F32,
        }
    );
}

#[test]
fn empty_0_by_3() {
    let a = parse_npy(&npy(1, &header("<f4", false, "(0, 3)"), &[]), "a").unwrap();
    assert_eq!(
        a,
        NpyArray {
            shape: vec![0, 3],
            data: vec![],
            dtype: DType::F32,
        }
    );
    let a = parse_npy(&npy(1, &header("<f8", false, "(0,)"), &[]), "a").unwrap();
    assert_eq!(
        a,
        NpyArray {
            shape: vec![0],
            data: vec![],
            dtype: DType::F32,
        }
    );
}

#[test]
fn header_syntax_variants() {
    let d = f4_le(&[1.0, 2.0, 3.0]);
    let variants = [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
        "{'descr':'<f4','fortran_order':False,'shape':(3,)}",
        "{\"shape\": (3,), \"fortran_order\": False, \"descr\": \"<f4\"}",
        "{'shape': (3, ), 'descr': '<f4', 'fortran_order': False,}      \n",
        "  {\n 'fortran_order' : False ,\n\t'shape' : ( 3 , ) ,\n 'descr' : '<f4' ,\n }\n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3L,), }\n",
        "{u'descr': u'<f4', 'fortran_order': False, 'shape': (3,), }\n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n\0\0",
    ];
    for h in variants {
        let a = parse_npy(&npy(1, h, &d), "a").unwrap_or_else(|e| panic!("{h:?}: {e}"));
        assert_eq!(a.shape, vec![3], "{h:?}");
        assert_eq!(a.data, vec![1.0, 2.0, 3.0]);
    }
}

#[test]
fn versions_2_and_3() {
    let d = f4_le(&[1.0, 2.0]);
    let h = header("<f4", false, "(2,)");
    assert_eq!(
        parse_npy(&npy(2, &h, &d), "a").unwrap().data,
        vec![1.0, 2.0]
    );
    assert_eq!(
        parse_npy(&npy(3, &h, &d), "a").unwrap().data,
        vec![1.0, 2.0]
    );
    // Version 3.0 headers are UTF-8 (only meaningful inside strings); invalid UTF-8 is refused.
    let mut bad = npy(3, &h, &d);
    bad[12 + 1] = 0xff;
    assert_err_contains(&bad, &["utf-8"]);
    assert_err_contains(&npy(4, &h, &d), &["version 4.0"]);
    assert_err_contains(&npy(0, &h, &d), &["version"]);
}

// ---------------------------------------------------------------------------------------------
// Unsupported dtypes

#[test]
fn unsupported_dtypes_are_named() {
    let cases = [
        ("|i1", "int8"),
        ("<i2", "int16"),
        ("<i4", "int32"),
        ("<i8", "int64"),
        (">i8", "int64"),
        ("|u1", "uint8"),
        ("<u4", "uint32"),
        ("<u8", "uint64"),
        ("|b1", "bool"),
        ("<f16", "float128"),
        ("<c8", "complex64"),
        ("<c16", "complex128"),
        ("|O", "object"),
        ("<U5", "unicode"),
        ("|S3", "byte strings"),
        ("|V8", "void"),
        ("<M8[ns]", "datetime64"),
        ("<m8[s]", "timedelta64"),
        ("float32", "unknown"),
        ("", "unknown"),
    ];
    for (descr, name) in cases {
        let bytes = npy(1, &header(descr, false, "(2,)"), &[0u8; 16]);
        let m = assert_err_contains(&bytes, &["unsupported dtype", name, "astype"]);
        assert!(m.contains(&format!("'{descr}'")), "{m}");
    }
    let m = assert_err_contains(
        &npy(1, &header("<c8", false, "(2,)"), &[0u8; 16]),
        &["a.real.astype(numpy.float32)"],
    );
    assert!(m.contains("'<c8' (complex64)"), "{m}");
    let m = npy_err(&npy(1, &header("<i8", false, "(2,)"), &[0u8; 16]));
    assert!(
        m.starts_with("a.npy: unsupported dtype '<i8' (int64);"),
        "{m}"
    );
}

#[test]
fn structured_dtype_is_refused() {
    let h = "{'descr': [('x', '<f4'), ('y', '<i4')], 'fortran_order': False, 'shape': (2,), }";
    assert_err_contains(
        &npy(1, h, &[0u8; 16]),
        &["structured dtype", "('x', '<f4')", "float32"],
    );
    let h = "{'descr': [('', '|V4')], 'fortran_order': False, 'shape': (1,), }";
    assert_err_contains(&npy(1, h, &[0u8; 4]), &["structured"]);
}

// ---------------------------------------------------------------------------------------------
// Hostile files

#[test]
fn empty_file() {
    assert_err_contains(&[], &["empty", "0 bytes"]);
}

#[test]
fn wrong_magic() {
    assert_err_contains(b"PK\x03\x04 this is a zip file", &["magic"]);
    assert_err_contains(b"\x93NUMPX\x01\x00", &["magic"]);
    assert_err_contains(b"x", &["magic"]);
    let mut ok = npy(1, &header("<f4", false, "(1,)"), &[0u8; 4]);
    ok[0] = b'N';
    assert_err_contains(&ok, &["magic"]);
}

#[test]
fn truncated_prefix() {
    let full = npy(1, &header("<f4", false, "(1,)"), &[0u8; 4]);
    for n in 1..10 {
        assert_err_contains(&full[..n], &["truncated"]);
    }
    let full2 = npy(2, &header("<f4", false, "(1,)"), &[0u8; 4]);
    for n in 8..12 {
        assert_err_contains(&full2[..n], &["truncated"]);
    }
}

#[test]
fn truncated_header() {
    let full = npy(1, &header("<f4", false, "(1,)"), &[0u8; 4]);
    let hlen = u16::from_le_bytes([full[8], full[9]]) as usize;
    for n in [10, 11, 30, 10 + hlen - 1] {
        assert_err_contains(&full[..n], &["truncated header"]);
    }
}

#[test]
fn header_length_beyond_file() {
    let mut b = npy(1, &header("<f4", false, "(1,)"), &[0u8; 4]);
    b[8] = 0xff;
    b[9] = 0xff;
    assert_err_contains(&b, &["truncated header", "65535"]);
    let mut b = npy(2, &header("<f4", false, "(1,)"), &[0u8; 4]);
    b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_err_contains(&b, &["truncated header", "4294967295"]);
}

#[test]
fn malformed_header_dicts() {
    let d = [0u8; 12];
    let cases: &[(&str, &[&str])] = &[
        ("", &["header is empty"]),
        ("   \n", &["header is empty"]),
        ("hello", &["malformed header"]),
        ("garbage garbage", &["malformed header"]),
        ("[1, 2, 3]", &["expected a dict"]),
        ("{'descr': '<f4', 'fortran_order': False}", &["missing key 'shape'"]),
        ("{'fortran_order': False, 'shape': (3,)}", &["missing key 'descr'"]),
        ("{'descr': '<f4', 'shape': (3,)}", &["missing key 'fortran_order'"]),
        ("{}", &["missing key"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (3 4)}", &["tuple"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,,)}", &["malformed header"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,}", &["malformed header"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3)}", &["negative"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (3, -0x1)}", &["malformed"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (3.5,)}", &["malformed"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': ('3',)}", &["not an integer"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': 3}", &["must be a tuple"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (3)}", &["must be a tuple"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': [3]}", &["must be a tuple"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': None}", &["must be a tuple"]),
        ("{'descr': '<f4', 'fortran_order': 'no', 'shape': (3,)}", &["True or False"]),
        ("{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}", &["True or False"]),
        ("{'descr': 4, 'fortran_order': False, 'shape': (3,)}", &["dtype string"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", &["unexpected key"]),
        ("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", &["duplicate"]),
        ("{3: '<f4', 'fortran_order': False, 'shape': (3,)}", &["not a string"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} trailing", &["after the header"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}}", &["after the header"]),
        ("{'descr': '<f4", &["unterminated string"]),
        ("{'descr' '<f4', 'fortran_order': False, 'shape': (3,)}", &["expected ':'"]),
        ("{'descr': '<f4' 'fortran_order': False, 'shape': (3,)}", &["expected ',' or '}'"]),
        ("{'descr': '<f4', 'fortran_order': Flase, 'shape': (3,)}", &["Flase"]),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (", &["ends too early"]),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999999999999999999999,)}",
            &["too large"],
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999999,)}",
            &["too large"],
        ),
    ];
    for (h, needles) in cases {
        assert_err_contains(&npy(1, h, &d), needles);
    }
}

#[test]
fn deeply_nested_header_does_not_overflow_the_stack() {
    for open in ["(", "[", "{'a': "] {
        let h = open.repeat(100_000);
        assert_err_contains(&npy(2, &h, &[]), &["nested"]);
    }
    let h = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}3{}}}",
        "(".repeat(5000),
        ",)".repeat(5000)
    );
    assert_err_contains(&npy(2, &h, &[]), &["nested"]);
}

#[test]
fn control_characters_are_escaped_in_messages() {
    let h = "{'descr': '<i4\n\r\u{1b}[31m', 'fortran_order': False, 'shape': (1,)}";
    let m = npy_err(&npy(1, h, &[0u8; 4]));
    assert!(!m.contains('\u{1b}') && !m.contains('\r'), "{m:?}");
}

#[test]
fn data_shorter_or_longer_than_shape() {
    let h = header("<f4", false, "(2, 3)");
    assert_err_contains(
        &npy(1, &h, &[0u8; 23]),
        &["truncated data", "24 bytes", "23"],
    );
    assert_err_contains(&npy(1, &h, &[]), &["truncated data"]);
    assert_err_contains(&npy(1, &h, &[0u8; 25]), &["1 extra bytes"]);
    assert_err_contains(&npy(1, &h, &[0u8; 48]), &["extra bytes"]);
    let h = header("<f8", false, "()");
    assert_err_contains(&npy(1, &h, &[0u8; 4]), &["truncated data", "8 bytes"]);
    let h = header("<f4", false, "(0, 3)");
    assert_err_contains(&npy(1, &h, &[0u8; 4]), &["extra bytes"]);
}

#[test]
fn huge_declared_shape_fails_fast() {
    let start = Instant::now();
    let h = header("<f4", false, "(1000000000, 1000000000)");
    assert_err_contains(&npy(1, &h, &[0u8; 16]), &["truncated data"]);
    let h = header("<f8", true, "(1000000000, 1000000000)");
    assert_err_contains(&npy(1, &h, &[0u8; 16]), &["truncated data"]);
    // Products that overflow usize.
    let h = header("<f4", false, "(4294967296, 4294967296, 4294967296)");
    assert_err_contains(&npy(1, &h, &[0u8; 16]), &["too many elements"]);
    let h = header("<f8", false, &format!("({},)", usize::MAX / 4));
    assert_err_contains(&npy(1, &h, &[0u8; 16]), &["overflows"]);
    let h = header("<f4", false, &format!("({}, 0)", usize::MAX));
    assert_err_contains(&npy(1, &h, &[0u8; 16]), &["extra bytes"]);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// File system

#[test]
fn read_missing_file_is_io_error() {
    let dir = TempDir::new();
    let path = dir.path().join("nope.npy");
    match read_npy(&path) {
        Err(Error::Io { path: p, message }) => {
            assert!(p.contains("nope.npy"), "{p}");
            assert!(message.contains("no such file"), "{message}");
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
    let e = read_npy(&path).unwrap_err().to_string();
    assert!(e.contains("nope.npy") && e.contains("no such file"), "{e}");
}

#[test]
fn read_directory_is_io_error() {
    let dir = TempDir::new();
    assert!(matches!(read_npy(dir.path()), Err(Error::Io { .. })));
}

#[test]
fn read_hostile_file_names_the_path() {
    let dir = TempDir::new();
    let path = dir.path().join("bad.npy");
    std::fs::write(&path, b"not numpy at all").unwrap();
    let e = read_npy(&path).unwrap_err();
    assert!(matches!(e, Error::Npy(_)));
    let m = e.to_string();
    assert!(m.contains("bad.npy") && m.contains("magic"), "{m}");
    std::fs::write(&path, b"").unwrap();
    assert!(read_npy(&path).unwrap_err().to_string().contains("empty"));
}

#[test]
fn write_into_missing_directory_leaves_nothing() {
    let dir = TempDir::new();
    let missing = dir.path().join("no-such-dir");
    let path = missing.join("out.npy");
    match write_npy_f32(&path, &[2], &[1.0, 2.0]) {
        Err(Error::Io { path: p, message }) => {
            assert!(p.contains("out.npy"), "{p}");
            assert!(message.contains("does not exist"), "{message}");
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert!(write_npy_i64(&path, &[1], &[1]).is_err());
    assert!(!path.exists());
    assert!(!missing.exists());
    assert!(dir.entries().is_empty());
}

#[test]
fn write_over_a_directory_fails_and_leaves_no_temp_file() {
    let dir = TempDir::new();
    let target = dir.path().join("taken");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    assert!(matches!(
        write_npy_f32(&target, &[1], &[1.0]),
        Err(Error::Io { .. })
    ));
    assert_eq!(dir.entries(), vec!["taken".to_string()]);
}

// ---------------------------------------------------------------------------------------------
// Never panic

fn valid_files() -> Vec<Vec<u8>> {
    vec![
        encode_npy_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
        encode_npy_f32(&[], &[1.0]).unwrap(),
        encode_npy_f32(&[0, 3], &[]).unwrap(),
        npy(
            1,
            &header(">f8", true, "(2, 2)"),
            &f8_be(&[1.0, 2.0, 3.0, 4.0]),
        ),
        npy(2, &header("<f4", false, "(1, 1, 2)"), &f4_le(&[1.0, 2.0])),
        npy(3, &header("<f8", false, "(1,)"), &f8_le(&[1.0])),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Set(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::Flip(i, x) if len > 0 => bytes[i % len] ^= x,
        Mutation::Set(i, x) if len > 0 => bytes[i % len] = *x,
        Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
        Mutation::Insert(i, v) => {
            let at = i % (len + 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Mutation::Remove(i, n) if len > 0 => {
            let at = i % len;
            let end = (at + n).min(len);
            bytes.drain(at..end);
        }
        _ => {}
    }
}

/// Header-ish bytes that make the parser go deeper than pure noise does.
fn header_alphabet() -> impl Strategy<Value = u8> {
    prop::sample::select(
        b"{}()[],:'\" \n0123456789-LTrueFalsNon<>=|f48idescrshapfortan_\\\x00\xff".to_vec(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_npy(&bytes, "random");
    }

    #[test]
    fn random_bytes_after_magic_never_panic(
        major in 0u8..5,
        rest in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = b"\x93NUMPY".to_vec();
        bytes.push(major);
        bytes.push(0);
        bytes.extend(rest);
        let _ = parse_npy(&bytes, "random");
    }

    #[test]
    fn random_headers_never_panic(
        major in 1u8..4,
        header in prop::collection::vec(header_alphabet(), 0..200),
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let h: String = header.iter().map(|&b| char::from(b)).collect();
        let mut bytes = b"\x93NUMPY".to_vec();
        bytes.push(major);
        bytes.push(0);
        if major == 1 {
            bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        bytes.extend_from_slice(&header);
        bytes.extend(data);
        let _ = parse_npy(&bytes, &h);
    }

    #[test]
    fn mutated_valid_files_never_panic(
        which in 0usize..6,
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let files = valid_files();
        let mut bytes = files[which % files.len()].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        if let Ok(a) = parse_npy(&bytes, "mutated") {
            prop_assert_eq!(a.data.len(), a.shape.iter().product::<usize>());
        }
    }

    #[test]
    fn f32_round_trip_random(
        dims in prop::collection::vec(0usize..5, 0..4),
        seed in any::<u32>(),
    ) {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|i| f32::from_bits(seed.wrapping_mul(2_654_435_761).wrapping_add(i as u32) & 0x7f7f_ffff)).collect();
        let a = parse_npy(&encode_npy_f32(&dims, &data).unwrap(), "rt").unwrap();
        prop_assert_eq!(a.shape, dims);
        prop_assert_eq!(a.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), data.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }
}
