//! `bench --plot`: throughput against size, one line per backend per op, log axes.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Machine, Row};
use crate::error::{Error, Result};

/// Places a TrueType font is looked for (after `GPU_LINALG_FONT`).
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Refuses plot formats other than SVG and PNG before any benchmark runs.
pub fn check_format(path: &Path) -> Result<()> {
    match ext(path).as_str() {
        "svg" | "png" => Ok(()),
        other => Err(Error::InvalidArgument(format!(
            "--plot {}: unsupported format '{other}'; use .svg or .png",
            path.display()
        ))),
    }
}

fn ext(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Registers a system TrueType font as "sans-serif" (plotters draws no text without one):
/// `GPU_LINALG_FONT`, else the first of the usual DejaVu, Liberation or Arial files found.
pub fn register_font() -> Result<()> {
    static DONE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let candidates = std::env::var("GPU_LINALG_FONT")
            .ok()
            .into_iter()
            .chain(FONT_PATHS.iter().map(|s| s.to_string()));
        for p in candidates {
            if let Ok(bytes) = std::fs::read(&p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err("plots need a TrueType font: install fonts-dejavu-core, or set GPU_LINALG_FONT to a .ttf file".into())
    })
    .clone()
    .map_err(Error::InvalidArgument)
}

fn plot_err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Io {
        path: path.display().to_string(),
        message: format!("drawing the plot: {e}"),
    }
}

/// Draws the plot to `path` (SVG or PNG by extension), written to a temporary file first.
pub fn draw(path: &Path, machine: &Machine, rows: &[Row]) -> Result<()> {
    check_format(path)?;
    register_font()?;
    let tmp = path.with_extension(format!("tmp{}.{}", std::process::id(), ext(path)));
    let size = (1000, 420 * ops(rows).len().max(1) as u32);
    let drawn = if ext(path) == "svg" {
        let root = SVGBackend::new(&tmp, size).into_drawing_area();
        draw_on(&root, machine, rows, path).and_then(|_| root.present().map_err(plot_err(path)))
    } else {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        draw_on(&root, machine, rows, path).and_then(|_| root.present().map_err(plot_err(path)))
    };
    match drawn.and_then(|_| std::fs::rename(&tmp, path).map_err(plot_err(path))) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn ops(rows: &[Row]) -> Vec<&str> {
    let mut v: Vec<&str> = Vec::new();
    for r in rows {
        if !v.contains(&r.op.as_str()) {
            v.push(&r.op);
        }
    }
    v
}

fn draw_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    machine: &Machine,
    rows: &[Row],
    path: &Path,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = plot_err(path);
    root.fill(&WHITE).map_err(&err)?;
    let ops = ops(rows);
    let panels = root.split_evenly((ops.len().max(1), 1));
    let adapter = machine.adapter.as_deref().unwrap_or("no GPU adapter");
    for (panel, op) in panels.iter().zip(&ops) {
        let op_rows: Vec<&Row> = rows.iter().filter(|r| r.op == *op).collect();
        // Decompositions plot seconds (lower is better), the others their rate.
        let gf = |r: &Row| {
            if r.is_time_only() {
                r.median_s
            } else {
                r.rate(r.median_s)
            }
        };
        let (xmin, xmax) = op_rows.iter().fold((f64::MAX, f64::MIN), |(a, b), r| {
            (a.min(r.size), b.max(r.size))
        });
        let (ymin, ymax) = op_rows.iter().fold((f64::MAX, f64::MIN), |(a, b), r| {
            (a.min(gf(r)), b.max(gf(r)))
        });
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!(
                    "{op}: {adapter} vs {} ({} threads)",
                    machine.cpu, machine.threads
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (xmin / 1.3..xmax * 1.3).log_scale(),
                (ymin / 2.0..ymax * 2.0).log_scale(),
            )
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc(match *op {
                "conv2d" => "layer work (MFLOP)",
                "matmul" => "size (n; m·k·n for non-square shapes)",
                "reduce" => "elements summed",
                "svd" | "qr" => "size ((m·n·min(m, n))^(1/3))",
                "eigh" => "n",
                "svd-batched" => "matrices",
                _ => "size",
            })
            .y_desc(if op_rows.first().is_some_and(|r| r.is_bandwidth()) {
                "GB/s (bytes read, resident data)"
            } else if op_rows.first().is_some_and(|r| r.is_time_only()) {
                "seconds (resident data, lower is better)"
            } else {
                "GFLOP/s (resident data)"
            })
            .draw()
            .map_err(&err)?;
        let mut labels: Vec<&str> = Vec::new();
        for r in &op_rows {
            if !labels.contains(&r.label.as_str()) {
                labels.push(&r.label);
            }
        }
        for (i, label) in labels.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let mut pts: Vec<(f64, f64)> = op_rows
                .iter()
                .filter(|r| r.label == *label)
                .map(|r| (r.size, gf(r)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(&err)?
                .label(*label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
                .map_err(&err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(&err)?;
    }
    Ok(())
}
