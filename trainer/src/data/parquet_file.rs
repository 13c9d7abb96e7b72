//! Parquet split files (as the Hub serves datasets): the text and label columns read row by row
//! with the `parquet` crate's record API (no arrow). Labels may be integers (a `ClassLabel`
//! id) or strings; texts are UTF-8 strings.
use crate::error::{Result, TrainError};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::schema::types::Type;
use std::path::Path;
use std::sync::Arc;

/// One row's outcome: `(text, label)` or why the row is unusable; with its 1-based row number.
pub type RowResult = (usize, std::result::Result<(String, String), String>);

fn perr(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::data(path, format!("parquet: {e}"))
}

/// Reads the `text_col` and `label_col` columns of every row.
pub fn read_rows(path: &Path, text_col: &str, label_col: &str) -> Result<Vec<RowResult>> {
    let file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| perr(path, e))?;
    let schema = reader.metadata().file_metadata().schema_descr();
    let fields = schema.root_schema().get_fields();
    let find = |name: &str| -> Result<Arc<Type>> {
        fields
            .iter()
            .find(|f| f.name() == name)
            .cloned()
            .ok_or_else(|| {
                TrainError::data(
                    path,
                    format!(
                        "no column {name:?} (columns: {:?}); pick others with --text-column/--label-column",
                        fields.iter().map(|f| f.name()).collect::<Vec<_>>()
                    ),
                )
            })
    };
    let (t, l) = (find(text_col)?, find(label_col)?);
    for c in [&t, &l] {
        if c.is_group() {
            return Err(TrainError::data(
                path,
                format!("column {:?} is nested; expected a plain column", c.name()),
            ));
        }
    }
    let projection = Type::group_type_builder("schema")
        .with_fields(vec![t, l])
        .build()
        .map_err(|e| perr(path, e))?;
    let rows = reader
        .get_row_iter(Some(projection))
        .map_err(|e| perr(path, e))?;
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| perr(path, format!("row {}: {e}", i + 1)))?;
        let (mut text, mut label) = (None, None);
        for (name, field) in row.get_column_iter() {
            if name == text_col {
                text = Some(field);
            } else if name == label_col {
                label = Some(field);
            }
        }
        let r = match (text.map(text_of), label.map(label_of)) {
            (Some(Ok(t)), Some(Ok(l))) => {
                if t.trim().is_empty() {
                    Err("empty text".to_string())
                } else {
                    Ok((t, l))
                }
            }
            (Some(Err(e)), _) => Err(format!("column {text_col:?}: {e}")),
            (_, Some(Err(e))) => Err(format!("column {label_col:?}: {e}")),
            _ => Err("missing column value".to_string()),
        };
        out.push((i + 1, r));
    }
    Ok(out)
}

fn text_of(f: &Field) -> std::result::Result<String, String> {
    match f {
        Field::Str(s) => Ok(s.clone()),
        Field::Bytes(b) => std::str::from_utf8(b.data())
            .map(str::to_string)
            .map_err(|_| "invalid UTF-8".to_string()),
        Field::Null => Err("null".into()),
        other => Err(format!("expected a string, found {other}")),
    }
}

fn label_of(f: &Field) -> std::result::Result<String, String> {
    let s = match f {
        Field::Str(s) => s.trim().to_string(),
        Field::Byte(v) => v.to_string(),
        Field::Short(v) => v.to_string(),
        Field::Int(v) => v.to_string(),
        Field::Long(v) => v.to_string(),
        Field::UByte(v) => v.to_string(),
        Field::UShort(v) => v.to_string(),
        Field::UInt(v) => v.to_string(),
        Field::ULong(v) => v.to_string(),
        Field::Bool(v) => u8::from(*v).to_string(),
        Field::Null => return Err("null".into()),
        other => return Err(format!("expected an integer id or a name, found {other}")),
    };
    if s.is_empty() {
        return Err("empty label".into());
    }
    if s.starts_with('-') && s.parse::<i64>().is_ok() {
        return Err(format!("negative label id {s} (unlabelled row)"));
    }
    Ok(s)
}
