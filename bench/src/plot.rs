//! The B3 plot: pool size over time, one line per policy (SVG).

use plotters::prelude::*;
use std::path::Path;

/// One line of the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// `(seconds, pool size)` points.
    pub points: Vec<(f64, f64)>,
}

/// The y range of a log-scale plot of `series`: from 1 to a little above
/// the largest value (at least 10).
pub fn y_range(series: &[Series]) -> (f64, f64) {
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max);
    (1.0, (max * 2.0).max(10.0))
}

/// Writes `series` as an SVG line chart (log-scale y) to `path`, with a
/// thin dashed horizontal line for each `(label, y)` in `marks` (caps).
/// The first series is drawn last and thickest, so it stays visible when
/// another line lies on top of it.
pub fn pool_size_svg(
    path: &Path,
    title: &str,
    series: &[Series],
    marks: &[(String, f64)],
) -> Result<(), Box<dyn std::error::Error>> {
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.01f64, f64::max);
    let (y_min, y_max) = y_range(series);
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("send contexts allocated (log)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (label, y) in marks {
        let grey = BLACK.mix(0.5);
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, *y), (x_max, *y)],
                6,
                4,
                grey.stroke_width(1),
            ))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    }
    let colors = [RED, BLUE, GREEN, MAGENTA, BLACK];
    for (i, s) in series.iter().enumerate().rev() {
        let color = colors[i % colors.len()];
        let width = if i == 0 { 4 } else { 2 };
        // Log scale: keep points at or above 1.
        let pts = s.points.iter().map(|&(x, y)| (x, y.max(y_min)));
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(width)))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn y_range_covers_the_data_with_room() {
        let s = vec![Series {
            label: "a".into(),
            points: vec![(0.0, 0.0), (1.0, 500.0)],
        }];
        assert_eq!(y_range(&s), (1.0, 1000.0));
        assert_eq!(y_range(&[]), (1.0, 10.0));
    }

    #[test]
    fn writes_an_svg() {
        let dir = std::env::temp_dir().join(format!("rdmaxprt-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.svg");
        let s = vec![Series {
            label: "deferred".into(),
            points: vec![(0.0, 1.0), (0.5, 192.0), (1.0, 192.0)],
        }];
        pool_size_svg(&path, "t", &s, &[("cap".into(), 192.0)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg") && svg.contains("deferred"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
