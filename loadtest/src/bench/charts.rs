//! The PNG charts of docs/BENCHMARKS.md, drawn with plotters' bitmap backend
//! and the DejaVu Sans font embedded from the `dejavu` crate (no system fonts).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::Results;
use super::report::{keys_label, median, read_medians};

const BLUE: RGBColor = RGBColor(52, 101, 164);
const ORANGE: RGBColor = RGBColor(230, 126, 34);
const GREY: RGBColor = RGBColor(120, 120, 120);

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing a chart: {e}")
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

pub fn draw(out: &Path, r: &Results) -> Result<(), String> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "the embedded DejaVu Sans font does not load".to_owned())?;
    reads(&out.join("bench-reads.png"), r)?;
    writes(&out.join("bench-writes.png"), r)?;
    rss(&out.join("bench-rss.png"), r)?;
    Ok(())
}

fn reads(path: &Path, r: &Results) -> Result<(), String> {
    let root = BitMapBackend::new(path, (1700, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(820);
    let names: Vec<String> = r
        .reads
        .iter()
        .map(|read| read.target.chart_label().to_owned())
        .collect();
    let medians: Vec<(f64, f64, f64)> = r
        .reads
        .iter()
        .map(|read| read_medians(&read.runs))
        .collect();
    bars(
        &root,
        &left,
        &format!("Profile reads, {} connections: requests/s", r.connections),
        "requests/s (median)",
        &names,
        &[("requests/s", BLUE, medians.iter().map(|m| m.0).collect())],
        |v| format!("{v:.0}"),
    )?;
    bars(
        &root,
        &right,
        "Latency (ms)",
        "ms (median)",
        &names,
        &[
            ("p50", BLUE, medians.iter().map(|m| m.1).collect()),
            ("p99", ORANGE, medians.iter().map(|m| m.2).collect()),
        ],
        |v| format!("{v:.2}"),
    )?;
    root.present().map_err(err)
}

fn writes(path: &Path, r: &Results) -> Result<(), String> {
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let names: Vec<String> = r
        .writes
        .iter()
        .map(|w| format!("{} unrelated keys", keys_label(w.unrelated_keys)))
        .collect();
    let ms = |f: fn(&super::wrk::WrkResult) -> u64| -> Vec<f64> {
        r.writes
            .iter()
            .map(|w| median(w.runs.iter().map(|x| f(x) as f64 / 1000.0)))
            .collect()
    };
    bars(
        &root,
        &root,
        "PATCH /api/v1/users/{id} latency vs Redis keyspace",
        "ms (median)",
        &names,
        &[
            ("p50", BLUE, ms(|x| x.p50_us)),
            ("p99", ORANGE, ms(|x| x.p99_us)),
        ],
        |v| format!("{v:.2}"),
    )?;
    root.present().map_err(err)
}

fn rss(path: &Path, r: &Results) -> Result<(), String> {
    let root = BitMapBackend::new(path, (900, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let points: Vec<(f64, f64)> = r
        .rss_series
        .iter()
        .map(|(t, kib)| (*t, kib / 1024.0))
        .collect();
    let t_max = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points.iter().map(|p| p.1).fold(64.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "linkhub resident memory under the profiles load",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("VmRSS (MiB)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(points, BLUE.stroke_width(2)))
        .map_err(err)?
        .label("VmRSS")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, 64.0), (t_max, 64.0)],
            RED.stroke_width(1),
        ))
        .map_err(err)?
        .label("target: 64 MiB")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(1)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(GREY)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Grouped bars: one group per category, one bar per series, each bar with
/// its value above it and the category's name under the group.
fn bars(
    root: &Area<'_>,
    area: &Area<'_>,
    title: &str,
    y_desc: &str,
    categories: &[String],
    series: &[(&str, RGBColor, Vec<f64>)],
    fmt: fn(f64) -> String,
) -> Result<(), String> {
    let n = categories.len().max(1) as f64;
    let y_max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(2)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|v| {
            if y_max >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        })
        .y_desc(y_desc)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let width = 0.7 / series.len().max(1) as f64;
    let value_style =
        TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (s, (name, color, values)) in series.iter().enumerate() {
        let color = *color;
        let rects = values.iter().enumerate().map(move |(i, v)| {
            let x0 = i as f64 + 0.15 + s as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width * 0.95, *v)], color.filled())
        });
        let drawn = chart.draw_series(rects).map_err(err)?;
        if series.len() > 1 {
            drawn.label(*name).legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled())
            });
        }
        let labels = values.iter().enumerate().map(|(i, v)| {
            let x = i as f64 + 0.15 + (s as f64 + 0.5) * width;
            Text::new(fmt(*v), (x, *v), value_style.clone())
        });
        chart.draw_series(labels).map_err(err)?;
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(GREY)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(err)?;
    }
    let name_style =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, name) in categories.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        for (line_no, line) in name.lines().enumerate() {
            let y = py + 6 + 16 * line_no as i32;
            root.draw(&Text::new(line.to_owned(), (px, y), name_style.clone()))
                .map_err(err)?;
        }
    }
    Ok(())
}
