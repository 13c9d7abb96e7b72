//! `confusion_matrix.png` with plotters' bitmap backend. No system fonts are needed: counts and
//! row/column label ids are drawn with a built-in 3x5 pixel digit font; the label names are in
//! the text version (`confusion_matrix.txt`) written next to it.
use crate::error::{Result, TrainError};
use plotters::coord::Shift;
use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;
use std::path::Path;

const CELL: i32 = 72;
const MARGIN: i32 = 40;
const PIXEL: i32 = 3;

/// 3x5 glyphs for 0-9, one row per 3-bit pattern (MSB = left).
const DIGITS: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
];

fn draw_number<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    n: usize,
    center: (i32, i32),
    color: RGBColor,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let s = n.to_string();
    let glyph_w = 4 * PIXEL;
    let width = s.len() as i32 * glyph_w - PIXEL;
    let x0 = center.0 - width / 2;
    let y0 = center.1 - 5 * PIXEL / 2;
    for (k, ch) in s.bytes().enumerate() {
        let glyph = DIGITS[usize::from(ch - b'0')];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    let x = x0 + k as i32 * glyph_w + col * PIXEL;
                    let y = y0 + row as i32 * PIXEL;
                    area.draw(&Rectangle::new(
                        [(x, y), (x + PIXEL, y + PIXEL)],
                        color.filled(),
                    ))?;
                }
            }
        }
    }
    Ok(())
}

/// Draws the confusion matrix (`confusion[true][pred]`), cells shaded by row-normalized value,
/// counts written in each cell, label ids on the axes (true labels down the left, predicted
/// along the top). Written to a temporary name and renamed.
pub fn confusion_png(confusion: &[Vec<usize>], path: &Path) -> Result<()> {
    let k = confusion.len() as i32;
    let side = (2 * MARGIN + k * CELL).max(2 * MARGIN + CELL) as u32;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}.png",
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let err = |e: String| TrainError::data(path, format!("cannot draw the confusion matrix: {e}"));
    {
        let root = BitMapBackend::new(&tmp, (side, side)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        for (t, row) in confusion.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (p, &v) in row.iter().enumerate() {
                let frac = if total > 0 {
                    v as f64 / total as f64
                } else {
                    0.0
                };
                let shade = |full: u8| (255.0 - (255.0 - f64::from(full)) * frac) as u8;
                let color = RGBColor(shade(8), shade(48), shade(107));
                let x = MARGIN + p as i32 * CELL;
                let y = MARGIN + t as i32 * CELL;
                root.draw(&Rectangle::new(
                    [(x, y), (x + CELL, y + CELL)],
                    color.filled(),
                ))
                .map_err(|e| err(e.to_string()))?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + CELL, y + CELL)],
                    BLACK.stroke_width(1),
                ))
                .map_err(|e| err(e.to_string()))?;
                let ink = if frac > 0.5 { WHITE } else { BLACK };
                draw_number(&root, v, (x + CELL / 2, y + CELL / 2), ink)
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        for i in 0..k {
            let c = MARGIN + i * CELL + CELL / 2;
            draw_number(&root, i as usize, (MARGIN / 2, c), BLACK)
                .map_err(|e| err(e.to_string()))?;
            draw_number(&root, i as usize, (c, MARGIN / 2), BLACK)
                .map_err(|e| err(e.to_string()))?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("cm.png");
        confusion_png(&[vec![5, 1, 0], vec![2, 30, 4], vec![0, 0, 123]], &p).expect("png");
        let bytes = std::fs::read(&p).expect("read");
        assert_eq!(&bytes[1..4], b"PNG");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }
}
