//! A small RGB canvas for the previews: filled rectangles, lines, and text in the public-domain
//! 8×8 bitmap font of the `font8x8` crate (IBM PC VGA glyphs, Basic Latin and Latin-1), so that
//! tick values and units can be written on an image without a font file or a system font.

use font8x8::legacy::{BASIC_LEGACY, LATIN_LEGACY};

use crate::error::{Error, Result};

/// An 8-bit RGB image, rows top-down (as PNG stores them).
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Width in pixels of one glyph at scale 1.
pub const GLYPH: usize = 8;

impl Canvas {
    pub fn new(width: usize, height: usize, background: [u8; 3]) -> Self {
        let mut pixels = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            pixels.extend_from_slice(&background);
        }
        Canvas {
            width,
            height,
            pixels,
        }
    }

    /// Sets one pixel; coordinates outside the canvas are ignored (clipping, not an error).
    pub fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    pub fn get(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    pub fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                let i = (yy * self.width + xx) * 3;
                self.pixels[i..i + 3].copy_from_slice(&c);
            }
        }
    }

    /// A line `width` pixels thick (Bresenham, thickened to the right and below).
    pub fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3], width: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut e) = (x0, y0, dx + dy);
        loop {
            for ox in 0..width {
                for oy in 0..width {
                    self.put(x + ox, y + oy, c);
                }
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

    /// Writes `text` with its top-left corner at (x, y), each font pixel `scale`×`scale`.
    /// Characters outside Basic Latin and Latin-1 are drawn as '?'.
    pub fn text(&mut self, x: usize, y: usize, text: &str, c: [u8; 3], scale: usize) {
        for (k, ch) in text.chars().enumerate() {
            let glyph = glyph(ch);
            let x0 = x + k * GLYPH * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..GLYPH {
                    // font8x8 stores each row's leftmost pixel in the least significant bit.
                    if bits & (1 << col) != 0 {
                        self.fill_rect(x0 + col * scale, y + row * scale, scale, scale, c);
                    }
                }
            }
        }
    }

    /// Encodes the canvas as an 8-bit RGB PNG.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let err = |e: png::EncodingError| Error::Invalid(format!("encoding a preview PNG: {e}"));
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().map_err(err)?;
            w.write_image_data(&self.pixels).map_err(err)?;
            w.finish().map_err(err)?;
        }
        Ok(out)
    }
}

/// Width in pixels of `text` at `scale`.
pub fn text_width(text: &str, scale: usize) -> usize {
    text.chars().count() * GLYPH * scale
}

fn glyph(ch: char) -> [u8; 8] {
    let code = ch as u32;
    match code {
        0x20..=0x7e => BASIC_LEGACY[code as usize],
        0xa0..=0xff => LATIN_LEGACY[(code - 0xa0) as usize],
        _ => BASIC_LEGACY[b'?' as usize],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_marks_pixels_only_inside_its_box() {
        let mut c = Canvas::new(40, 12, [0, 0, 0]);
        c.text(2, 2, "H1", [255, 255, 255], 1);
        let lit: Vec<(usize, usize)> = (0..12)
            .flat_map(|y| (0..40).map(move |x| (x, y)))
            .filter(|&(x, y)| c.get(x, y) == [255, 255, 255])
            .collect();
        assert!(lit.len() > 10, "two glyphs light up pixels");
        assert!(lit
            .iter()
            .all(|&(x, y)| (2..2 + 16).contains(&x) && (2..2 + 8).contains(&y)));
    }

    #[test]
    fn png_round_trips() {
        let mut c = Canvas::new(3, 2, [1, 2, 3]);
        c.put(2, 1, [200, 100, 50]);
        c.put(-1, 5, [9, 9, 9]);
        let png = c.to_png().unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(png));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(&buf[..3], &[1, 2, 3]);
        assert_eq!(&buf[15..18], &[200, 100, 50]);
    }
}
