//! `outgate bench --plot FILE.svg`: packets/s against workers, the median joined by a line, each
//! count's range of runs as an error bar.

use std::path::Path;

use plotters::prelude::*;

use super::Sweep;

pub fn draw(path: &Path, sweep: &Sweep) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let max_workers = sweep.rows.iter().map(|r| r.workers).max().unwrap_or(1) as f64;
    let top = sweep
        .rows
        .iter()
        .map(|r| r.packets_per_second.max)
        .fold(0.0, f64::max)
        / 1e6;
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "outgate replay: packets/s by workers ({} cores)",
                sweep.cores
            ),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..max_workers + 0.5, 0.0..(top * 1.15).max(0.001))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("workers")
        .y_desc("million packets/s (median, min-max)")
        .x_labels(sweep.rows.len().max(2))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    let medians: Vec<(f64, f64)> = sweep
        .rows
        .iter()
        .map(|r| (r.workers as f64, r.packets_per_second.median / 1e6))
        .collect();
    chart
        .draw_series(LineSeries::new(medians.clone(), BLUE.stroke_width(2)))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(sweep.rows.iter().map(|r| {
            let s = r.packets_per_second;
            ErrorBar::new_vertical(
                r.workers as f64,
                s.min / 1e6,
                s.median / 1e6,
                s.max / 1e6,
                BLUE.filled(),
                10,
            )
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(
            medians
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 4, BLUE.filled())),
        )
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
