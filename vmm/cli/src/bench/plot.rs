//! `ferry bench --plot DIR`: the three plots of issue 4, each as SVG and PNG,
//! drawn with `plotters` from the [`BenchReport`] alone.
//!
//! Text needs a font. Rather than depend on fontconfig and the system's
//! fonts (absent on many build and CI machines), the PNG rasteriser uses
//! DejaVu Sans, embedded from `vmm/assets/fonts/` (free licence, see
//! `DejaVuSans-LICENSE` there) and registered with plotters' `ab_glyph`
//! backend; the SVGs name the font family and let the viewer choose.

use super::json::BenchOutputError;
use super::report::{BenchReport, Group, Mode};
use super::table::mode_name;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// DejaVu Sans (Bitstream Vera licence), so PNG text never depends on the host.
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Family name the plots ask for.
const FAMILY: &str = "sans-serif";

/// Size of every plot in pixels.
const SIZE: (u32, u32) = (1000, 620);

/// Register the embedded font once per process.
fn ensure_font() -> Result<(), BenchOutputError> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(BenchOutputError::Font)
    }
}

/// How values along one axis are placed and labelled.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scale {
    /// Evenly.
    Linear,
    /// log2, labelled as byte sizes.
    Log2Bytes,
    /// log10, labelled as plain numbers.
    Log10,
}

impl Scale {
    /// Value → plotted coordinate.
    fn to_axis(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Log2Bytes => v.log2(),
            Scale::Log10 => v.log10(),
        }
    }

    /// Plotted coordinate → label.
    fn label(self, x: f64) -> String {
        match self {
            Scale::Linear => trim_number(x),
            Scale::Log2Bytes => fmt_bytes(x.exp2()),
            Scale::Log10 => trim_number(10f64.powf(x)),
        }
    }
}

/// A number with as many digits as it needs (at most three significant
/// after the point).
fn trim_number(v: f64) -> String {
    let s = if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Bytes as "8 B", "4 KiB", "1 MiB" (rounded to the nearest power of two
/// when within rounding error, as axis ticks are).
fn fmt_bytes(b: f64) -> String {
    let b = b.round();
    if b >= 1024.0 * 1024.0 {
        format!("{} MiB", trim_number(b / (1024.0 * 1024.0)))
    } else if b >= 1024.0 {
        format!("{} KiB", trim_number(b / 1024.0))
    } else {
        format!("{} B", trim_number(b))
    }
}

/// One line of a plot.
#[derive(Clone, Debug, PartialEq)]
struct Series {
    /// Legend text.
    label: String,
    /// Mode: picks the colour, the same in every plot.
    mode: Mode,
    /// 0, 1, 2…: shade and marker within a mode (direction of a copy).
    variant: usize,
    /// Points in data units (not yet scaled), sorted by x.
    points: Vec<(f64, f64)>,
}

/// Everything needed to draw one plot.
#[derive(Clone, Debug)]
struct PlotSpec {
    /// File stem.
    stem: &'static str,
    /// Title.
    title: String,
    /// X axis description.
    x_desc: String,
    /// Y axis description.
    y_desc: String,
    /// X placement.
    x_scale: Scale,
    /// Y placement.
    y_scale: Scale,
    /// Whether to draw a marker at every point (not for CDFs).
    markers: bool,
    /// The lines.
    series: Vec<Series>,
}

/// Time unit of the plots: µs if the TSC rate is known, else cycles.
fn time_of(report: &BenchReport, cycles: u64) -> f64 {
    report.ns(cycles).map_or(cycles as f64, |ns| ns / 1000.0)
}

/// Axis name for times.
fn time_unit(report: &BenchReport) -> &'static str {
    if report.ns(1).is_some() {
        "µs"
    } else {
        "TSC cycles"
    }
}

/// Keep finite points with positive coordinates (log axes need them),
/// sorted by x; drop series left empty.
fn clean(series: impl IntoIterator<Item = Series>, positive_x: bool) -> Vec<Series> {
    series
        .into_iter()
        .filter_map(|mut s| {
            s.points.retain(|&(x, y)| {
                x.is_finite() && y.is_finite() && y > 0.0 && (!positive_x || x > 0.0)
            });
            s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (!s.points.is_empty()).then_some(s)
        })
        .collect()
}

/// A mode and its points, while series are being grouped.
type Line = (Mode, Vec<(f64, f64)>);

/// p50 vs object size, one line per (mode, direction).
fn latency_vs_size(report: &BenchReport) -> Option<PlotSpec> {
    // Keyed by (mode rank, direction index, direction) so legends list
    // migrate before message and IN, OUT, INOUT in that order.
    let mut lines: BTreeMap<(u8, usize, &str), Line> = BTreeMap::new();
    for f in report.figures.iter().filter(|f| f.group == Group::Size) {
        let Some(bytes) = f.param else { continue };
        let dir = f.dir.unwrap_or("?");
        let variant = ["in", "out", "inout"]
            .iter()
            .position(|d| *d == dir)
            .unwrap_or(3);
        lines
            .entry((mode_rank(f.mode), variant, dir))
            .or_insert_with(|| (f.mode, Vec::new()))
            .1
            .push((bytes as f64, time_of(report, f.stats.p50)));
    }
    let series = clean(
        lines
            .into_iter()
            .map(|((_, variant, dir), (mode, points))| Series {
                label: format!("{} {}", mode_name(mode), dir.to_uppercase()),
                mode,
                variant,
                points,
            }),
        true,
    );
    if series.is_empty() {
        return None;
    }
    let y_scale = if wide(&series, |p| p.1) {
        Scale::Log10
    } else {
        Scale::Linear
    };
    Some(PlotSpec {
        stem: "latency_vs_size",
        title: "Call+return latency vs argument size (p50)".to_string(),
        x_desc: "object size".to_string(),
        y_desc: format!("p50 call+return, {}", time_unit(report)),
        x_scale: Scale::Log2Bytes,
        y_scale,
        markers: true,
        series,
    })
}

/// CDF of the null call per mode, plus the baselines that carry a CDF.
fn null_cdf(report: &BenchReport) -> Option<PlotSpec> {
    let series = clean(
        report
            .figures
            .iter()
            .filter(|f| matches!(f.group, Group::Null | Group::Baseline) && !f.cdf.is_empty())
            .map(|f| {
                let label = match f.group {
                    Group::Null => format!("null call, {}", mode_name(f.mode)),
                    _ => match f.mode {
                        Mode::Floor => "floor (1 exit)".to_string(),
                        m => mode_name(m).to_string(),
                    },
                };
                Series {
                    label,
                    mode: f.mode,
                    variant: 0,
                    points: f
                        .cdf
                        .iter()
                        .map(|&(q, c)| (time_of(report, c), q))
                        .collect(),
                }
            }),
        true,
    );
    if series.is_empty() {
        return None;
    }
    let x_scale = if wide(&series, |p| p.0) {
        Scale::Log10
    } else {
        Scale::Linear
    };
    Some(PlotSpec {
        stem: "null_cdf",
        title: "Null call+return: latency CDF per mode".to_string(),
        x_desc: format!("latency, {}", time_unit(report)),
        y_desc: "quantile".to_string(),
        x_scale,
        y_scale: Scale::Linear,
        markers: false,
        series,
    })
}

/// Time per hop vs nesting depth, per mode.
fn hop_vs_depth(report: &BenchReport) -> Option<PlotSpec> {
    let mut lines: BTreeMap<u8, Line> = BTreeMap::new();
    for f in report.figures.iter().filter(|f| f.group == Group::Depth) {
        let Some(depth) = f.param else { continue };
        lines
            .entry(mode_rank(f.mode))
            .or_insert_with(|| (f.mode, Vec::new()))
            .1
            .push((depth as f64, time_of(report, f.stats.p50)));
    }
    let series = clean(
        lines.into_iter().map(|(_, (mode, points))| Series {
            label: mode_name(mode).to_string(),
            mode,
            variant: 0,
            points,
        }),
        true,
    );
    if series.is_empty() {
        return None;
    }
    Some(PlotSpec {
        stem: "hop_vs_depth",
        title: "Time per hop vs nesting depth (p50)".to_string(),
        x_desc: "depth (hops)".to_string(),
        y_desc: format!("p50 per hop, {}", time_unit(report)),
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        markers: true,
        series,
    })
}

/// Whether the values span more than a factor of 20 (then a log axis
/// shows them better).
fn wide(series: &[Series], pick: impl Fn(&(f64, f64)) -> f64) -> bool {
    let (lo, hi) = bounds(series.iter().flat_map(|s| s.points.iter().map(&pick)));
    lo > 0.0 && hi / lo > 20.0
}

/// Smallest and largest of `values` (`(inf, -inf)` if none).
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// An axis range around `lo..hi` (already scaled) with a little margin.
fn padded(lo: f64, hi: f64, scale: Scale, from_zero: bool) -> std::ops::Range<f64> {
    if !lo.is_finite() || !hi.is_finite() {
        return 0.0..1.0;
    }
    match scale {
        Scale::Log2Bytes => (lo.floor() - 0.3)..(hi.ceil() + 0.3),
        Scale::Log10 => {
            let span = (hi - lo).max(0.1);
            (lo - span * 0.05)..(hi + span * 0.05)
        }
        Scale::Linear => {
            let lo = if from_zero { lo.min(0.0) } else { lo };
            let span = (hi - lo).max(hi.abs() * 0.1).max(1e-9);
            let start = if from_zero { lo } else { lo - span * 0.05 };
            start..(hi + span * 0.08)
        }
    }
}

/// Order of modes in legends: Ferry's two modes first, then the baselines.
fn mode_rank(mode: Mode) -> u8 {
    match mode {
        Mode::Migrate => 0,
        Mode::Message => 1,
        Mode::Floor => 2,
        Mode::PipePinned => 3,
        Mode::PipeUnpinned => 4,
        Mode::Function => 5,
        Mode::Vmm => 6,
        Mode::Raw => 7,
        Mode::Typed => 8,
    }
}

/// One colour per mode in every plot; variants (copy directions) are
/// darker or lighter shades of it.
fn series_color(mode: Mode, variant: usize) -> RGBColor {
    let (r, g, b) = match mode {
        Mode::Migrate => (31, 119, 180),
        Mode::Message => (230, 110, 10),
        Mode::Floor => (90, 90, 90),
        Mode::PipePinned => (44, 160, 44),
        Mode::PipeUnpinned => (150, 170, 40),
        Mode::Function => (148, 103, 189),
        Mode::Vmm => (140, 86, 75),
        Mode::Raw => (23, 190, 207),
        Mode::Typed => (214, 39, 40),
    };
    let shade = |c: u8| -> u8 {
        match variant % 3 {
            0 => c,
            1 => c / 2,
            _ => c + (255 - c) / 2,
        }
    };
    RGBColor(shade(r), shade(g), shade(b))
}

/// Outline of a point marker centred on `(x, y)` in pixels: a circle-like
/// octagon, a triangle or a square by `variant`, so copy directions stay
/// apart even where their lines overlap.
fn marker(x: i32, y: i32, variant: usize) -> Vec<(i32, i32)> {
    match variant % 3 {
        0 => vec![
            (x - 2, y - 4),
            (x + 2, y - 4),
            (x + 4, y - 2),
            (x + 4, y + 2),
            (x + 2, y + 4),
            (x - 2, y + 4),
            (x - 4, y + 2),
            (x - 4, y - 2),
        ],
        1 => vec![(x, y - 5), (x + 5, y + 4), (x - 5, y + 4)],
        _ => vec![
            (x - 4, y - 4),
            (x + 4, y - 4),
            (x + 4, y + 4),
            (x - 4, y + 4),
        ],
    }
}

/// Draw `spec` on `root`.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    spec: &PlotSpec,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (xs, ys) = (spec.x_scale, spec.y_scale);
    let scaled: Vec<Vec<(f64, f64)>> = spec
        .series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .map(|&(x, y)| (xs.to_axis(x), ys.to_axis(y)))
                .collect()
        })
        .collect();
    let (x_lo, x_hi) = bounds(scaled.iter().flatten().map(|p| p.0));
    let (y_lo, y_hi) = bounds(scaled.iter().flatten().map(|p| p.1));
    let x_range = padded(x_lo, x_hi, xs, false);
    let y_range = if spec.stem == "null_cdf" {
        0.0..1.02
    } else {
        padded(y_lo, y_hi, ys, ys == Scale::Linear)
    };
    let x_ticks = match xs {
        // One tick per power of two.
        Scale::Log2Bytes => {
            let span = (x_range.end - x_range.start).ceil().clamp(2.0, 24.0);
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "clamped to 2..=24 just above"
            )]
            let ticks = span as usize;
            // More than 18 powers (the `--stacks` plots: 8 B … 16 MiB):
            // one tick per two, or the labels run into each other.
            if ticks > 18 {
                ticks.div_ceil(2)
            } else {
                ticks
            }
        }
        Scale::Linear if spec.stem == "hop_vs_depth" => 16,
        _ => 10,
    };

    let mut chart = ChartBuilder::on(root)
        .caption(&spec.title, (FAMILY, 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x_range, y_range)?;
    let x_fmt = |x: &f64| xs.label(*x);
    let y_fmt = |y: &f64| ys.label(*y);
    chart
        .configure_mesh()
        .x_desc(spec.x_desc.as_str())
        .y_desc(spec.y_desc.as_str())
        .x_labels(x_ticks)
        .y_labels(10)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;

    for (s, pts) in spec.series.iter().zip(&scaled) {
        let color = series_color(s.mode, s.variant);
        let line = ShapeStyle::from(color).stroke_width(2);
        let fill = ShapeStyle::from(color).filled();
        let variant = s.variant;
        let anno = chart
            .draw_series(LineSeries::new(pts.iter().copied(), line))?
            .label(s.label.as_str());
        if spec.markers {
            anno.legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (20, 0)], line)
                    + Polygon::new(marker(10, 0, variant), fill)
            });
            chart.draw_series(
                pts.iter()
                    .map(|&p| EmptyElement::at(p) + Polygon::new(marker(0, 0, variant), fill)),
            )?;
        } else {
            anno.legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line));
        }
    }
    chart
        .configure_series_labels()
        .position(if spec.stem == "null_cdf" {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperLeft
        })
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()
}

/// Write `spec` as `<dir>/<stem>.svg` and `.png`; returns both paths.
fn render(spec: &PlotSpec, dir: &Path) -> Result<[PathBuf; 2], BenchOutputError> {
    let boxed = |path: &Path| {
        let path = path.to_path_buf();
        move |e: Box<dyn std::error::Error + Send + Sync>| BenchOutputError::Plot {
            path,
            source: e,
        }
    };
    let svg = dir.join(format!("{}.svg", spec.stem));
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&root, spec).map_err(|e| boxed(&svg)(Box::new(e)))?;
    }
    let png = dir.join(format!("{}.png", spec.stem));
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(&root, spec).map_err(|e| boxed(&png)(Box::new(e)))?;
    }
    Ok([svg, png])
}

/// Write the plots of issue 4 into `dir` (created if missing), each as SVG
/// and PNG: `latency_vs_size`, `null_cdf`, `hop_vs_depth`. A plot whose data
/// the report lacks is skipped, not an error. Returns the files written.
pub fn write_plots(report: &BenchReport, dir: &Path) -> Result<Vec<PathBuf>, BenchOutputError> {
    let specs: Vec<PlotSpec> = [
        latency_vs_size(report),
        null_cdf(report),
        hop_vs_depth(report),
    ]
    .into_iter()
    .flatten()
    .collect();
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    prepare(dir)?;
    let mut written = Vec::with_capacity(specs.len() * 2);
    for spec in &specs {
        written.extend(render(spec, dir)?);
    }
    Ok(written)
}

/// Create `dir` if missing and load the plots' font.
fn prepare(dir: &Path) -> Result<(), BenchOutputError> {
    std::fs::create_dir_all(dir).map_err(|source| BenchOutputError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    ensure_font()
}

/// Write the `--scale` plots into `dir` (created if missing), SVG and PNG
/// each, one per figure against the domain count on a log axis:
/// `scale_boot_rate`, `scale_resident`, `scale_null_ratio`, `scale_restart`.
/// A run with no rows writes nothing.
pub fn write_scale_plots(
    report: &super::scale::ScaleReport,
    dir: &Path,
) -> Result<Vec<PathBuf>, BenchOutputError> {
    type Pick = fn(&super::scale::ScaleRow) -> f64;
    let figures: [(&'static str, &str, &str, Pick); 4] = [
        (
            "scale_boot_rate",
            "Domains booted per second",
            "domains / s",
            |r| r.domains_per_s,
        ),
        (
            "scale_resident",
            "Resident memory per domain",
            "KiB per domain",
            |r| r.resident_kib_per_domain,
        ),
        (
            "scale_null_ratio",
            "Null call into a random domain, ratio to the exit floor",
            "p50 / floor p50",
            |r| r.ratio,
        ),
        (
            "scale_restart",
            "Restart of a faulted domain (fault to running again)",
            "µs (median)",
            |r| r.restart_us,
        ),
    ];
    if report.rows.is_empty() {
        return Ok(Vec::new());
    }
    prepare(dir)?;
    let mut written = Vec::with_capacity(figures.len() * 2);
    for (stem, title, y_desc, pick) in figures {
        let series = clean(
            [Series {
                label: title.to_owned(),
                mode: Mode::Migrate,
                variant: 0,
                points: report
                    .rows
                    .iter()
                    .map(|r| (r.domains as f64, pick(r)))
                    .collect(),
            }],
            true,
        );
        if series.is_empty() {
            continue;
        }
        let spec = PlotSpec {
            stem,
            title: title.to_owned(),
            x_desc: "domains (N)".into(),
            y_desc: y_desc.to_owned(),
            x_scale: Scale::Log10,
            y_scale: Scale::Linear,
            markers: true,
            series,
        };
        written.extend(render(&spec, dir)?);
    }
    Ok(written)
}

/// Write the `--stacks` plots into `dir` (created if missing), SVG and PNG
/// each, one line per strategy against the object size, both axes
/// logarithmic: `stacks_latency_vs_size` (p50 µs) and `stacks_ratio_vs_size`
/// (median ratio to the floor over rounds). A run with no points writes
/// nothing. (No error bars: the intervals are in the table and the JSON.)
pub fn write_stacks_plots(
    report: &super::stacks::StacksReport,
    dir: &Path,
) -> Result<Vec<PathBuf>, BenchOutputError> {
    use super::stacks::Strategy;
    let colour = |s: Strategy| match s {
        Strategy::PoolCopy => Mode::Migrate,
        Strategy::PoolLease => Mode::Raw,
        Strategy::Premapped => Mode::Typed,
        Strategy::OnCall => Mode::PipePinned,
        Strategy::Message => Mode::Message,
    };
    let us = |c: u64| {
        if report.tsc_khz > 0 {
            c as f64 * 1e3 / f64::from(report.tsc_khz)
        } else {
            c as f64
        }
    };
    type Pick<'a> = &'a dyn Fn(&super::stacks::Point) -> f64;
    let p50: Pick = &|p| us(p.stats.p50);
    let ratio: Pick = &|p| p.ratio.median;
    let time_desc = if report.tsc_khz > 0 {
        "µs (p50)"
    } else {
        "TSC cycles (p50)"
    };
    let figures: [(&'static str, &str, &str, Pick); 2] = [
        (
            "stacks_latency_vs_size",
            "Call+return with one INOUT object, by stack strategy",
            time_desc,
            p50,
        ),
        (
            "stacks_ratio_vs_size",
            "Ratio to 2 exit floors (median over rounds)",
            "p50 / (2 × floor p50)",
            ratio,
        ),
    ];
    if report.sizes.is_empty() {
        return Ok(Vec::new());
    }
    prepare(dir)?;
    let mut written = Vec::new();
    for (stem, title, y_desc, pick) in figures {
        let series = clean(
            Strategy::ALL.iter().map(|&s| Series {
                label: s.name().to_owned(),
                mode: colour(s),
                variant: 0,
                points: report
                    .sizes
                    .iter()
                    .filter(|p| p.strategy == s)
                    .map(|p| (p.bytes as f64, pick(p)))
                    .collect(),
            }),
            true,
        );
        if series.is_empty() {
            continue;
        }
        let spec = PlotSpec {
            stem,
            title: title.to_owned(),
            x_desc: "object size".into(),
            y_desc: y_desc.to_owned(),
            x_scale: Scale::Log2Bytes,
            y_scale: Scale::Log10,
            markers: true,
            series,
        };
        written.extend(render(&spec, dir)?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::table::tests::synthetic_report;

    fn check_svg(path: &Path) {
        let text = std::fs::read_to_string(path).unwrap();
        let head = text.trim_start();
        assert!(
            head.starts_with("<svg") || head.starts_with("<?xml"),
            "{path:?}"
        );
        assert!(text.trim_end().ends_with("</svg>"), "{path:?}");
        assert!(text.contains("<text"), "no text in {path:?}");
        // Tags balance: a cheap well-formedness check.
        let opens = text.matches("<text").count();
        assert_eq!(opens, text.matches("</text>").count());
    }

    fn check_png(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{path:?}");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), SIZE);
        // Not a blank page: some pixels are not white.
        assert!(buf.iter().any(|&b| b < 128), "{path:?} is blank");
    }

    #[test]
    fn plots_are_written_as_valid_svg_and_png() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plots");
        let files = write_plots(&synthetic_report(), &out).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for stem in ["latency_vs_size", "null_cdf", "hop_vs_depth"] {
            assert!(names.contains(&format!("{stem}.svg")), "{names:?}");
            assert!(names.contains(&format!("{stem}.png")), "{names:?}");
        }
        for f in &files {
            assert!(f.exists());
            match f.extension().and_then(|e| e.to_str()) {
                Some("svg") => check_svg(f),
                Some("png") => check_png(f),
                other => panic!("unexpected {other:?}"),
            }
        }
        if let Some(keep) = std::env::var_os("FERRY_KEEP_PLOTS") {
            for f in &files {
                std::fs::copy(f, Path::new(&keep).join(f.file_name().unwrap())).unwrap();
            }
        }
    }

    #[test]
    fn missing_data_skips_plots() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = synthetic_report();
        r.figures.retain(|f| f.group == Group::Depth);
        let files = write_plots(&r, dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        r.figures.clear();
        assert!(write_plots(&r, dir.path()).unwrap().is_empty());
    }

    #[test]
    fn unknown_tsc_plots_cycles() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = synthetic_report();
        r.machine.tsc_khz = 0;
        let files = write_plots(&r, dir.path()).unwrap();
        assert_eq!(files.len(), 6);
        let svg = std::fs::read_to_string(dir.path().join("hop_vs_depth.svg")).unwrap();
        assert!(svg.contains("TSC cycles"));
    }

    #[test]
    fn size_series_group_by_mode_and_direction() {
        let spec = latency_vs_size(&synthetic_report()).unwrap();
        assert_eq!(spec.series.len(), 6);
        assert!(spec.series.iter().all(|s| s.points.len() == 6));
        assert!(spec.series.iter().any(|s| s.label == "migrate INOUT"));
        assert_eq!(fmt_bytes(8.0), "8 B");
        assert_eq!(fmt_bytes(65536.0), "64 KiB");
        assert_eq!(fmt_bytes(1048576.0), "1 MiB");
        assert_eq!(Scale::Log2Bytes.label(12.0), "4 KiB");
        assert_eq!(trim_number(2.50), "2.5");
    }
}
