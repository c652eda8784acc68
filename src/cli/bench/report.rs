//! The bench report files: JSON through `serde_json`, CSV through `csv`.
//!
//! The schema is a contract: the field names and their order, `null` (JSON) or an empty field
//! (CSV) for a missing or non-finite value, numbers in Rust's shortest `{:e}` form (`3.0217e-5`)
//! and the layout (one result per line) are those of the hand-written writers they replaced.

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};

use super::{Machine, Row};
use crate::error::{Error, Result};

#[derive(Serialize)]
struct JsonMachine<'a> {
    adapter: &'a Option<String>,
    api: &'a Option<String>,
    driver: &'a Option<String>,
    cpu: &'a str,
    threads: usize,
}

/// One result; the field order is the file's.
#[derive(Serialize)]
struct JsonRow<'a> {
    op: &'a str,
    shape: &'a str,
    backend: &'a str,
    kernel: &'a str,
    median_s: f64,
    spread_s: f64,
    kernel_s: Option<f64>,
    e2e_s: Option<f64>,
    gflops: Option<f64>,
    gbs: Option<f64>,
    repeats: usize,
    sweeps: Option<u32>,
    ops_per_s: Option<f64>,
    dispatches: Option<u64>,
    submits: Option<u64>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    machine: JsonMachine<'a>,
    results: Vec<JsonRow<'a>>,
}

/// serde_json's compact output with the report's spacing (`"key": value, ...`, one result per
/// line), floats as `{:e}` (serde_json writes non-finite floats as `null` before reaching the
/// formatter) and control characters as `\u00XX`.
#[derive(Default)]
struct ReportFormatter {
    depth: usize,
    empty_array: bool,
}

impl Formatter for ReportFormatter {
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth -= 1;
        w.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        match (first, self.depth) {
            (true, _) => Ok(()),
            (false, 1) => w.write_all(b",\n "),
            (false, _) => w.write_all(b", "),
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        self.empty_array = true;
        w.write_all(b"[")
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.empty_array = false;
        w.write_all(if first { b"\n  " } else { b",\n  " })
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth -= 1;
        w.write_all(if self.empty_array { b"\n  \n]" } else { b"\n]" })
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        write!(w, "{value:e}")
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        match escape {
            CharEscape::Quote => w.write_all(b"\\\""),
            CharEscape::ReverseSolidus => w.write_all(b"\\\\"),
            CharEscape::Solidus => w.write_all(b"/"),
            CharEscape::Backspace => w.write_all(b"\\u0008"),
            CharEscape::FormFeed => w.write_all(b"\\u000c"),
            CharEscape::LineFeed => w.write_all(b"\\u000a"),
            CharEscape::CarriageReturn => w.write_all(b"\\u000d"),
            CharEscape::Tab => w.write_all(b"\\u0009"),
            CharEscape::AsciiControl(c) => write!(w, "\\u{c:04x}"),
        }
    }
}

fn report_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("writing the bench {what} report: {e}"))
}

/// The JSON report: `{"machine": {...}, "results": [...]}` (field names are a contract).
pub(super) fn to_json(m: &Machine, rows: &[Row]) -> Result<String> {
    let report = JsonReport {
        machine: JsonMachine {
            adapter: &m.adapter,
            api: &m.api,
            driver: &m.driver,
            cpu: &m.cpu,
            threads: m.threads,
        },
        results: rows
            .iter()
            .map(|r| JsonRow {
                op: &r.op,
                shape: &r.shape,
                backend: r.backend,
                kernel: &r.label,
                median_s: r.median_s,
                spread_s: r.spread_s,
                kernel_s: r.kernel_s,
                e2e_s: r.e2e_s,
                gflops: r.gflops(r.median_s),
                gbs: r.gbs(r.median_s),
                repeats: r.repeats,
                sweeps: r.sweeps,
                ops_per_s: r.ops_per_s,
                dispatches: r.dispatches,
                submits: r.submits,
            })
            .collect(),
    };
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, ReportFormatter::default());
    report
        .serialize(&mut ser)
        .map_err(|e| report_error("JSON", e))?;
    out.push(b'\n');
    String::from_utf8(out).map_err(|e| report_error("JSON", e))
}

/// One CSV record: the header is the field names. Numbers are preformatted as `{:e}` (the csv
/// crate would write `0.001` for `1e-3`); `None` is an empty field.
#[derive(Serialize)]
struct CsvRow<'a> {
    op: &'a str,
    shape: &'a str,
    backend: &'a str,
    kernel: &'a str,
    median_s: String,
    spread_s: String,
    kernel_s: Option<String>,
    e2e_s: Option<String>,
    gflops: Option<String>,
    gbs: Option<String>,
    repeats: usize,
    sweeps: Option<u32>,
    ops_per_s: Option<String>,
    dispatches: Option<u64>,
    submits: Option<u64>,
}

/// The CSV report: a header line, then one line per result.
pub(super) fn to_csv(rows: &[Row]) -> Result<String> {
    let e = |v: Option<f64>| v.map(|x| format!("{x:e}"));
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    if rows.is_empty() {
        w.write_record([
            "op",
            "shape",
            "backend",
            "kernel",
            "median_s",
            "spread_s",
            "kernel_s",
            "e2e_s",
            "gflops",
            "gbs",
            "repeats",
            "sweeps",
            "ops_per_s",
            "dispatches",
            "submits",
        ])
        .map_err(|e| report_error("CSV", e))?;
    }
    for r in rows {
        w.serialize(CsvRow {
            op: &r.op,
            shape: &r.shape,
            backend: r.backend,
            kernel: &r.label,
            median_s: format!("{:e}", r.median_s),
            spread_s: format!("{:e}", r.spread_s),
            kernel_s: e(r.kernel_s),
            e2e_s: e(r.e2e_s),
            gflops: e(r.gflops(r.median_s)),
            gbs: e(r.gbs(r.median_s)),
            repeats: r.repeats,
            sweeps: r.sweeps,
            ops_per_s: e(r.ops_per_s),
            dispatches: r.dispatches,
            submits: r.submits,
        })
        .map_err(|e| report_error("CSV", e))?;
    }
    let bytes = w.into_inner().map_err(|e| report_error("CSV", e))?;
    String::from_utf8(bytes).map_err(|e| report_error("CSV", e))
}
