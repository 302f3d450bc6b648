//! The SVG chart: keel/hand-written time ratio per step, one bar per
//! backend and mode, on a log scale with parity (1.0) marked. The HTTP
//! steps are there too, as time per request (hand-written req/s over
//! keel's), in async mode: keel serve runs on keel-repo's async mode.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::http::{HttpResult, HttpStep};
use crate::report::StepResult;
use crate::steps::{Backend, Mode, Step};

/// The bar series, in legend order, with their colours.
const SERIES: [(Backend, Mode, RGBColor); 4] = [
    (Backend::Sqlite, Mode::Sync, RGBColor(66, 133, 244)),
    (Backend::Sqlite, Mode::Async, RGBColor(140, 190, 255)),
    (Backend::Postgres, Mode::Sync, RGBColor(230, 120, 20)),
    (Backend::Postgres, Mode::Async, RGBColor(250, 190, 110)),
];

/// One bar: a step's ratio for one backend and mode.
struct Bar {
    step: &'static str,
    backend: Backend,
    mode: Mode,
    ratio: f64,
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::B1 => "B1 bulk insert",
        Step::B2 => "B2 eager load",
        Step::B3 => "B3 N+1",
        Step::B4 => "B4 lookups",
        Step::B5 => "B5 join",
        Step::B6 => "B6 async x64",
        Step::B7 => "B7 COPY",
    }
}

/// The bars of `results` (B steps, in step order) and `http` (H1, H2).
fn bars(results: &[StepResult], http: &[HttpResult]) -> Vec<Bar> {
    let mut sorted: Vec<&StepResult> = results.iter().filter(|r| r.ratio.is_some()).collect();
    sorted.sort_by_key(|r| r.step);
    let steps = sorted.into_iter().filter_map(|r| {
        Some(Bar {
            step: step_name(r.step),
            backend: r.backend,
            mode: r.mode,
            ratio: r.ratio?,
        })
    });
    let requests = http.iter().filter(|r| r.ratio > 0.0).map(|r| Bar {
        step: match r.step {
            HttpStep::H1 => "H1 HTTP get",
            HttpStep::H2 => "H2 HTTP include",
        },
        backend: if r.backend == "postgres" {
            Backend::Postgres
        } else {
            Backend::Sqlite
        },
        mode: Mode::Async,
        ratio: 1.0 / r.ratio,
    });
    steps.chain(requests).collect()
}

/// Writes the chart of `results`' and `http`'s ratios to `path`. `subtitle`
/// says what ran.
pub fn write_ratio_chart(
    path: &Path,
    results: &[StepResult],
    http: &[HttpResult],
    subtitle: &str,
) -> anyhow::Result<()> {
    let bars = bars(results, http);
    let mut names: Vec<&'static str> = Vec::new();
    for bar in &bars {
        if !names.contains(&bar.step) {
            names.push(bar.step);
        }
    }
    let ratios: Vec<f64> = bars.iter().map(|b| b.ratio).collect();
    let lowest = ratios.iter().copied().fold(0.5_f64, f64::min) * 0.8;
    let highest = ratios.iter().copied().fold(2.0_f64, f64::max) * 1.25;

    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!("keel / hand-written time per step (lower is better) - {subtitle}");
    let slots = names.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5_f64..slots - 0.5, (lowest..highest).log_scale())?;

    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len().max(1))
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
        let placed: Vec<(f64, f64)> = bars
            .iter()
            .filter(|b| b.backend == backend && b.mode == mode)
            .filter_map(|b| {
                let slot = names.iter().position(|n| *n == b.step)? as f64;
                Some((slot - 0.4 + index as f64 * width, b.ratio))
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
