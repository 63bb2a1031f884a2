//! The sweep's picture (issue "Performance"): seconds against N, Otter beside its references,
//! drawn by plotters into a buffer and written as PNG. Text uses a font shipped in this crate
//! (DejaVu Sans, `assets/`), so a fresh machine without fonts or fontconfig draws the same.

use anyhow::{Result, anyhow};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::register_font;
use std::path::Path;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 800);

/// One line of the plot: (N, seconds) points; references are drawn dashed.
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub dashed: bool,
}

/// Draws `lines` (x = N, y = seconds on a log scale: end to end and fan-out differ by orders of
/// magnitude) and writes the PNG to `path`.
pub fn write_png(path: &Path, title: &str, lines: &[Line]) -> Result<()> {
    register_font(FAMILY, FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the embedded font is not a valid TrueType font"))?;
    let (w, h) = SIZE;
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    draw(&mut rgb, title, lines)?;
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&rgb)?;
    writer.finish()?;
    Ok(())
}

fn draw(rgb: &mut [u8], title: &str, lines: &[Line]) -> Result<()> {
    let root = BitMapBackend::with_buffer(rgb, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (x_max, y_min, y_max) = extent(lines);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 28))
        .margin(24)
        .x_label_area_size(70)
        .y_label_area_size(100)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("devices (N)")
        .y_desc("seconds (log scale)")
        .axis_desc_style((FAMILY, 22))
        .label_style((FAMILY, 18))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| seconds(*y))
        .draw()?;
    for line in lines {
        let style = line.color.stroke_width(3);
        let points = line.points.iter().copied().filter(|p| p.1.is_finite());
        let anno = if line.dashed {
            chart
                .draw_series(DashedLineSeries::new(points, 14, 8, style))?
                .legend(move |(x, y)| DashedPathElement::new([(x, y), (x + 36, y)], 8, 5, style))
        } else {
            chart
                .draw_series(LineSeries::new(points, style))?
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 36, y)], style))
        };
        anno.label(line.label.as_str());
        let marks = line.points.iter().filter(|p| p.1.is_finite());
        chart.draw_series(marks.map(|&p| Circle::new(p, 5, line.color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .margin(16)
        .legend_area_size(44)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FAMILY, 20))
        .draw()?;
    root.present()?;
    Ok(())
}

/// The axes' ranges: x from 0 past the largest N, y a decade-ish around the finite values.
fn extent(lines: &[Line]) -> (f64, f64, f64) {
    let points = lines.iter().flat_map(|l| l.points.iter());
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let ys = points.map(|p| p.1).filter(|y| y.is_finite() && *y > 0.0);
    let (lo, hi) = ys.fold((f64::INFINITY, 0.0f64), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    if hi <= 0.0 {
        return (x_max, 0.01, 10.0);
    }
    (x_max, lo / 2.0, hi * 2.0)
}

fn seconds(y: f64) -> String {
    if y >= 1.0 {
        format!("{y:.0} s")
    } else if y >= 0.1 {
        format!("{y:.1} s")
    } else if y >= 0.01 {
        format!("{y:.2} s")
    } else {
        format!("{:.1} ms", y * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        let line = |label: &str, k: f64, dashed| Line {
            label: label.into(),
            points: [1000.0, 5000.0, 19000.0].map(|n| (n, n * k)).to_vec(),
            color: BLUE,
            dashed,
        };
        let lines = [line("a", 0.001, false), line("b", 0.0001, true)];
        write_png(&path, "test", &lines).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.get(..8), Some(&b"\x89PNG\r\n\x1a\n"[..]));
        assert!(
            bytes.len() > 10_000,
            "a plot with text: {} bytes",
            bytes.len()
        );
    }

    #[test]
    fn extent_ignores_failed_points() {
        let l = Line {
            label: String::new(),
            points: vec![(100.0, f64::NAN), (200.0, 4.0), (50.0, 0.5)],
            color: RED,
            dashed: false,
        };
        assert_eq!(extent(&[l]), (210.0, 0.25, 8.0));
    }
}
