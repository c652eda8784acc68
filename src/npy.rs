//! Self-contained reader and writer for NumPy `.npy` files (format versions 1.0, 2.0 and 3.0).
//!
//! Reading accepts `float16`, `float32` and `float64` arrays (either byte order, C or Fortran
//! order, any number of dimensions including 0-d and empty arrays) and returns them as `f32` in
//! C order (float16 widened exactly, its type kept in [`NpyArray::dtype`]).
//! Every other dtype is refused with a message that names it and says how to convert it.
//! The reader never panics and never allocates more than the file itself justifies: the byte
//! size declared by the header is checked against the file length (with checked arithmetic)
//! before anything is allocated.
//!
//! Writing produces version 1.0 files (2.0 when the header does not fit in 65535 bytes) with
//! `'<f4'`, `'<f2'` or `'<i8'` data in C order, written to a temporary file in the target directory and
//! renamed into place, so that a failed write leaves nothing behind.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::tensor::DType;

/// The six magic bytes every `.npy` file starts with.
const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// NumPy aligns the start of the data to a multiple of this many bytes.
const ALIGN: usize = 64;
/// Deepest nesting of tuples/lists/dicts accepted in a header (guards the recursion).
const MAX_DEPTH: usize = 32;
/// Longest excerpt of hostile text quoted in an error message.
const MAX_QUOTE: usize = 60;

/// Array read from a .npy file, converted to f32, C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Dimensions, outermost first; empty for a 0-d (scalar) array.
    pub shape: Vec<usize>,
    /// The elements in C (row-major) order; `data.len()` is the product of `shape`.
    pub data: Vec<f32>,
    /// The file's element type: [`DType::F16`] for `float16` files (their values widen to f32
    /// exactly), [`DType::F32`] for `float32` and `float64` ones (float64 rounded).
    pub dtype: DType,
}

/// Reads a `.npy` file from disk and converts it to `f32` in C order (see [`parse_npy`]).
///
/// A missing or unreadable file gives [`Error::Io`]; a malformed file or an unsupported
/// dtype gives [`Error::Npy`].
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let name = path.display().to_string();
    let io_err = |e: std::io::Error| Error::Io {
        path: name.clone(),
        message: describe_io(&e),
    };
    let (mut file, meta) = open_file(path)?;
    let len = usize::try_from(meta.len()).map_err(|_| Error::Io {
        path: name.clone(),
        message: format!("file too large to read ({} bytes)", meta.len()),
    })?;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).map_err(|_| Error::Io {
        path: name.clone(),
        message: format!("file too large to read into memory ({len} bytes)"),
    })?;
    file.read_to_end(&mut bytes).map_err(io_err)?;
    parse_npy(&bytes, &name)
}

/// Checks the magic string, version and header of a `.npy` file whose first bytes are
/// `bytes` (the whole file, or at least its header); returns the header and the offset of the
/// data.
fn parse_prefix(bytes: &[u8], name: &str) -> Result<(HeaderInfo, usize)> {
    let fail = |msg: String| Error::Npy(format!("{name}: {msg}"));

    if bytes.is_empty() {
        return Err(fail("empty file (0 bytes), not a .npy file".to_string()));
    }
    if !bytes.starts_with(MAGIC) {
        if MAGIC.starts_with(bytes) {
            return Err(fail(format!(
                "truncated file: only {} bytes, ends inside the magic string",
                bytes.len()
            )));
        }
        return Err(fail(format!(
            "not a .npy file: bad magic bytes (expected \\x93NUMPY, found \"{}\")",
            quote_bytes(bytes.get(..6).unwrap_or(bytes))
        )));
    }
    let (major, minor) = match (bytes.get(6), bytes.get(7)) {
        (Some(&a), Some(&b)) => (a, b),
        _ => {
            return Err(fail(format!(
                "truncated file: only {} bytes, ends before the format version",
                bytes.len()
            )))
        }
    };
    let (len_size, utf8) = match major {
        1 => (2usize, false),
        2 => (4, false),
        3 => (4, true),
        _ => {
            return Err(fail(format!(
                "unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)"
            )))
        }
    };
    let header_start = 8 + len_size;
    let len_bytes = bytes.get(8..header_start).ok_or_else(|| {
        fail(format!(
            "truncated file: only {} bytes, ends inside the header length field",
            bytes.len()
        ))
    })?;
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let header_end = header_start
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            fail(format!(
                "truncated header: header length {header_len} goes beyond the end of the \
                 {}-byte file",
                bytes.len()
            ))
        })?;
    let header = bytes.get(header_start..header_end).unwrap_or_default();
    if utf8 && std::str::from_utf8(header).is_err() {
        return Err(fail(
            "malformed header: version 3.0 header is not valid UTF-8".to_string(),
        ));
    }
    let info = parse_header(header, utf8).map_err(|m| fail(m.to_string()))?;
    Ok((info, header_end))
}

/// The element count of `info`'s shape, checked against the `available` bytes that follow the
/// header: a truncated file or extra bytes give [`Error::Npy`] naming both sizes.
fn data_count(info: &HeaderInfo, available: u64, name: &str) -> Result<usize> {
    let fail = |msg: String| Error::Npy(format!("{name}: {msg}"));
    let count = info
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            fail(format!(
                "shape {} has too many elements (the count overflows)",
                fmt_shape(&info.shape)
            ))
        })?;
    let item = info.dtype.item_size();
    let needed = count.checked_mul(item).map(|b| b as u64).ok_or_else(|| {
        fail(format!(
            "shape {} is too large: its byte size overflows",
            fmt_shape(&info.shape)
        ))
    })?;
    if available < needed {
        return Err(fail(format!(
            "truncated data: shape {} of {} needs {needed} bytes but only {} follow the header",
            fmt_shape(&info.shape),
            info.dtype.name(),
            available
        )));
    }
    if available > needed {
        return Err(fail(format!(
            "{} extra bytes after the data: shape {} of {} needs {needed} bytes but {} follow \
             the header",
            available - needed,
            fmt_shape(&info.shape),
            info.dtype.name(),
            available
        )));
    }
    Ok(count)
}

/// Opens `path` for reading, refusing a directory; errors name the file.
fn open_file(path: &Path) -> Result<(std::fs::File, std::fs::Metadata)> {
    let name = path.display().to_string();
    let io_err = |e: std::io::Error| Error::Io {
        path: name.clone(),
        message: describe_io(&e),
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(Error::Io {
            path: name,
            message: "is a directory, not a .npy file".to_string(),
        });
    }
    Ok((file, meta))
}

/// Parses the bytes of a whole `.npy` file; `name` is used in error messages.
///
/// Accepts dtypes `float16`, `float32` and `float64` (`<f2`, `<f4`, `>f4`, `<f8`, …; `=` and `|` are
/// read as little-endian), C or Fortran order, and any shape. `float64` values are rounded
/// to `f32`. Anything else, including a data section longer or shorter than the shape
/// says, gives [`Error::Npy`].
pub fn parse_npy(bytes: &[u8], name: &str) -> Result<NpyArray> {
    let fail = |msg: String| Error::Npy(format!("{name}: {msg}"));
    let (info, header_end) = parse_prefix(bytes, name)?;
    let data = bytes.get(header_end..).unwrap_or_default();
    let count = data_count(&info, data.len() as u64, name)?;
    let item = info.dtype.item_size();
    let mut values = Vec::with_capacity(count);
    for chunk in data.chunks_exact(item) {
        values.push(
            info.dtype
                .decode(chunk)
                .ok_or_else(|| fail("internal error: element of the wrong size".to_string()))?,
        );
    }
    let values = if info.fortran_order {
        fortran_to_c(&info.shape, &values)
            .ok_or_else(|| fail("internal error: Fortran index out of range".to_string()))?
    } else {
        values
    };
    Ok(NpyArray {
        shape: info.shape,
        data: values,
        dtype: match info.dtype {
            Dtype::F16 { .. } => DType::F16,
            _ => DType::F32,
        },
    })
}

/// Encodes a `float32` array in C order as the bytes of a version 1.0 `.npy` file (`'<f4'`).
///
/// Fails with [`Error::Shape`] when `data.len()` is not the product of `shape`.
pub fn encode_npy_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    encode("<memory>", "<f4", shape, data, |v| v.to_le_bytes())
}

/// Encodes an `int64` array in C order as the bytes of a version 1.0 `.npy` file (`'<i8'`).
///
/// Fails with [`Error::Shape`] when `data.len()` is not the product of `shape`.
pub fn encode_npy_i64(shape: &[usize], data: &[i64]) -> Result<Vec<u8>> {
    encode("<memory>", "<i8", shape, data, |v| v.to_le_bytes())
}

/// Writes a `float32` array (C order, `'<f4'`) to `path` atomically: the file is written to
/// a temporary file in the same directory and renamed into place.
///
/// Fails with [`Error::Shape`] on a shape/data mismatch and [`Error::Io`] when the file
/// cannot be written (e.g. the directory does not exist); nothing is left behind then.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let name = path.display().to_string();
    let bytes = encode(&name, "<f4", shape, data, |v| v.to_le_bytes())?;
    write_atomic(path, &bytes)
}

/// Writes a `float16` array (C order, `'<f2'`) of binary16 bits to `path` atomically, as
/// [`write_npy_f32`] does.
pub fn write_npy_f16(path: &Path, shape: &[usize], bits: &[u16]) -> Result<()> {
    let name = path.display().to_string();
    let bytes = encode(&name, "<f2", shape, bits, |v| v.to_le_bytes())?;
    write_atomic(path, &bytes)
}

/// Writes an `int64` array (C order, `'<i8'`) to `path` atomically: the file is written to
/// a temporary file in the same directory and renamed into place.
///
/// Fails with [`Error::Shape`] on a shape/data mismatch and [`Error::Io`] when the file
/// cannot be written (e.g. the directory does not exist); nothing is left behind then.
pub fn write_npy_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    let name = path.display().to_string();
    let bytes = encode(&name, "<i8", shape, data, |v| v.to_le_bytes())?;
    write_atomic(path, &bytes)
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Builds a whole `.npy` file in memory.
fn encode<T: Copy, const N: usize>(
    name: &str,
    descr: &str,
    shape: &[usize],
    data: &[T],
    to_bytes: impl Fn(T) -> [u8; N],
) -> Result<Vec<u8>> {
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count != Some(data.len()) {
        let holds = count.map_or_else(|| "too many".to_string(), |c| c.to_string());
        return Err(Error::Shape(format!(
            "{name}: shape {} holds {holds} elements but {} values were given",
            fmt_shape(shape),
            data.len()
        )));
    }
    let mut out = encode_header(name, descr, shape, data.len().checked_mul(N))?;
    for &v in data {
        out.extend_from_slice(&to_bytes(v));
    }
    Ok(out)
}

/// The magic string, version and padded header of a C-order `.npy` file of `descr` and
/// `shape`, in a vector with room reserved for `data_bytes` more (`None`: too many to count).
fn encode_header(
    name: &str,
    descr: &str,
    shape: &[usize],
    data_bytes: Option<usize>,
) -> Result<Vec<u8>> {
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}",
        fmt_shape(shape)
    );
    // Pad with spaces so that magic + version + length field + header (ending in '\n') is a
    // multiple of ALIGN bytes; fall back to version 2.0 when the header needs a 4-byte length.
    let unpadded = dict.len() + 1;
    let pad_for = |prefix: usize| (ALIGN - (prefix + unpadded) % ALIGN) % ALIGN;
    let (major, prefix) = if unpadded + pad_for(10) <= usize::from(u16::MAX) {
        (1u8, 10usize)
    } else {
        (2u8, 12usize)
    };
    let pad = pad_for(prefix);
    dict.extend(std::iter::repeat_n(' ', pad));
    dict.push('\n');
    let header_len = dict.len();
    let too_big = || Error::Shape(format!("{name}: array too large to encode"));
    let data_bytes = data_bytes.ok_or_else(too_big)?;
    let total = (prefix + header_len)
        .checked_add(data_bytes)
        .ok_or_else(too_big)?;
    let mut out = Vec::new();
    out.try_reserve_exact(total).map_err(|_| too_big())?;
    out.extend_from_slice(MAGIC);
    out.push(major);
    out.push(0);
    if major == 1 {
        let len = u16::try_from(header_len).map_err(|_| too_big())?;
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        let len = u32::try_from(header_len).map_err(|_| too_big())?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    Ok(out)
}

/// Distinguishes temporary files of concurrent writes from the same process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary path next to `path` (in its directory, which must exist), for a write that
/// is renamed into place.
fn temp_path(path: &Path) -> Result<std::path::PathBuf> {
    let name = path.display().to_string();
    let file_name = path.file_name().ok_or_else(|| Error::Io {
        path: name.clone(),
        message: "not a file path (no file name)".to_string(),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::Io {
            path: name,
            message: format!("cannot write: directory '{}' does not exist", dir.display()),
        });
    }
    Ok(dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )))
}

/// Writes `bytes` to a temporary file next to `path`, then renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.display().to_string();
    let io_err = |e: &std::io::Error| Error::Io {
        path: name.clone(),
        message: describe_io(e),
    };
    let tmp = temp_path(path)?;
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        // Best effort: the temporary file may not even exist.
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(&e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(&e));
    }
    Ok(())
}

/// A short one-line description of an I/O error.
fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::IsADirectory => "is a directory, not a file".to_string(),
        _ => e.to_string().replace('\n', " "),
    }
}

// ---------------------------------------------------------------------------------------------
// Dtypes and layout

/// The element types the reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F16 { big: bool },
    F32 { big: bool },
    F64 { big: bool },
}

impl Dtype {
    fn item_size(self) -> usize {
        match self {
            Dtype::F16 { .. } => 2,
            Dtype::F32 { .. } => 4,
            Dtype::F64 { .. } => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Dtype::F16 { .. } => "float16",
            Dtype::F32 { .. } => "float32",
            Dtype::F64 { .. } => "float64",
        }
    }

    /// Decodes one element; `None` only when `chunk` has the wrong length.
    fn decode(self, chunk: &[u8]) -> Option<f32> {
        match self {
            Dtype::F16 { big } => {
                let b = <[u8; 2]>::try_from(chunk).ok()?;
                let h = if big {
                    u16::from_be_bytes(b)
                } else {
                    u16::from_le_bytes(b)
                };
                Some(crate::precision::f16_bits_to_f32(h))
            }
            Dtype::F32 { big } => {
                let b = <[u8; 4]>::try_from(chunk).ok()?;
                Some(if big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                })
            }
            Dtype::F64 { big } => {
                let b = <[u8; 8]>::try_from(chunk).ok()?;
                let v = if big {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                };
                // Rounds to nearest; out-of-range magnitudes become infinities.
                Some(v as f32)
            }
        }
    }
}

/// Interprets a simple dtype string such as `'<f4'`; the error is the full refusal message.
fn parse_descr(descr: &str) -> std::result::Result<Dtype, String> {
    let mut chars = descr.chars();
    let (order, rest) = match chars.next() {
        Some(c @ ('<' | '>' | '=' | '|')) => (c, chars.as_str()),
        _ => ('=', descr),
    };
    let big = order == '>';
    match rest {
        "f2" => return Ok(Dtype::F16 { big }),
        "f4" => return Ok(Dtype::F32 { big }),
        "f8" => return Ok(Dtype::F64 { big }),
        _ => {}
    }
    let mut rest_chars = rest.chars();
    let kind = rest_chars.next();
    let digits = rest_chars.as_str();
    let bits = digits
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(8))
        .map(|b| b.to_string());
    let what = match (kind, bits.as_deref()) {
        (Some('b'), Some(_)) => "bool".to_string(),
        (Some('i'), Some(bits)) => format!("int{bits}"),
        (Some('u'), Some(bits)) => format!("uint{bits}"),
        (Some('f'), Some(bits)) => format!("float{bits}"),
        (Some('c'), Some(bits)) => format!("complex{bits}"),
        (Some('b' | 'i' | 'u' | 'f' | 'c'), None) => "unknown dtype".to_string(),
        (Some('O'), _) => "Python objects".to_string(),
        (Some('S' | 'a'), _) => "byte strings".to_string(),
        (Some('U'), _) => "unicode strings".to_string(),
        (Some('V'), _) => "raw void bytes".to_string(),
        (Some('M'), _) => "datetime64".to_string(),
        (Some('m'), _) => "timedelta64".to_string(),
        _ => "unknown dtype".to_string(),
    };
    let how = match kind {
        Some('c') => "convert with a.real.astype(numpy.float32)",
        Some('O' | 'S' | 'a' | 'U' | 'V' | 'M' | 'm') => {
            "convert to numbers first, e.g. with a.astype(numpy.float32)"
        }
        _ => "convert with a.astype(numpy.float32)",
    };
    Err(format!(
        "unsupported dtype '{}' ({what}); only float16, float32 and float64 are supported, {how}",
        quote(descr)
    ))
}

/// Reorders Fortran-order (column-major) elements into C (row-major) order.
/// `None` only if `src` does not hold the product of `shape` elements.
fn fortran_to_c(shape: &[usize], src: &[f32]) -> Option<Vec<f32>> {
    if shape.len() <= 1 || src.is_empty() {
        return Some(src.to_vec());
    }
    // Fortran strides: the first index is the fastest.
    let mut strides = Vec::with_capacity(shape.len());
    let mut stride = 1usize;
    for &d in shape {
        strides.push(stride);
        stride = stride.checked_mul(d)?;
    }
    if stride != src.len() {
        return None;
    }
    let mut index = vec![0usize; shape.len()];
    let mut offset = 0usize;
    let mut out = Vec::with_capacity(src.len());
    for _ in 0..src.len() {
        out.push(*src.get(offset)?);
        // Advance the C-order multi-index (last index fastest), tracking the Fortran offset.
        for ((i, &d), &s) in index.iter_mut().zip(shape).zip(&strides).rev() {
            *i += 1;
            offset += s;
            if *i < d {
                break;
            }
            *i = 0;
            offset -= s * d;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Header parsing

/// The three fields of a `.npy` header.
#[derive(Debug)]
struct HeaderInfo {
    dtype: Dtype,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value of the Python literal subset that appears in `.npy` headers.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

impl Value {
    /// A Python-like rendering, for error messages.
    fn repr(&self) -> String {
        let mut s = String::new();
        self.repr_into(&mut s);
        s
    }

    fn repr_into(&self, s: &mut String) {
        let seq = |s: &mut String, items: &[Value], open: char, close: char| {
            s.push(open);
            for (k, v) in items.iter().enumerate() {
                if k > 0 {
                    s.push_str(", ");
                }
                v.repr_into(s);
            }
            if open == '(' && items.len() == 1 {
                s.push(',');
            }
            s.push(close);
        };
        match self {
            Value::Str(v) => {
                let _ = write!(s, "'{v}'");
            }
            Value::Int(v) => {
                let _ = write!(s, "{v}");
            }
            Value::Bool(true) => s.push_str("True"),
            Value::Bool(false) => s.push_str("False"),
            Value::None => s.push_str("None"),
            Value::Tuple(items) => seq(s, items, '(', ')'),
            Value::List(items) => seq(s, items, '[', ']'),
            Value::Dict(items) => {
                s.push('{');
                for (k, (key, v)) in items.iter().enumerate() {
                    if k > 0 {
                        s.push_str(", ");
                    }
                    key.repr_into(s);
                    s.push_str(": ");
                    v.repr_into(s);
                }
                s.push('}');
            }
        }
    }
}

/// A header problem; `Display` gives the message without the file name.
#[derive(Debug)]
struct HeaderError(String);

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the header dict and checks its three keys.
fn parse_header(header: &[u8], utf8: bool) -> std::result::Result<HeaderInfo, HeaderError> {
    let bad = |m: String| HeaderError(format!("malformed header: {m}"));
    let mut p = Parser {
        s: header,
        pos: 0,
        utf8,
    };
    p.skip_ws();
    if p.peek().is_none() {
        return Err(bad("the header is empty".to_string()));
    }
    let value = p.value(0).map_err(bad)?;
    p.skip_ws();
    while p.peek() == Some(0) {
        p.pos += 1;
    }
    if p.peek().is_some() {
        return Err(bad(p.unexpected("after the header dict")));
    }
    let Value::Dict(items) = value else {
        return Err(bad(format!(
            "expected a dict, found {}",
            quote(&value.repr())
        )));
    };

    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (key, v) in items {
        let Value::Str(key) = key else {
            return Err(bad(format!(
                "dict key {} is not a string",
                quote(&key.repr())
            )));
        };
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran,
            "shape" => &mut shape,
            _ => {
                return Err(bad(format!(
                    "unexpected key '{}' (expected 'descr', 'fortran_order', 'shape')",
                    quote(&key)
                )))
            }
        };
        if slot.is_some() {
            return Err(bad(format!("duplicate key '{key}'")));
        }
        *slot = Some(v);
    }
    let missing = |k: &str| bad(format!("the header is missing key '{k}'"));
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let fortran = fortran.ok_or_else(|| missing("fortran_order"))?;
    let shape = shape.ok_or_else(|| missing("shape"))?;

    let dtype = match &descr {
        Value::Str(s) => parse_descr(s).map_err(HeaderError)?,
        Value::List(_) | Value::Tuple(_) => {
            return Err(HeaderError(format!(
                "unsupported structured dtype {}; save a plain float32 array instead, e.g. \
                 one field with a['name'].astype(numpy.float32)",
                quote(&descr.repr())
            )))
        }
        other => {
            return Err(bad(format!(
                "'descr' must be a dtype string, found {}",
                quote(&other.repr())
            )))
        }
    };
    let Value::Bool(fortran_order) = fortran else {
        return Err(bad(format!(
            "'fortran_order' must be True or False, found {}",
            quote(&fortran.repr())
        )));
    };
    let Value::Tuple(dims) = &shape else {
        return Err(bad(format!(
            "'shape' must be a tuple of non-negative integers, found {}",
            quote(&shape.repr())
        )));
    };
    let mut out = Vec::with_capacity(dims.len());
    for d in dims {
        let n = match d {
            Value::Int(n) if *n < 0 => {
                return Err(bad(format!(
                    "negative dimension {n} in shape {}",
                    quote(&shape.repr())
                )))
            }
            Value::Int(n) => usize::try_from(*n).map_err(|_| {
                bad(format!(
                    "dimension {n} in shape {} is too large",
                    quote(&shape.repr())
                ))
            })?,
            other => {
                return Err(bad(format!(
                    "dimension {} in shape {} is not an integer",
                    quote(&other.repr()),
                    quote(&shape.repr())
                )))
            }
        };
        out.push(n);
    }
    Ok(HeaderInfo {
        dtype,
        fortran_order,
        shape: out,
    })
}

/// A recursive-descent parser for the Python literal subset used in `.npy` headers.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// Version 3.0 headers are UTF-8; earlier ones are Latin-1.
    utf8: bool,
}

type PResult<T> = std::result::Result<T, String>;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(
            self.peek(),
            Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
        ) {
            self.pos += 1;
        }
    }

    /// "unexpected ... at byte N" for the current position.
    fn unexpected(&self, what: &str) -> String {
        match self.s.get(self.pos..) {
            Some(rest) if !rest.is_empty() => format!(
                "unexpected \"{}\" {what} at byte {} of the header",
                quote_bytes(rest.get(..20).unwrap_or(rest)),
                self.pos
            ),
            _ => format!("the header ends too early ({what})"),
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> PResult<()> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn value(&mut self, depth: usize) -> PResult<Value> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "nested more than {MAX_DEPTH} levels deep at byte {}",
                self.pos
            ));
        }
        self.skip_ws();
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                self.dict(depth)
            }
            Some(b'(') => {
                self.pos += 1;
                self.tuple(depth)
            }
            Some(b'[') => {
                self.pos += 1;
                let items = self.sequence(b']', depth)?;
                Ok(Value::List(items))
            }
            Some(q @ (b'\'' | b'"')) => {
                self.pos += 1;
                self.string(q)
            }
            Some(b'-' | b'+' | b'0'..=b'9') => self.int(),
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => self.word(),
            _ => Err(self.unexpected("where a value was expected")),
        }
    }

    /// After '(': `()`, `(x)` (just x, as in Python), `(x,)`, `(x, y, ...)`.
    fn tuple(&mut self, depth: usize) -> PResult<Value> {
        self.skip_ws();
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(Value::Tuple(Vec::new()));
        }
        let first = self.value(depth + 1)?;
        self.skip_ws();
        match self.peek() {
            Some(b')') => {
                self.pos += 1;
                Ok(first)
            }
            Some(b',') => {
                self.pos += 1;
                let mut items = vec![first];
                items.extend(self.sequence(b')', depth)?);
                Ok(Value::Tuple(items))
            }
            _ => Err(self.unexpected("in a tuple (expected ',' or ')')")),
        }
    }

    /// Comma-separated values up to `close`, trailing comma allowed; the opener is consumed.
    fn sequence(&mut self, close: u8, depth: usize) -> PResult<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => {
                    return Err(self.unexpected(&format!(
                        "in a sequence (expected ',' or '{}')",
                        char::from(close)
                    )))
                }
            }
        }
    }

    /// After '{'.
    fn dict(&mut self, depth: usize) -> PResult<Value> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(Value::Dict(items));
            }
            let key = self.value(depth + 1)?;
            self.expect(b':', "after a dict key (expected ':')")?;
            let v = self.value(depth + 1)?;
            items.push((key, v));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(self.unexpected("in a dict (expected ',' or '}')")),
            }
        }
    }

    /// After the opening quote `q`.
    fn string(&mut self, q: u8) -> PResult<Value> {
        let start = self.pos;
        let mut raw = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(format!(
                    "unterminated string starting at byte {} of the header",
                    start.saturating_sub(1)
                ));
            };
            self.pos += 1;
            if c == q {
                break;
            }
            if c == b'\\' {
                let Some(e) = self.peek() else { continue };
                self.pos += 1;
                match e {
                    b'n' => raw.push(b'\n'),
                    b't' => raw.push(b'\t'),
                    b'r' => raw.push(b'\r'),
                    b'0' => raw.push(0),
                    b'\\' | b'\'' | b'"' => raw.push(e),
                    _ => raw.extend_from_slice(&[b'\\', e]),
                }
            } else {
                raw.push(c);
            }
        }
        let text = if self.utf8 {
            String::from_utf8_lossy(&raw).into_owned()
        } else {
            raw.iter().map(|&b| char::from(b)).collect()
        };
        Ok(Value::Str(text))
    }

    /// An integer literal with optional sign, `_` separators and Python 2 `L` suffix.
    fn int(&mut self) -> PResult<Value> {
        let start = self.pos;
        let negative = match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                true
            }
            Some(b'+') => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        self.skip_ws();
        let mut n: i128 = 0;
        let mut digits = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'0'..=b'9' => {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(i128::from(c - b'0')))
                        .ok_or_else(|| {
                            format!("integer at byte {start} of the header is too large")
                        })?;
                    digits += 1;
                }
                b'_' if digits > 0 => {}
                _ => break,
            }
            self.pos += 1;
        }
        if digits == 0 {
            return Err(self.unexpected("where digits were expected"));
        }
        if matches!(self.peek(), Some(b'L' | b'l')) {
            self.pos += 1;
        }
        if matches!(
            self.peek(),
            Some(b'.' | b'e' | b'E' | b'j' | b'J' | b'x' | b'X')
        ) {
            return Err(self.unexpected("in an integer (only plain integers are allowed)"));
        }
        Ok(Value::Int(if negative { -n } else { n }))
    }

    /// `True`, `False`, `None`, or a `u'...'`/`b'...'` string prefix.
    fn word(&mut self) -> PResult<Value> {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
            self.pos += 1;
        }
        let word = self.s.get(start..self.pos).unwrap_or_default();
        match word {
            b"True" => Ok(Value::Bool(true)),
            b"False" => Ok(Value::Bool(false)),
            b"None" => Ok(Value::None),
            b"u" | b"U" | b"b" | b"B" => match self.peek() {
                Some(q @ (b'\'' | b'"')) => {
                    self.pos += 1;
                    self.string(q)
                }
                _ => Err(self.unexpected(&format!("after name '{}'", quote_bytes(word)))),
            },
            _ => {
                self.pos = start;
                Err(self.unexpected("(not True, False, None, a number or a string)"))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Message helpers

/// Python's rendering of a shape tuple: `()`, `(3,)`, `(2, 3)`.
fn fmt_shape(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// Text from a hostile file made safe for a one-line message: escaped and shortened.
fn quote(s: &str) -> String {
    let mut out = String::new();
    for (k, c) in s.chars().enumerate() {
        if k >= MAX_QUOTE {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Bytes from a hostile file made safe for a one-line message.
fn quote_bytes(b: &[u8]) -> String {
    let mut out = String::new();
    for &c in b.iter().take(MAX_QUOTE) {
        out.extend(std::ascii::escape_default(c).map(char::from));
    }
    if b.len() > MAX_QUOTE {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parser_basics() {
        let h = parse_header(
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
            false,
        )
        .unwrap();
        assert_eq!(h.shape, vec![3, 4]);
        assert!(!h.fortran_order);
        assert_eq!(h.dtype, Dtype::F32 { big: false });
    }

    #[test]
    fn fortran_reorder_3d() {
        let shape = [2usize, 3, 4];
        // Fortran element (i, j, k) lives at i + 2j + 6k; give it the value of its C offset.
        let mut src = vec![0.0f32; 24];
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    src[i + 2 * j + 6 * k] = (i * 12 + j * 4 + k) as f32;
                }
            }
        }
        let c = fortran_to_c(&shape, &src).unwrap();
        let want: Vec<f32> = (0..24).map(|v| v as f32).collect();
        assert_eq!(c, want);
    }

    #[test]
    fn shape_formatting() {
        assert_eq!(fmt_shape(&[]), "()");
        assert_eq!(fmt_shape(&[3]), "(3,)");
        assert_eq!(fmt_shape(&[2, 3]), "(2, 3)");
    }
}

// ---------------------------------------------------------------------------------------------
// Reading and writing by rows, for matrices too large to hold

/// A 2-D C-order `.npy` file opened for reading by row ranges: only the header is read on
/// opening (and the file's length checked against it), and [`NpyRowReader::read_rows`] reads
/// just the rows asked for. A 1-D file is read as one column.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("npy-rows-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// use gpu_linalg::npy::{write_npy_f32, NpyRowReader};
/// let path = dir.join("a.npy");
/// write_npy_f32(&path, &[3, 2], &[1., 2., 3., 4., 5., 6.])?;
/// let mut reader = NpyRowReader::open(&path)?;
/// assert_eq!((reader.rows(), reader.cols()), (3, 2));
/// let mut rows = Vec::new();
/// reader.read_rows(1, 2, &mut rows)?;
/// assert_eq!(rows, vec![3., 4., 5., 6.]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), gpu_linalg::Error>(())
/// ```
#[derive(Debug)]
pub struct NpyRowReader {
    file: std::fs::File,
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    rows: usize,
    cols: usize,
    data_offset: u64,
    bytes: Vec<u8>,
}

impl NpyRowReader {
    /// Opens `path` and checks its header as [`read_npy`] does, and that it is a 1-D or 2-D
    /// C-order array whose data section is exactly as long as its shape needs.
    pub fn open(path: &Path) -> Result<NpyRowReader> {
        let name = path.display().to_string();
        let io_err = |e: std::io::Error| Error::Io {
            path: name.clone(),
            message: describe_io(&e),
        };
        let (mut file, meta) = open_file(path)?;
        // The header length field sits in bytes 8..12; read that much, then the whole header.
        let mut prefix = vec![0u8; usize::try_from(meta.len().min(12)).unwrap_or(12)];
        file.read_exact(&mut prefix).map_err(io_err)?;
        let header_len = match prefix.get(6) {
            Some(1) if prefix.len() >= 10 => {
                10 + usize::from(u16::from_le_bytes([prefix[8], prefix[9]]))
            }
            Some(2 | 3) if prefix.len() >= 12 => {
                12 + u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize
            }
            _ => prefix.len(),
        };
        let wanted = (header_len as u64).min(meta.len());
        if wanted > prefix.len() as u64 {
            let mut rest = vec![0u8; (wanted as usize) - prefix.len()];
            file.read_exact(&mut rest).map_err(io_err)?;
            prefix.extend_from_slice(&rest);
        }
        let (info, data_offset) = parse_prefix(&prefix, &name)?;
        let fail = |msg: String| Error::Npy(format!("{name}: {msg}"));
        data_count(&info, meta.len() - data_offset as u64, &name)?;
        if info.fortran_order && info.shape.iter().filter(|&&d| d > 1).count() > 1 {
            return Err(fail(
                "Fortran-order data cannot be read by rows; save it in C order \
                 (numpy.ascontiguousarray) to stream it"
                    .to_string(),
            ));
        }
        let (rows, cols) = match info.shape[..] {
            [m] => (m, 1),
            [m, n] => (m, n),
            _ => {
                return Err(fail(format!(
                    "expected a 2-D matrix (or a 1-D column) to read by rows, found shape {}",
                    fmt_shape(&info.shape)
                )))
            }
        };
        Ok(NpyRowReader {
            file,
            name,
            dtype: info.dtype,
            shape: info.shape,
            rows,
            cols,
            data_offset: data_offset as u64,
            bytes: Vec::new(),
        })
    }

    /// The file's shape, as its header gives it (1-D or 2-D).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the matrix (1 for a 1-D file).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes per element in the file (2, 4 or 8).
    pub fn item_size(&self) -> usize {
        self.dtype.item_size()
    }

    /// The element type the file holds, as numpy names it (`float32`, …).
    pub fn dtype_name(&self) -> &'static str {
        self.dtype.name()
    }

    /// Reads rows `start..start + count` into `out` (cleared first), converted to f32 as
    /// [`read_npy`] converts them. Rows past the end give [`Error::Npy`]; a file that shrank
    /// since it was opened gives [`Error::Io`].
    pub fn read_rows(&mut self, start: usize, count: usize, out: &mut Vec<f32>) -> Result<()> {
        use std::io::Seek as _;
        out.clear();
        if start.checked_add(count).is_none_or(|end| end > self.rows) {
            return Err(Error::Npy(format!(
                "{}: rows {start}..{} asked of a {}-row matrix",
                self.name,
                start.saturating_add(count),
                self.rows
            )));
        }
        let item = self.dtype.item_size();
        let row_bytes = (self.cols * item) as u64;
        let io_err = |e: std::io::Error| Error::Io {
            path: self.name.clone(),
            message: describe_io(&e),
        };
        self.file
            .seek(std::io::SeekFrom::Start(
                self.data_offset + start as u64 * row_bytes,
            ))
            .map_err(io_err)?;
        self.bytes.resize(count * self.cols * item, 0);
        self.file.read_exact(&mut self.bytes).map_err(io_err)?;
        out.reserve(count * self.cols);
        for chunk in self.bytes.chunks_exact(item) {
            out.push(self.dtype.decode(chunk).unwrap_or(f32::NAN));
        }
        Ok(())
    }
}

/// A `float32` C-order `.npy` file written by rows: the header goes first (the shape is known
/// up front), the rows are appended in order, and [`NpyRowWriter::finish`] checks their
/// count and renames the temporary file into place. Dropped unfinished (an error on the way),
/// it removes the temporary file, so a failed run leaves no output.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("npy-writer-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// use gpu_linalg::npy::{read_npy, NpyRowWriter};
/// let path = dir.join("t.npy");
/// let mut w = NpyRowWriter::create(&path, 3, 2)?;
/// w.append_rows(&[1., 2.])?;
/// w.append_rows(&[3., 4., 5., 6.])?;
/// w.finish()?;
/// assert_eq!(read_npy(&path)?.data, vec![1., 2., 3., 4., 5., 6.]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), gpu_linalg::Error>(())
/// ```
#[derive(Debug)]
pub struct NpyRowWriter {
    file: Option<std::io::BufWriter<std::fs::File>>,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    rows: usize,
    cols: usize,
    written: usize,
    finished: bool,
}

impl NpyRowWriter {
    /// Starts a `rows × cols` float32 file at `path` (a temporary file beside it until
    /// [`finish`](Self::finish)).
    pub fn create(path: &Path, rows: usize, cols: usize) -> Result<NpyRowWriter> {
        let name = path.display().to_string();
        let header = encode_header(&name, "<f4", &[rows, cols], Some(0))?;
        let tmp = temp_path(path)?;
        let io_err = |e: std::io::Error| Error::Io {
            path: name.clone(),
            message: describe_io(&e),
        };
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io_err)?);
        let mut writer = NpyRowWriter {
            file: None,
            tmp,
            path: path.to_path_buf(),
            rows,
            cols,
            written: 0,
            finished: false,
        };
        file.write_all(&header).map_err(io_err)?;
        writer.file = Some(file);
        Ok(writer)
    }

    fn io_err(&self, e: &std::io::Error) -> Error {
        Error::Io {
            path: self.path.display().to_string(),
            message: describe_io(e),
        }
    }

    /// Appends whole rows (`values.len()` a multiple of the column count).
    pub fn append_rows(&mut self, values: &[f32]) -> Result<()> {
        let cols = self.cols.max(1);
        if !values.len().is_multiple_of(cols) || (self.cols == 0 && !values.is_empty()) {
            return Err(Error::Shape(format!(
                "{}: {} values are not whole rows of {} columns",
                self.path.display(),
                values.len(),
                self.cols
            )));
        }
        let rows = values.len() / cols;
        if self.written + rows > self.rows {
            return Err(Error::Shape(format!(
                "{}: {} rows written to a {}-row file",
                self.path.display(),
                self.written + rows,
                self.rows
            )));
        }
        let file = self.file.as_mut().ok_or_else(|| Error::Io {
            path: self.path.display().to_string(),
            message: "already finished".to_string(),
        })?;
        let mut result = Ok(());
        for v in values {
            if let Err(e) = file.write_all(&v.to_le_bytes()) {
                result = Err(e);
                break;
            }
        }
        result.map_err(|e| self.io_err(&e))?;
        self.written += rows;
        Ok(())
    }

    /// Rows appended so far.
    pub fn rows_written(&self) -> usize {
        self.written
    }

    /// Checks that every row was written, syncs the file and renames it into place.
    pub fn finish(mut self) -> Result<()> {
        if self.written != self.rows {
            return Err(Error::Shape(format!(
                "{}: {} of {} rows written",
                self.path.display(),
                self.written,
                self.rows
            )));
        }
        let Some(file) = self.file.take() else {
            return Err(Error::Io {
                path: self.path.display().to_string(),
                message: "already finished".to_string(),
            });
        };
        let synced = file
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all());
        synced.map_err(|e| self.io_err(&e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| self.io_err(&e))?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for NpyRowWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Unfinished: leave nothing behind (best effort; the file may be gone already).
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
