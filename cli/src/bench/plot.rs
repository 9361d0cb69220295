//! What the benchmark plots share: readable tick and value labels (`100M`, not
//! `100000000.0`), logarithmic axes with their ticks on whole decades, and a legend drawn
//! in its own panel beside the chart (so it never covers a bar or a line).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// `v` rounded to 3 significant digits, with an SI suffix from a thousand on:
/// `1e8` → `100M`, `2500` → `2.5k`, `0.034` → `0.034`, `12.34` → `12.3`.
pub fn si(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".into();
    }
    let v = round_sig(v, 3);
    let a = v.abs();
    let (scaled, suffix) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|&(unit, _)| a >= unit)
        .map_or((v, ""), |(unit, s)| (v / unit, s));
    format!("{}{suffix}", sig3(scaled))
}

fn round_sig(v: f64, digits: i32) -> f64 {
    let e = v.abs().log10().floor() as i32;
    let unit = 10f64.powi(e + 1 - digits);
    (v / unit).round() * unit
}

/// `x` (already rounded to 3 significant digits) without trailing zeros.
fn sig3(x: f64) -> String {
    let e = x.abs().log10().floor() as i32;
    let decimals = (2 - e).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The smallest range of whole decades holding `lo..=hi` (both positive), at least one
/// decade wide.
pub fn decade_range(lo: f64, hi: f64) -> (f64, f64) {
    let a = 10f64.powf(lo.log10().floor());
    let mut b = 10f64.powf(hi.log10().ceil());
    if b <= a {
        b = a * 10.0;
    }
    (a, b)
}

/// Ticks of a logarithmic axis over `lo..=hi` (from [`decade_range`]): the labelled (bold)
/// ticks are the decades, or 1, 2 and 5 times each decade when the axis spans two decades
/// or fewer; the light ticks are 1 to 9 times each decade.
pub fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let first = lo.log10().floor() as i32;
    let last = hi.log10().ceil() as i32;
    let few = last - first <= 2;
    let (mut bold, mut light) = (Vec::new(), Vec::new());
    let inside = |v: f64| v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9);
    for e in first..=last {
        let decade = 10f64.powi(e);
        for m in 1..=9 {
            let v = decade * m as f64;
            if !inside(v) {
                continue;
            }
            if m == 1 || (few && (m == 2 || m == 5)) {
                bold.push(v);
            } else {
                light.push(v);
            }
        }
    }
    (bold, light)
}

/// How a series is marked in a chart and in its legend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A filled square swatch (bars).
    Bar,
    /// A line with filled circles.
    Circle,
    /// A line with filled triangles.
    Triangle,
    /// A dashed line with crosses.
    Cross,
}

/// Marker size in pixels, the same for every series and in the legend.
pub const MARKER_SIZE: i32 = 5;

/// Draws a legend in `area`: a title, then one row per `(label, color, marker)`.
pub fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    entries: &[(String, RGBColor, Marker)],
    notes: &[String],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let (x0, mut y) = (10i32, 60i32);
    area.draw(&Text::new(
        title.to_string(),
        (x0, y),
        ("sans-serif", 15).into_font().style(FontStyle::Bold),
    ))?;
    y += 26;
    for (label, color, marker) in entries {
        let (cx, cy) = (x0 + 14, y);
        match marker {
            Marker::Bar => area.draw(&Rectangle::new(
                [(x0 + 4, cy - 7), (x0 + 24, cy + 7)],
                color.filled(),
            ))?,
            Marker::Circle | Marker::Triangle | Marker::Cross => {
                let line = [(x0, cy), (x0 + 28, cy)];
                if *marker == Marker::Cross {
                    area.draw(&PathElement::new(
                        vec![line[0], (x0 + 10, cy)],
                        color.stroke_width(2),
                    ))?;
                    area.draw(&PathElement::new(
                        vec![(x0 + 18, cy), line[1]],
                        color.stroke_width(2),
                    ))?;
                } else {
                    area.draw(&PathElement::new(line.to_vec(), color.stroke_width(2)))?;
                }
                point(area, (cx, cy), *color, *marker)?;
            }
        }
        area.draw(&Text::new(
            label.clone(),
            (x0 + 36, cy),
            TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        y += 24;
    }
    y += 10;
    for note in notes {
        area.draw(&Text::new(
            note.clone(),
            (x0, y),
            ("sans-serif", 13).into_font().color(&RGBColor(80, 80, 80)),
        ))?;
        y += 20;
    }
    Ok(())
}

/// One marker at pixel `at` of `area`.
pub fn point<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    color: RGBColor,
    marker: Marker,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    match marker {
        Marker::Bar => area.draw(&Rectangle::new(
            [
                (at.0 - MARKER_SIZE, at.1 - MARKER_SIZE),
                (at.0 + MARKER_SIZE, at.1 + MARKER_SIZE),
            ],
            color.filled(),
        ))?,
        Marker::Circle => area.draw(&Circle::new(at, MARKER_SIZE, color.filled()))?,
        Marker::Triangle => area.draw(&TriangleMarker::new(at, MARKER_SIZE + 1, color.filled()))?,
        Marker::Cross => area.draw(&Cross::new(at, MARKER_SIZE, color.stroke_width(2)))?,
    }
    Ok(())
}

/// Distinct colours for series (colour-blind-friendly, after Okabe and Ito).
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // green
    RGBColor(204, 121, 167), // purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(120, 120, 120), // grey
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_labels_are_short_and_exact() {
        assert_eq!(si(1e8), "100M");
        assert_eq!(si(2.2e7), "22M");
        assert_eq!(si(2500.0), "2.5k");
        assert_eq!(si(1000.0), "1k");
        assert_eq!(si(999.7), "1k");
        assert_eq!(si(12.34), "12.3");
        assert_eq!(si(199.49), "199");
        assert_eq!(si(0.3), "0.3");
        assert_eq!(si(0.034), "0.034");
        assert_eq!(si(0.01), "0.01");
        assert_eq!(si(1.0), "1");
        assert_eq!(si(1e9), "1G");
    }

    #[test]
    fn log_ticks_sit_on_decades() {
        let (lo, hi) = decade_range(0.02, 250.0);
        assert_eq!((lo, hi), (0.01, 1000.0));
        let (bold, light) = log_ticks(lo, hi);
        assert_eq!(bold.len(), 6);
        assert!(bold
            .iter()
            .all(|b| (b.log10() - b.log10().round()).abs() < 1e-9));
        assert_eq!(light.len(), 5 * 8);
        let (bold, _) = log_ticks(1e3, 1e5);
        assert_eq!(
            bold.len(),
            7,
            "1, 2, 5 per decade on a short axis: {bold:?}"
        );
        assert_eq!(decade_range(3.0, 3.0), (1.0, 10.0));
    }
}
