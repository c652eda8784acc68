//! Line charts drawn to SVG with plotters, shared by the examples that plot (`mlp_digits`,
//! `svd_compress`). Not an example itself; included with `#[path = "common/plot.rs"]`.

use plotters::coord::Shift;
use plotters::prelude::*;

/// One named curve: (x, y) points in drawing order.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart of a figure.
pub struct Panel<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    /// A logarithmic y axis (every y must then be positive; smaller ones are clamped to 1e-12).
    pub log_y: bool,
    pub series: &'a [Series],
}

/// Draws the panels side by side, each `size.0 / panels` wide, to the SVG file `path`.
pub fn draw_svg(path: &std::path::Path, size: (u32, u32), panels: &[Panel]) -> Result<(), String> {
    // Without a font plotters draws no text: the chart is then drawn without any.
    let text = gpu_linalg::cli::register_plot_font().is_ok();
    let root = SVGBackend::new(path, size).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(area, panel, text).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

/// The (min, max) of `values`, widened when they are all equal.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        (0.0, 1.0)
    } else if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    text: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let points = || panel.series.iter().flat_map(|s| s.points.iter().copied());
    let (x0, x1) = range(points().map(|p| p.0));
    let integral_x = points().all(|p| p.0.fract() == 0.0);
    let mut builder = ChartBuilder::on(area);
    builder.margin(20);
    if text {
        builder
            .caption(panel.title, ("sans-serif", 20))
            .x_label_area_size(40)
            .y_label_area_size(70);
    }
    let x_format = |v: &f64| {
        if integral_x {
            format!("{v:.0}")
        } else {
            format!("{v:.3}")
        }
    };
    if panel.log_y {
        let (y0, y1) = range(points().map(|p| p.1.max(1e-12)));
        let mut chart = builder.build_cartesian_2d(x0..x1, (y0 / 1.2..y1 * 1.2).log_scale())?;
        if text {
            chart
                .configure_mesh()
                .x_desc(panel.x_desc)
                .y_desc(panel.y_desc)
                .x_label_formatter(&x_format)
                .y_label_formatter(&|v| format!("{v:.1e}"))
                .draw()?;
        }
        draw_series(&mut chart, panel.series, text, |y| y.max(1e-12))
    } else {
        let (y0, y1) = range(points().map(|p| p.1));
        let pad = 0.05 * (y1 - y0);
        let mut chart = builder.build_cartesian_2d(x0..x1, y0 - pad..y1 + pad)?;
        if text {
            chart
                .configure_mesh()
                .x_desc(panel.x_desc)
                .y_desc(panel.y_desc)
                .x_label_formatter(&x_format)
                .draw()?;
        }
        draw_series(&mut chart, panel.series, text, |y| y)
    }
}

fn draw_series<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    series: &[Series],
    text: bool,
    map_y: impl Fn(f64) -> f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let drawn = chart.draw_series(LineSeries::new(
            s.points.iter().map(|&(x, y)| (x, map_y(y))),
            color.stroke_width(2),
        ))?;
        if text {
            drawn.label(s.name.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}
