//! `outgate bench --plot FILE.svg`: packets/s against workers, the median joined by a line, each
//! count's range of runs as an error bar around its median's dot. The counts are spaced evenly (1, 2, 4, ... as steps), each
//! labelled with its number.

use std::path::Path;

use plotters::prelude::*;

use super::Sweep;

pub fn draw(path: &Path, sweep: &Sweep) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    // A segmented 0..n has n + 1 slots.
    let slots = sweep.rows.len().max(1) as i32;
    let at = |i: usize| SegmentValue::CenterOf(i as i32);
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
        .build_cartesian_2d(
            (0..slots - 1).into_segmented(),
            0.0..(top * 1.15).max(0.001),
        )
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("workers")
        .y_desc("million packets/s (median, min-max)")
        .x_labels(sweep.rows.len() + 1)
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => usize::try_from(*i)
                .ok()
                .and_then(|i| sweep.rows.get(i))
                .map_or_else(String::new, |r| r.workers.to_string()),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| err(&e))?;
    let medians: Vec<(SegmentValue<i32>, f64)> = sweep
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| (at(i), r.packets_per_second.median / 1e6))
        .collect();
    chart
        .draw_series(LineSeries::new(medians, BLUE.stroke_width(2)))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(sweep.rows.iter().enumerate().map(|(i, r)| {
            let s = r.packets_per_second;
            ErrorBar::new_vertical(
                at(i),
                s.min / 1e6,
                s.median / 1e6,
                s.max / 1e6,
                BLUE.filled(),
                10,
            )
        }))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
