//! The printers every command shares: JSON under a key in field order ([`print_keyed`]), XNAT's
//! `ResultSet` JSON ([`print_result_set`]), CSV records ([`print_csv`], quoted by the `csv` crate) and the
//! readable tables ([`print_table`]).
//!
//! Not for what a command prints about its own results (each service's file has its printers).

use std::io::{self, Write as _};

use csv::{QuoteStyle, WriterBuilder};
use serde::Serialize;
use serde::ser::SerializeMap as _;

/// `{"<key>": value}`, with `value`'s fields in declaration order (a `json!` map would sort them).
struct Keyed<'a, T: ?Sized>(&'a str, &'a T);

impl<T: Serialize + ?Sized> Serialize for Keyed<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.0, self.1)?;
        map.end()
    }
}

/// Prints `{"<key>": value}`, pretty, fields in declaration order.
pub fn print_keyed<T: Serialize + ?Sized>(key: &str, value: &T) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(&Keyed(key, value))?);
    Ok(())
}

/// XNAT's table JSON: `{"ResultSet":{"Result":[...],"totalRecords":"N"}}`.
#[derive(Serialize)]
struct ResultSet<'a, T> {
    #[serde(rename = "Result")]
    result: &'a [T],
    #[serde(rename = "totalRecords")]
    total_records: String,
}

/// Prints `rows` as XNAT's `ResultSet`.
pub fn print_result_set<T: Serialize>(rows: &[T]) -> anyhow::Result<()> {
    print_keyed("ResultSet", &ResultSet { result: rows, total_records: rows.len().to_string() })
}

/// Prints a header and rows as CSV, one record per line, ending in `\n`.
pub fn print_csv<'a, const N: usize>(
    header: &[&str; N],
    rows: impl IntoIterator<Item = [&'a str; N]>,
) -> io::Result<()> {
    out!("{}", csv_record(header)?);
    for row in rows {
        out!("{}", csv_record(&row)?);
    }
    Ok(())
}

/// One CSV record (RFC 4180): a field holding a comma, a quote or a line break is quoted, its quotes
/// doubled. So is a field with a space at either end, which the `csv` crate would leave bare, because
/// spreadsheets trim such spaces.
fn csv_record(fields: &[&str]) -> io::Result<String> {
    let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect::<io::Result<_>>()?;
    Ok(quoted.join(","))
}

/// One CSV field, quoted when it needs to be: written as a one-field record by the `csv` crate, less its
/// line end. An empty field stays empty (as a whole record the crate would write it `""`).
fn csv_field(field: &str) -> io::Result<String> {
    if field.is_empty() {
        return Ok(String::new());
    }
    let edge_space = field.starts_with(' ') || field.ends_with(' ');
    let style = if edge_space { QuoteStyle::Always } else { QuoteStyle::Necessary };
    let mut writer = WriterBuilder::new().quote_style(style).from_writer(Vec::new());
    writer.write_record([field])?;
    let mut bytes = writer.into_inner().map_err(|e| e.into_error())?;
    bytes.pop(); // the crate's line end, `\n`
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A left-aligned table, columns two spaces apart; the last column is not padded.
pub fn print_table<const N: usize>(header: &[&str; N], rows: &[[&str; N]]) -> io::Result<()> {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out!("{}", line.trim_end());
    }
    Ok(())
}

/// `""` for one, `"s"` for any other count.
pub fn plural<N: PartialEq + From<u8>>(n: N) -> &'static str {
    if n == N::from(1) { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::csv_record;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let record =
            csv_record(&["plain", "", "A,B", "say \"hi\"", "two\nlines", "cr\r", " lead", "trail ", "in side"]);
        assert_eq!(
            record.unwrap(),
            "plain,,\"A,B\",\"say \"\"hi\"\"\",\"two\nlines\",\"cr\r\",\" lead\",\"trail \",in side"
        );
        assert_eq!(csv_record(&["", ""]).unwrap(), ",");
        assert_eq!(csv_record(&[""]).unwrap(), "");
    }
}
