//! `confusion_matrix.png`, drawn as *NLP with Transformers* (chapter 2) draws it: label names on
//! both axes, "true label" down the left and "predicted label" along the bottom, each cell
//! shaded and written with its row-normalised value (the fraction of that true label predicted
//! as each label; raw counts with [`CellValues::Counts`]), a colour bar, and a title naming the
//! model and the split. Text is DejaVu Sans (`trainer/assets/DejaVuSans.ttf`, compiled in; its
//! license is next to it), rendered by plotters' `ab_glyph` backend: no system fonts are needed.
use crate::error::{Result, TrainError};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;
use std::path::Path;

/// The font every label is drawn in (registered once under [`FAMILY`]).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// Side of one cell, in pixels.
pub const CELL: u32 = 84;
/// Room left of the cells: the axis title and the label names.
pub const LEFT: u32 = 170;
/// Room above the cells: the title.
pub const TOP: u32 = 64;
/// Room below the cells: the label names and the axis title.
pub const BOTTOM: u32 = 92;
/// Room right of the cells: the colour bar and its ticks.
pub const RIGHT: u32 = 96;

/// What the cells say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CellValues {
    /// The fraction of each true label's examples predicted as each label (rows sum to 1), as
    /// the book's `normalize="true"`.
    #[default]
    RowNormalized,
    /// Example counts (shading still follows the row-normalised value).
    Counts,
}

/// Size in pixels (width, height) of the PNG drawn for `k` labels.
pub fn confusion_png_size(k: usize) -> (u32, u32) {
    let k = k.max(1) as u32;
    (LEFT + k * CELL + RIGHT, TOP + k * CELL + BOTTOM)
}

fn register_font() -> std::result::Result<(), String> {
    static ONCE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| "the bundled DejaVu Sans font does not parse".to_string())
    })
    .clone()
}

/// matplotlib's "Blues" colour map at `t` in [0, 1] (five of its stops, linearly between).
fn blues(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [
        (247, 251, 255),
        (198, 219, 239),
        (107, 174, 214),
        (33, 113, 181),
        (8, 48, 107),
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// DejaVu Sans at `size` px in `color`, anchored at `pos`.
fn style(size: f64, color: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    let mut t = TextStyle::from((FAMILY, size).into_font()).pos(Pos::new(h, v));
    t.color = color.to_backend_color();
    t
}

/// `text` at the largest size up to `size` whose width fits `max_w` (shortened with "…" if even
/// 10 px does not fit).
fn fitted<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    size: f64,
    max_w: u32,
) -> (String, f64) {
    let width = |t: &str, s: f64| {
        area.estimate_text_size(t, &TextStyle::from((FAMILY, s).into_font()))
            .map(|(w, _)| w)
            .unwrap_or(u32::MAX)
    };
    let mut s = size;
    while s > 10.0 && width(text, s) > max_w {
        s -= 1.0;
    }
    if width(text, s) <= max_w {
        return (text.to_string(), s);
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let t: String = chars.iter().collect::<String>() + "…";
        if width(&t, s) <= max_w {
            return (t, s);
        }
    }
    ("…".into(), s)
}

/// Draws `confusion` (`confusion[true][pred]`) with `labels` on both axes, row-normalised values
/// in the cells and `title` above them (e.g. `"all-MiniLM-L6-v2 fine-tuned, validation split"`).
/// Written to a temporary name and renamed.
pub fn confusion_png(
    confusion: &[Vec<usize>],
    labels: &[String],
    title: &str,
    path: &Path,
) -> Result<()> {
    confusion_png_with(confusion, labels, title, CellValues::RowNormalized, path)
}

/// [`confusion_png`] with a choice of what the cells say.
pub fn confusion_png_with(
    confusion: &[Vec<usize>],
    labels: &[String],
    title: &str,
    values: CellValues,
    path: &Path,
) -> Result<()> {
    let err = |e: String| TrainError::data(path, format!("cannot draw the confusion matrix: {e}"));
    if labels.len() != confusion.len() || confusion.iter().any(|r| r.len() != labels.len()) {
        return Err(err(format!(
            "{} labels for a {}-row matrix (rows must have one cell per label)",
            labels.len(),
            confusion.len()
        )));
    }
    register_font().map_err(err)?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}.png",
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let drawn = draw(confusion, labels, title, values, &tmp);
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

fn draw(
    confusion: &[Vec<usize>],
    labels: &[String],
    title: &str,
    values: CellValues,
    tmp: &Path,
) -> std::result::Result<(), String> {
    let k = confusion.len();
    let (w, h) = confusion_png_size(k);
    let root = BitMapBackend::new(tmp, (w, h)).into_drawing_area();
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (left, top, cell) = (LEFT as i32, TOP as i32, CELL as i32);
    let side = k as i32 * cell;
    let centered = |size: f64, color: RGBColor| style(size, color, HPos::Center, VPos::Center);

    // Title, centred over the cells.
    let (t, ts) = fitted(&root, title, 20.0, w - 20);
    root.draw(&Text::new(
        t,
        (left + side / 2, top / 2),
        centered(ts, BLACK),
    ))
    .map_err(|x| e(&x))?;

    // Cells.
    for (ti, row) in confusion.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (pi, &v) in row.iter().enumerate() {
            let frac = if total > 0 {
                v as f64 / total as f64
            } else {
                0.0
            };
            let (x, y) = (left + pi as i32 * cell, top + ti as i32 * cell);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                blues(frac).filled(),
            ))
            .map_err(|x| e(&x))?;
            let ink = if frac > 0.5 { WHITE } else { BLACK };
            let text = match values {
                CellValues::RowNormalized => format!("{frac:.2}"),
                CellValues::Counts => v.to_string(),
            };
            let (text, size) = fitted(&root, &text, 18.0, CELL - 8);
            root.draw(&Text::new(
                text,
                (x + cell / 2, y + cell / 2),
                centered(size, ink),
            ))
            .map_err(|x| e(&x))?;
        }
    }
    root.draw(&Rectangle::new(
        [(left, top), (left + side, top + side)],
        BLACK.stroke_width(1),
    ))
    .map_err(|x| e(&x))?;

    // Label names: true labels right-aligned left of their rows, predicted ones under their
    // columns; then the axis titles.
    for (i, label) in labels.iter().enumerate() {
        let c = i as i32 * cell + cell / 2;
        let (t, s) = fitted(&root, label, 15.0, LEFT - 44);
        root.draw(&Text::new(
            t,
            (left - 8, top + c),
            style(s, BLACK, HPos::Right, VPos::Center),
        ))
        .map_err(|x| e(&x))?;
        let (t, s) = fitted(&root, label, 15.0, CELL - 4);
        root.draw(&Text::new(
            t,
            (left + c, top + side + 16),
            centered(s, BLACK),
        ))
        .map_err(|x| e(&x))?;
    }
    root.draw(&Text::new(
        "predicted label",
        (left + side / 2, top + side + 58),
        centered(16.0, BLACK),
    ))
    .map_err(|x| e(&x))?;
    root.draw(&Text::new(
        "true label",
        (18, top + side / 2),
        style(16.0, BLACK, HPos::Center, VPos::Center).transform(FontTransform::Rotate270),
    ))
    .map_err(|x| e(&x))?;

    // Colour bar: 0 at the bottom, 1 at the top, ticks every 0.2.
    let bx = left + side + 20;
    let bw = 18;
    for py in 0..side {
        let t = 1.0 - f64::from(py) / f64::from(side.max(1) - 1).max(1.0);
        root.draw(&Rectangle::new(
            [(bx, top + py), (bx + bw, top + py + 1)],
            blues(t).filled(),
        ))
        .map_err(|x| e(&x))?;
    }
    root.draw(&Rectangle::new(
        [(bx, top), (bx + bw, top + side)],
        BLACK.stroke_width(1),
    ))
    .map_err(|x| e(&x))?;
    for tick in 0..=5 {
        let v = f64::from(tick) / 5.0;
        let y = top + side - (v * f64::from(side)).round() as i32;
        root.draw(&PathElement::new(
            vec![(bx + bw, y), (bx + bw + 5, y)],
            BLACK.stroke_width(1),
        ))
        .map_err(|x| e(&x))?;
        root.draw(&Text::new(
            format!("{v:.1}"),
            (bx + bw + 8, y),
            style(13.0, BLACK, HPos::Left, VPos::Center),
        ))
        .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))
}

/// A title for a confusion matrix: the model's name (last path component of a local directory,
/// or the hub id), what was fitted, and the split.
pub fn confusion_title(model: &str, what: &str, split: &str) -> String {
    let name = Path::new(model.trim_end_matches('/'))
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| model.to_string());
    format!("{name} {what}, {split} split")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_size(bytes: &[u8]) -> (u32, u32) {
        let be =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        assert_eq!(&bytes[12..16], b"IHDR");
        (be(16), be(20))
    }

    fn emotions() -> Vec<String> {
        ["sadness", "joy", "love", "anger", "fear", "surprise"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn writes_a_png_of_the_expected_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("cm.png");
        let cm = vec![
            vec![520, 12, 1, 10, 7, 0],
            vec![4, 660, 28, 3, 2, 7],
            vec![1, 30, 146, 0, 1, 0],
            vec![9, 3, 0, 250, 12, 1],
            vec![6, 1, 0, 8, 180, 17],
            vec![0, 8, 0, 0, 14, 59],
        ];
        let title = confusion_title(
            "../shared/models/all-MiniLM-L6-v2/",
            "fine-tuned",
            "validation",
        );
        assert_eq!(title, "all-MiniLM-L6-v2 fine-tuned, validation split");
        confusion_png(&cm, &emotions(), &title, &p).expect("png");
        let bytes = std::fs::read(&p).expect("read");
        assert_eq!(&bytes[1..4], b"PNG");
        assert_eq!(png_size(&bytes), confusion_png_size(6));
        assert_eq!(confusion_png_size(6), (770, 660));
        // Only the final file is left (the temporary one was renamed).
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
        if let Ok(keep) = std::env::var("EDGEBERT_KEEP_PLOT") {
            std::fs::copy(&p, keep).expect("keep the plot");
        }
    }

    #[test]
    fn counts_and_long_labels_fit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("cm.png");
        let labels: Vec<String> = vec!["a label far too long to fit its cell".into(), "b".into()];
        confusion_png_with(
            &[vec![3, 1], vec![0, 0]],
            &labels,
            "counts",
            CellValues::Counts,
            &p,
        )
        .expect("png");
        assert_eq!(
            png_size(&std::fs::read(&p).expect("read")),
            confusion_png_size(2)
        );
    }

    #[test]
    fn labels_must_match_the_matrix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("cm.png");
        let e = confusion_png(&[vec![1, 0], vec![0, 1]], &emotions(), "t", &p)
            .expect_err("6 labels, 2 rows");
        assert!(e.to_string().contains("6 labels for a 2-row matrix"), "{e}");
        assert!(!p.exists());
    }
}
