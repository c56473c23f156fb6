//! Small PNG line plots (the AIF against the tissue curve), drawn without a font: each curve in
//! its colour, normalised to its own peak, over a light grid with a tick every 10 s. The
//! numbers behind a plot are always written beside it as CSV.

use std::path::Path;

use crate::error::{Error, Result};

/// One curve: samples (equally spaced in time) and an RGB colour.
pub struct Curve<'a> {
    pub values: &'a [f64],
    pub colour: [u8; 3],
}

const W: usize = 640;
const H: usize = 360;
const MARGIN: usize = 30;

fn put(img: &mut [u8], x: i64, y: i64, c: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
        let i = (y as usize * W + x as usize) * 3;
        img[i..i + 3].copy_from_slice(&c);
    }
}

fn line(img: &mut [u8], (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut e) = (x0, y0, dx + dy);
    loop {
        for (ox, oy) in [(0, 0), (1, 0), (0, 1)] {
            put(img, x + ox, y + oy, c);
        }
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * e;
        if e2 >= dy {
            e += dy;
            x += sx;
        }
        if e2 <= dx {
            e += dx;
            y += sy;
        }
    }
}

/// Writes the curves (sampled every `dt` s) as a PNG.
pub fn write_curves(path: &Path, curves: &[Curve], dt: f64) -> Result<()> {
    let mut img = vec![255u8; W * H * 3];
    let n = curves
        .iter()
        .map(|c| c.values.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let (x0, x1, y0, y1) = (
        MARGIN as f64,
        (W - MARGIN / 2) as f64,
        (H - MARGIN) as f64,
        (MARGIN / 2) as f64,
    );
    let px = |i: f64| (x0 + (x1 - x0) * i / (n - 1) as f64) as i64;
    // grid: a vertical line every 10 s, horizontal at 0, 0.5, 1
    let grey = [225, 225, 225];
    let mut t = 0.0;
    while t <= (n - 1) as f64 * dt {
        let x = px(t / dt);
        line(&mut img, (x, y1 as i64), (x, y0 as i64), grey);
        t += 10.0;
    }
    for f in [0.5, 1.0] {
        let y = (y0 + (y1 - y0) * f) as i64;
        line(&mut img, (x0 as i64, y), (x1 as i64, y), grey);
    }
    line(
        &mut img,
        (x0 as i64, y0 as i64),
        (x1 as i64, y0 as i64),
        [0, 0, 0],
    );
    line(
        &mut img,
        (x0 as i64, y0 as i64),
        (x0 as i64, y1 as i64),
        [0, 0, 0],
    );
    for c in curves {
        let peak = c.values.iter().cloned().fold(f64::MIN, f64::max);
        if !(peak > 0.0) {
            continue;
        }
        let py = |v: f64| (y0 + (y1 - y0) * (v / peak).clamp(-0.05, 1.05)) as i64;
        for i in 1..c.values.len() {
            line(
                &mut img,
                (px((i - 1) as f64), py(c.values[i - 1])),
                (px(i as f64), py(c.values[i])),
                c.colour,
            );
        }
    }
    let out_err = |e: String| Error::Output {
        path: path.to_path_buf(),
        reason: e,
    };
    let file = std::fs::File::create(path).map_err(|e| out_err(e.to_string()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W as u32, H as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| out_err(e.to_string()))?;
    w.write_image_data(&img)
        .map_err(|e| out_err(e.to_string()))?;
    w.finish().map_err(|e| out_err(e.to_string()))
}
