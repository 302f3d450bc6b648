//! The SVG chart: keel/hand-written time ratio per step, one bar per
//! backend and mode, on a log scale with parity (1.0) marked.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::StepResult;
use crate::steps::{Backend, Mode, Step};

/// The bar series, in legend order, with their colours.
const SERIES: [(Backend, Mode, RGBColor); 4] = [
    (Backend::Sqlite, Mode::Sync, RGBColor(66, 133, 244)),
    (Backend::Sqlite, Mode::Async, RGBColor(140, 190, 255)),
    (Backend::Postgres, Mode::Sync, RGBColor(230, 120, 20)),
    (Backend::Postgres, Mode::Async, RGBColor(250, 190, 110)),
];

/// Writes the chart of `results`' ratios to `path`. `subtitle` says what ran.
pub fn write_ratio_chart(
    path: &Path,
    results: &[StepResult],
    subtitle: &str,
) -> anyhow::Result<()> {
    let mut steps: Vec<Step> = results
        .iter()
        .filter(|r| r.ratio.is_some())
        .map(|r| r.step)
        .collect();
    steps.sort();
    steps.dedup();
    let ratios: Vec<f64> = results.iter().filter_map(|r| r.ratio).collect();
    let lowest = ratios.iter().copied().fold(0.5_f64, f64::min) * 0.8;
    let highest = ratios.iter().copied().fold(2.0_f64, f64::max) * 1.25;

    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!("keel / hand-written time per step (lower is better) - {subtitle}");
    let slots = steps.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5_f64..slots - 0.5, (lowest..highest).log_scale())?;

    let names: Vec<&'static str> = steps
        .iter()
        .map(|s| match s {
            Step::B1 => "B1 bulk insert",
            Step::B2 => "B2 eager load",
            Step::B3 => "B3 N+1",
            Step::B4 => "B4 lookups",
            Step::B5 => "B5 join",
            Step::B6 => "B6 async x64",
            Step::B7 => "B7 COPY",
        })
        .collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(steps.len().max(1))
        .x_label_formatter(&|x| {
            let nearest = x.round();
            if (x - nearest).abs() > 0.01 || nearest < 0.0 {
                return String::new();
            }
            names
                .get(nearest as usize)
                .map_or_else(String::new, |n| (*n).to_owned())
        })
        .max_light_lines(0)
        .y_labels(12)
        .y_desc("ratio (log scale)")
        .y_label_formatter(&|y| {
            if *y >= 10.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .draw()?;

    let width = 0.8 / SERIES.len() as f64;
    for (index, (backend, mode, color)) in SERIES.into_iter().enumerate() {
        // (left edge, ratio) of each bar of this series.
        let placed: Vec<(f64, f64)> = results
            .iter()
            .filter(|r| r.backend == backend && r.mode == mode)
            .filter_map(|r| {
                let ratio = r.ratio?;
                let slot = steps.iter().position(|s| *s == r.step)? as f64;
                Some((slot - 0.4 + index as f64 * width, ratio))
            })
            .collect();
        if placed.is_empty() {
            continue;
        }
        let bars = placed.iter().map(|&(left, ratio)| {
            Rectangle::new(
                [(left, lowest), (left + width * 0.9, ratio)],
                color.filled(),
            )
        });
        let value_style = ("sans-serif", 10)
            .into_font()
            .into_text_style(&root)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        let values = placed.iter().map(|&(left, ratio)| {
            Text::new(
                format!("{ratio:.2}"),
                (left + width * 0.45, ratio * 1.02),
                value_style.clone(),
            )
        });
        chart
            .draw_series(bars)?
            .label(format!("{} {}", backend.name(), mode.name()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart.draw_series(values)?;
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(-0.5, 1.0), (slots - 0.5, 1.0)],
        BLACK.stroke_width(2),
    )))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
