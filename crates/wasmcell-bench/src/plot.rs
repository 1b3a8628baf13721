//! `results/bench.png`: bar charts of the run's headline figures, one panel each, with the
//! value written on every bar. Text needs a TrueType font: `BENCH_FONT`, default Debian's
//! `fonts-dejavu-core` (`/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf`).

use std::path::Path;

use anyhow::{anyhow, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

/// Default font file (Debian package `fonts-dejavu-core`).
pub(crate) const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT: &str = "sans-serif";
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One bar chart: a title, the unit of its values and (label, value) bars.
#[derive(Debug)]
pub(crate) struct Panel {
    pub(crate) title: String,
    pub(crate) unit: String,
    pub(crate) bars: Vec<(String, f64)>,
}

/// Register the font once; fails when the file cannot be read or parsed.
fn register_font() -> anyhow::Result<()> {
    let path = std::env::var("BENCH_FONT").unwrap_or_else(|_| DEFAULT_FONT.to_string());
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "failed to read the font {path} (Debian package fonts-dejavu-core, or set BENCH_FONT)"
        )
    })?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{path} is not a TrueType font plotters can use"))
}

/// Draw `panels` in a grid of two columns into the PNG file `path`.
pub(crate) fn draw(path: &Path, title: &str, panels: &[Panel]) -> anyhow::Result<()> {
    register_font()?;
    let rows = panels.len().div_ceil(2).max(1);
    let root = BitMapBackend::new(path, (1600, 80 + 520 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (head, body) = root.split_vertically(80);
    head.draw(&Text::new(
        title.to_string(),
        (800, 40),
        (FONT, 28)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(|e| anyhow!("{e}"))?;
    let areas = body.split_evenly((rows, 2));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        bars(area, panel)?;
    }
    root.present()
        .map_err(|e| anyhow!("failed to write {}: {e}", path.display()))?;
    Ok(())
}

fn bars(area: &DrawingArea<BitMapBackend<'_>, Shift>, panel: &Panel) -> anyhow::Result<()> {
    let n = panel.bars.len().max(1) as u32;
    let top = panel
        .bars
        .iter()
        .map(|(_, v)| *v)
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.18;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        // Segments of `0..last` are 0..=last: one per bar.
        .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..top)
        .map_err(|e| anyhow!("{e}"))?;
    let labels: Vec<String> = panel.bars.iter().map(|(l, _)| l.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .y_desc(panel.unit.as_str())
        .x_labels(labels.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style((FONT, 17))
        .axis_desc_style((FONT, 18))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(panel.bars.iter().enumerate().map(|(i, (_, v))| {
            let i = i as u32;
            let color = COLORS[i as usize % COLORS.len()];
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *v),
                ],
                color.filled(),
            );
            bar.set_margin(0, 0, 18, 18);
            bar
        }))
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(panel.bars.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                format_value(*v),
                (SegmentValue::CenterOf(i as u32), *v),
                (FONT, 18)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A short name for a bar: `peer (containerd-shim-NAME-v1)` becomes `peer NAME`.
pub(crate) fn short(name: &str) -> String {
    for (prefix, label) in [
        ("peer (containerd-shim-", "peer"),
        ("peer artifact (containerd-shim-", "peer art."),
    ] {
        if let Some(peer) = name
            .strip_prefix(prefix)
            .and_then(|n| n.strip_suffix("-v1)"))
        {
            return format!("{label} {peer}");
        }
    }
    name.to_string()
}
