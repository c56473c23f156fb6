//! PNG montages of a 3-D map: its slices in a grid, a colour bar with tick values and the unit
//! written on it, and a title.
//!
//! Orientation: the library stores rows bottom-up, as dcm2niix and NIfTI viewers do (row 0 is
//! the last row of the DICOM image, see `Geometry::flipped_y`), so the montage shows row
//! `ny − 1` at the top: the image appears as the scanner showed it (for an axial series,
//! anterior at the top and the patient's right on the viewer's left, the radiological
//! convention). Columns are not flipped. In-plane voxels are drawn square.
//!
//! Orientation letters and slice positions: given the map's [`Geometry`], each tile carries
//! the patient direction at its four edges (R/L, A/P, S/I, the axis nearest the image
//! direction, as scanner consoles and dcm2niix's viewers label oblique images) and its caption
//! the slice's position in mm along the slice axis (the LPS coordinate of the slice centre on
//! the nearest axis, written with its letter, e.g. "S 12.5 mm", as DICOM Slice Location reads on
//! a console).
//!
//! Outlines: masks (a lesion ROI, the white-matter reference, the AIF voxels) are drawn as the
//! edges of their voxels in a colour no colormap uses, named in a key under the title.
//!
//! Display range: by default the 2nd to 98th percentile of the finite values (inside the mask
//! when one is given), which keeps a few outliers (vessels in rCBV, CSF partial volume in ADC)
//! from washing the map out; a fixed range makes series comparable and is the caller's choice.

use ndarray::ArrayView3;

use super::colormap::{lut_index, Colormap, BACKGROUND};
use super::raster::{text_width, Canvas, GLYPH};
use crate::error::{Error, Result};
use crate::volume::Geometry;

/// A mask drawn as the outline of its voxels.
#[derive(Clone)]
pub struct Outline<'a> {
    /// `[z, y, x]` on the map's grid.
    pub mask: ArrayView3<'a, bool>,
    pub colour: [u8; 3],
    /// Written in the key under the title, in `colour`.
    pub label: &'a str,
}

/// Outline colours, chosen outside viridis, magma, grey and the class colours: a lesion ROI
/// (cyan), the white-matter reference (magenta), the AIF voxels (green).
pub const ROI_OUTLINE: [u8; 3] = [0, 255, 255];
pub const REFERENCE_OUTLINE: [u8; 3] = [255, 0, 255];
pub const AIF_OUTLINE: [u8; 3] = [0, 255, 0];
/// Colour of the orientation letters (on a black box).
pub const LETTER_COLOUR: [u8; 3] = [255, 255, 0];

/// What to draw and how.
#[derive(Clone)]
pub struct PreviewSpec<'a> {
    pub title: &'a str,
    /// Unit written on the colour bar, e.g. "mm2/s" (a power-of-ten factor is added to it when
    /// the values are very small or large).
    pub unit: &'a str,
    pub colormap: Colormap,
    /// Display range (low, high); None for the 2nd–98th percentile of the finite values.
    pub range: Option<(f32, f32)>,
    /// Voxels to show (`[z, y, x]`, the map's grid); those outside are drawn black and left out
    /// of the percentiles.
    pub mask: Option<ArrayView3<'a, bool>>,
    /// The map's grid: orientation letters on every tile and slice positions in mm.
    pub geometry: Option<&'a Geometry>,
    /// Masks outlined on the map.
    pub outlines: Vec<Outline<'a>>,
    /// With [`Colormap::Classes`]: the class names, written beside the colour bar's blocks in
    /// place of tick values (class k at value k of the range 0..n−1).
    pub class_names: Option<&'a [&'a str]>,
}

impl<'a> PreviewSpec<'a> {
    pub fn new(title: &'a str, unit: &'a str, colormap: Colormap) -> Self {
        PreviewSpec {
            title,
            unit,
            colormap,
            range: None,
            mask: None,
            geometry: None,
            outlines: Vec::new(),
            class_names: None,
        }
    }
}

/// A montage and where its parts lie, so that a caller (or a test) can find a slice's pixels.
#[derive(Debug, Clone)]
pub struct Montage {
    pub png: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// The display range used (low, high).
    pub range: (f32, f32),
    /// The percentile range was used (no range was given).
    pub automatic_range: bool,
    /// Number of finite values (inside the mask) the range was taken from.
    pub finite_voxels: usize,
    /// Slice indices z shown, in tile order.
    pub slices: Vec<usize>,
    /// Top-left pixel (x, y) of each shown slice's tile.
    pub tiles: Vec<[usize; 2]>,
    /// Each voxel is drawn as `zoom`×`zoom` pixels…
    pub zoom: usize,
    /// …after taking every `stride`-th voxel along x and y (large matrices only).
    pub stride: usize,
    /// The colour bar: x, y, width, height; its top row is the high end of the range.
    pub colour_bar: [usize; 4],
    /// Orientation letters at each tile's (left, right, top, bottom) edge, when the geometry
    /// was given.
    pub letters: Option<[char; 4]>,
    /// Each shown slice's caption (index, and position in mm with the geometry).
    pub captions: Vec<String>,
}

/// The patient direction (LPS: +x left, +y posterior, +z superior) nearest `v`.
pub fn direction_letter(v: [f64; 3]) -> char {
    let a = (0..3)
        .max_by(|&i, &j| v[i].abs().total_cmp(&v[j].abs()))
        .unwrap_or(0);
    match (a, v[a] >= 0.0) {
        (0, true) => 'L',
        (0, false) => 'R',
        (1, true) => 'P',
        (1, false) => 'A',
        (_, true) => 'S',
        (_, false) => 'I',
    }
}

/// The letters at a tile's (left, right, top, bottom) edges: columns run along +i to the right,
/// and the top row is the highest row index (rows stored bottom-up), so up is +j.
pub fn tile_letters(g: &Geometry) -> [char; 4] {
    let col = |c: usize| std::array::from_fn(|r| g.affine_lps[r][c]);
    let neg = |v: [f64; 3]| v.map(|x| -x);
    let (i, j) = (col(0), col(1));
    [
        direction_letter(neg(i)),
        direction_letter(i),
        direction_letter(j),
        direction_letter(neg(j)),
    ]
}

/// Slice `z`'s position: the LPS coordinate of its centre along the axis nearest the slice
/// direction, written with that axis's letter for the positive side it lies on, in mm.
pub fn slice_position(g: &Geometry, z: usize) -> String {
    let [nx, ny, _] = g.dims;
    let c = g.index_to_lps([(nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0, z as f64]);
    let k: [f64; 3] = std::array::from_fn(|r| g.affine_lps[r][2]);
    let a = (0..3)
        .max_by(|&i, &j| k[i].abs().total_cmp(&k[j].abs()))
        .unwrap_or(2);
    let mut unit = [0.0; 3];
    unit[a] = if c[a] >= 0.0 { 1.0 } else { -1.0 };
    format!("{} {:.1} mm", direction_letter(unit), c[a].abs())
}

/// At most this many slices are shown; taller stacks show every k-th slice.
pub const MAX_SLICES: usize = 36;
/// Tiles are enlarged up to about this size…
const TILE_TARGET: usize = 128;
/// …and larger in-plane matrices are subsampled down to it.
const TILE_MAX: usize = 256;
const GRID_MAX_WIDTH: usize = 1024;
const PAD: usize = 8;
const GAP: usize = 4;
const LABEL_H: usize = GLYPH + 4;
const BAR_W: usize = 16;
const WHITE: [u8; 3] = [255, 255, 255];

/// The montage of `map` (`[z, y, x]`) as PNG bytes. Writing it to disk is the caller's job
/// (through `io::output::OutputDir`, so that no half-written file is ever left).
pub fn montage_png(map: ArrayView3<f32>, spec: &PreviewSpec) -> Result<Vec<u8>> {
    Ok(montage(map, spec)?.png)
}

/// The montage of `map` with its layout.
pub fn montage(map: ArrayView3<f32>, spec: &PreviewSpec) -> Result<Montage> {
    let (nz, ny, nx) = map.dim();
    let bad = |problem: String| Error::Invalid(format!("preview \"{}\": {problem}", spec.title));
    if nz == 0 || ny == 0 || nx == 0 {
        return Err(bad(format!(
            "the map is empty ({nz}×{ny}×{nx} voxels, z×y×x)"
        )));
    }
    if let Some(m) = &spec.mask {
        if m.dim() != map.dim() {
            return Err(bad(format!(
                "the mask grid {:?} (z, y, x) differs from the map's {:?}; give a mask on the map's grid",
                m.dim(),
                map.dim()
            )));
        }
    }
    let inside = |z: usize, y: usize, x: usize| spec.mask.as_ref().is_none_or(|m| m[[z, y, x]]);
    let mut finite: Vec<f32> = map
        .indexed_iter()
        .filter(|&((z, y, x), v)| v.is_finite() && inside(z, y, x))
        .map(|(_, &v)| v)
        .collect();
    let (lo, hi) = match spec.range {
        Some((lo, hi)) => {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(bad(format!(
                    "display range ({lo}, {hi}) must be two finite numbers with low < high"
                )));
            }
            (lo, hi)
        }
        None => automatic_range(&mut finite),
    };

    // Layout.
    let stride = nx.max(ny).div_ceil(TILE_MAX).max(1);
    let (sx, sy) = (nx.div_ceil(stride), ny.div_ceil(stride));
    let zoom = TILE_TARGET.div_ceil(sx.max(sy)).clamp(1, 8);
    let (tile_w, tile_h) = (sx * zoom, sy * zoom);
    let step = nz.div_ceil(MAX_SLICES);
    let slices: Vec<usize> = (0..nz).step_by(step).collect();
    let cols = ((GRID_MAX_WIDTH + GAP) / (tile_w + GAP)).clamp(1, slices.len());
    let rows = slices.len().div_ceil(cols);
    let grid_w = cols * tile_w + (cols - 1) * GAP;
    let grid_h = rows * (tile_h + LABEL_H) + (rows - 1) * GAP;

    let key_h = if spec.outlines.is_empty() {
        0
    } else {
        GLYPH + 4
    };
    let title_h = PAD + 2 * GLYPH + PAD + key_h;
    let mut ticks = Ticks::new(lo, hi, spec.unit);
    if let (Colormap::Classes, Some(names)) = (spec.colormap, spec.class_names) {
        ticks.labels = names
            .iter()
            .enumerate()
            .map(|(k, n)| (k as f64, format!("{k} {n}")))
            .collect();
    }
    let unit_h = GLYPH + 6;
    let bar_x = PAD + grid_w + 3 * PAD;
    let bar_y = title_h + unit_h;
    let bar_h = grid_h.saturating_sub(unit_h).clamp(96, 320);
    let label_w = ticks
        .labels
        .iter()
        .map(|(_, s)| text_width(s, 1))
        .max()
        .unwrap_or(0);
    let panel_w = (BAR_W + 4 + 4 + label_w).max(text_width(&ticks.unit, 1));
    let key: Vec<(String, [u8; 3])> = spec
        .outlines
        .iter()
        .map(|o| (o.label.to_string(), o.colour))
        .collect();
    let key_w: usize = key.iter().map(|(t, _)| text_width(t, 1) + 4 * GLYPH).sum();
    let width = (bar_x + panel_w)
        .max(PAD + text_width(spec.title, 2))
        .max(PAD + key_w)
        + PAD;
    let height = (title_h + grid_h).max(bar_y + bar_h + GLYPH) + PAD;

    let mut c = Canvas::new(width, height, BACKGROUND);
    c.text(PAD, PAD, spec.title, WHITE, 2);
    let mut kx = PAD;
    for (t, colour) in &key {
        // A hollow square in the outline's colour, then its name.
        let ky = PAD + 2 * GLYPH + 4;
        c.fill_rect(kx, ky, GLYPH, 1, *colour);
        c.fill_rect(kx, ky + GLYPH - 1, GLYPH, 1, *colour);
        c.fill_rect(kx, ky, 1, GLYPH, *colour);
        c.fill_rect(kx + GLYPH - 1, ky, 1, GLYPH, *colour);
        c.text(kx + GLYPH + 4, ky, t, *colour, 1);
        kx += text_width(t, 1) + 4 * GLYPH;
    }
    for o in &spec.outlines {
        if o.mask.dim() != map.dim() {
            return Err(bad(format!(
                "the outline \"{}\" has grid {:?} (z, y, x), the map {:?}",
                o.label,
                o.mask.dim(),
                map.dim()
            )));
        }
    }
    let letters = spec.geometry.map(tile_letters);
    let mut captions = Vec::with_capacity(slices.len());

    let table = spec.colormap.table();
    let nan = spec.colormap.nan_colour();
    let mut tiles = Vec::with_capacity(slices.len());
    for (k, &z) in slices.iter().enumerate() {
        let (col, row) = (k % cols, k / cols);
        let x0 = PAD + col * (tile_w + GAP);
        let y0 = title_h + row * (tile_h + LABEL_H + GAP);
        tiles.push([x0, y0]);
        for ty in 0..sy {
            // Top of the tile is the highest row index (rows are stored bottom-up).
            let y = (sy - 1 - ty) * stride;
            for tx in 0..sx {
                let x = tx * stride;
                let colour = if !inside(z, y, x) {
                    BACKGROUND
                } else {
                    match lut_index(map[[z, y, x]], lo, hi) {
                        Some(i) => table[i],
                        None => nan,
                    }
                };
                c.fill_rect(x0 + tx * zoom, y0 + ty * zoom, zoom, zoom, colour);
            }
        }
        // Outlines: an edge where a shown voxel in the mask meets one outside it.
        for o in &spec.outlines {
            let on = |tx: i64, ty: i64| {
                tx >= 0
                    && ty >= 0
                    && (tx as usize) < sx
                    && (ty as usize) < sy
                    && o.mask[[z, (sy - 1 - ty as usize) * stride, tx as usize * stride]]
            };
            for ty in 0..sy as i64 {
                for tx in 0..sx as i64 {
                    if !on(tx, ty) {
                        continue;
                    }
                    let (px, py) = (x0 + tx as usize * zoom, y0 + ty as usize * zoom);
                    if !on(tx - 1, ty) {
                        c.fill_rect(px, py, 1, zoom, o.colour);
                    }
                    if !on(tx + 1, ty) {
                        c.fill_rect(px + zoom - 1, py, 1, zoom, o.colour);
                    }
                    if !on(tx, ty - 1) {
                        c.fill_rect(px, py, zoom, 1, o.colour);
                    }
                    if !on(tx, ty + 1) {
                        c.fill_rect(px, py + zoom - 1, zoom, 1, o.colour);
                    }
                }
            }
        }
        if let Some([l, r, t, b]) = letters {
            let boxed = |c: &mut Canvas, x: usize, y: usize, ch: char| {
                c.fill_rect(x, y, GLYPH + 2, GLYPH + 2, BACKGROUND);
                c.text(x + 1, y + 1, &ch.to_string(), LETTER_COLOUR, 1);
            };
            let (mx, my) = (
                x0 + tile_w / 2 - GLYPH / 2 - 1,
                y0 + tile_h / 2 - GLYPH / 2 - 1,
            );
            boxed(&mut c, x0, my, l);
            boxed(&mut c, x0 + tile_w - GLYPH - 2, my, r);
            boxed(&mut c, mx, y0, t);
            boxed(&mut c, mx, y0 + tile_h - GLYPH - 2, b);
        }
        let caption = match spec.geometry {
            Some(g) => format!("z {z}  {}", slice_position(g, z)),
            None => format!("z {z}"),
        };
        c.text(x0, y0 + tile_h + 2, &caption, [200, 200, 200], 1);
        captions.push(caption);
    }

    // Colour bar: top row = hi.
    for r in 0..bar_h {
        let t = 1.0 - r as f64 / (bar_h - 1) as f64;
        let colour = table[(t * 255.0).round() as usize];
        c.fill_rect(bar_x, bar_y + r, BAR_W, 1, colour);
    }
    c.text(bar_x, title_h + 2, &ticks.unit, WHITE, 1);
    for (value, label) in &ticks.labels {
        let t = ((value - lo as f64) / (hi as f64 - lo as f64)).clamp(0.0, 1.0);
        let y = bar_y + ((1.0 - t) * (bar_h - 1) as f64).round() as usize;
        c.fill_rect(bar_x + BAR_W, y, 4, 1, WHITE);
        c.text(
            bar_x + BAR_W + 8,
            y.saturating_sub(GLYPH / 2),
            label,
            WHITE,
            1,
        );
    }

    Ok(Montage {
        png: c.to_png()?,
        width,
        height,
        range: (lo, hi),
        automatic_range: spec.range.is_none(),
        finite_voxels: finite.len(),
        slices,
        tiles,
        zoom,
        stride,
        colour_bar: [bar_x, bar_y, BAR_W, bar_h],
        letters,
        captions,
    })
}

/// The 2nd–98th percentile of `values`; their full span when those two coincide (a map that is
/// mostly one value, e.g. zeros outside an unmasked brain); a small interval around a constant;
/// (0, 1) when there is no finite value at all.
fn automatic_range(values: &mut [f32]) -> (f32, f32) {
    if values.is_empty() {
        return (0.0, 1.0);
    }
    values.sort_unstable_by(|a, b| a.total_cmp(b));
    let (lo, hi) = (percentile(values, 0.02), percentile(values, 0.98));
    if hi > lo {
        return (lo, hi);
    }
    let (min, max) = (values[0], values[values.len() - 1]);
    if max > min {
        return (min, max);
    }
    let d = if min != 0.0 { min.abs() * 0.1 } else { 1.0 };
    (min - d, min + d)
}

/// Percentile of sorted values, linear interpolation between order statistics (NumPy's
/// default, "linear", method 7 of Hyndman & Fan 1996).
pub fn percentile(sorted: &[f32], p: f64) -> f32 {
    let h = p * (sorted.len() - 1) as f64;
    let (i, f) = (h.floor() as usize, h - h.floor());
    let j = (i + 1).min(sorted.len() - 1);
    (sorted[i] as f64 + f * (sorted[j] as f64 - sorted[i] as f64)) as f32
}

/// Tick values on a display range and the unit line, scaled by a power of ten (a multiple of 3)
/// when the values are very small or large, so an ADC bar reads 0.5, 1.0 … ×10^-3 mm2/s
/// rather than 0.0005.
struct Ticks {
    labels: Vec<(f64, String)>,
    unit: String,
}

impl Ticks {
    fn new(lo: f32, hi: f32, unit: &str) -> Self {
        let (lo, hi) = (lo as f64, hi as f64);
        let m = lo.abs().max(hi.abs());
        let exp = if m > 0.0 && !(1e-2..1e4).contains(&m) {
            3 * (m.log10() / 3.0).floor() as i32
        } else {
            0
        };
        let scale = 10f64.powi(exp);
        let raw = (hi - lo) / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|k| k * mag)
            .find(|&s| s >= raw * (1.0 - 1e-9))
            .unwrap_or(10.0 * mag);
        let decimals = (-((step / scale).log10() + 1e-9).floor()).max(0.0) as usize;
        let first = (lo / step - 1e-9).ceil() as i64;
        let last = (hi / step + 1e-9).floor() as i64;
        let labels = (first..=last)
            .map(|k| {
                let v = k as f64 * step;
                // + 0.0 turns -0.0 into 0.0.
                (v, format!("{:.*}", decimals, v / scale + 0.0))
            })
            .collect();
        let unit = match (exp, unit.is_empty()) {
            (0, _) => unit.to_string(),
            (e, true) => format!("\u{d7}10^{e}"),
            (e, false) => format!("\u{d7}10^{e} {unit}"),
        };
        Ticks { labels, unit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adc_ticks_are_scaled_to_1e_minus_3() {
        let t = Ticks::new(0.0, 3.0e-3, "mm2/s");
        assert_eq!(t.unit, "\u{d7}10^-3 mm2/s");
        let labels: Vec<&str> = t.labels.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(labels, ["0", "1", "2", "3"]);
    }

    #[test]
    fn rcbv_ticks_need_no_factor() {
        let t = Ticks::new(0.0, 4.2, "ratio");
        assert_eq!(t.unit, "ratio");
        let labels: Vec<&str> = t.labels.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(labels, ["0", "1", "2", "3", "4"]);
        let t = Ticks::new(-0.013, 0.021, "s^-1");
        let labels: Vec<&str> = t.labels.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(labels, ["-0.01", "0.00", "0.01", "0.02"]);
    }

    #[test]
    fn percentiles_follow_the_linear_rule() {
        let v: Vec<f32> = (0..=100).map(|i| i as f32).collect();
        assert_eq!(percentile(&v, 0.02), 2.0);
        assert_eq!(percentile(&v, 0.98), 98.0);
        assert_eq!(percentile(&[1.0, 3.0], 0.5), 2.0);
    }

    #[test]
    fn letters_and_slice_positions_follow_the_geometry() {
        // Axial, stored rows bottom-up (as paramap stores DICOM): +i is patient left, the top
        // row (highest j) is anterior, slices run inferior to superior from z = -10 mm.
        let axial = Geometry {
            dims: [4, 4, 3],
            affine_lps: [
                [2.0, 0.0, 0.0, -3.0],
                [0.0, 2.0, 0.0, -3.0],
                [0.0, 0.0, 5.0, -10.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        }
        .flipped_y();
        assert_eq!(tile_letters(&axial), ['R', 'L', 'A', 'P']);
        assert_eq!(slice_position(&axial, 0), "I 10.0 mm");
        assert_eq!(slice_position(&axial, 2), "S 0.0 mm");
        // Sagittal: columns run anterior to posterior, rows (bottom-up) inferior to superior,
        // slices along x from 12 mm right.
        let sagittal = Geometry {
            dims: [4, 4, 3],
            affine_lps: [
                [0.0, 0.0, 3.0, -12.0],
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        };
        assert_eq!(tile_letters(&sagittal), ['A', 'P', 'S', 'I']);
        assert_eq!(slice_position(&sagittal, 0), "R 12.0 mm");
        assert_eq!(slice_position(&sagittal, 2), "R 6.0 mm");
        // An oblique slice takes the nearest axis: 20 degrees about x is still axial.
        let (s, c) = 20f64.to_radians().sin_cos();
        assert_eq!(direction_letter([0.0, c, s]), 'P');
        assert_eq!(direction_letter([0.0, -s, c]), 'S');
    }

    #[test]
    fn outlines_letters_and_captions_are_drawn_where_they_belong() {
        let g = Geometry {
            dims: [8, 8, 2],
            affine_lps: [
                [2.0, 0.0, 0.0, -7.0],
                [0.0, 2.0, 0.0, -7.0],
                [0.0, 0.0, 5.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        }
        .flipped_y();
        let map = ndarray::Array3::from_elem((2, 8, 8), 0.5f32);
        // A 2×2 ROI at x 3..5, y 3..5 of slice 1.
        let roi = ndarray::Array3::from_shape_fn((2, 8, 8), |(z, y, x)| {
            z == 1 && (3..5).contains(&y) && (3..5).contains(&x)
        });
        let mut spec = PreviewSpec::new("t", "u", Colormap::Grey);
        spec.range = Some((0.0, 1.0));
        spec.geometry = Some(&g);
        spec.outlines = vec![Outline {
            mask: roi.view(),
            colour: ROI_OUTLINE,
            label: "ROI",
        }];
        let m = montage(map.view(), &spec).unwrap();
        assert_eq!(m.letters, Some(['R', 'L', 'A', 'P']));
        assert_eq!(m.captions, ["z 0  S 0.0 mm", "z 1  S 5.0 mm"]);
        let img = {
            let mut r = png::Decoder::new(std::io::Cursor::new(&m.png))
                .read_info()
                .unwrap();
            let mut buf = vec![0; r.output_buffer_size().unwrap()];
            let info = r.next_frame(&mut buf).unwrap();
            buf.truncate(info.buffer_size());
            buf
        };
        let at = |x: usize, y: usize| {
            let i = (y * m.width + x) * 3;
            [img[i], img[i + 1], img[i + 2]]
        };
        let z = m.zoom;
        let count = |tile: usize, colour: [u8; 3]| {
            let [tx, ty] = m.tiles[tile];
            let mut n = 0;
            for py in ty..ty + 8 * z {
                for px in tx..tx + 8 * z {
                    n += (at(px, py) == colour) as usize;
                }
            }
            n
        };
        // The outline of a 2×2-voxel square: its perimeter, one pixel wide.
        assert_eq!(count(1, ROI_OUTLINE), 4 * (2 * z) - 4);
        assert_eq!(count(0, ROI_OUTLINE), 0, "slice 0 holds no ROI");
        // The ROI's top-left pixel: column 3, row 4 (drawn top-down from row 7).
        let [tx, ty] = m.tiles[1];
        assert_eq!(at(tx + 3 * z, ty + (7 - 4) * z), ROI_OUTLINE);
        // Letters on both tiles.
        assert!(count(0, LETTER_COLOUR) > 20 && count(1, LETTER_COLOUR) > 20);
    }

    #[test]
    fn degenerate_maps_still_get_a_range() {
        assert_eq!(automatic_range(&mut []), (0.0, 1.0));
        let mut constant = vec![2.0f32; 10];
        let (lo, hi) = automatic_range(&mut constant);
        assert!(lo < 2.0 && hi > 2.0);
        let mut mostly_zero = vec![0.0f32; 100];
        mostly_zero[7] = 5.0;
        assert_eq!(automatic_range(&mut mostly_zero), (0.0, 5.0));
    }
}
