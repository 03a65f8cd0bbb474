//! What goes out: XNAT's table formats (ResultSet JSON, CSV, XML, and an HTML table for browsers) and error
//! bodies (plain text, or JSON when the request asked for `format=json`; never HTML, which xnatpy and pyxnat
//! both reject).

use crate::message::Response;

pub use crate::message::{BINARY, CSV, HTML, JSON, TEXT, URI_LIST, XML};

/// A table format XNAT offers with `format=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Xml,
    Html,
}

/// A failed request: its status, XNAT-style kind and a message that tells what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
    /// Extra response headers (`www-authenticate`, `allow`).
    pub headers: Vec<(String, String)>,
}

impl HttpError {
    pub fn new(status: u16, kind: &'static str, message: &str) -> HttpError {
        HttpError { status, kind, message: message.to_string(), headers: Vec::new() }
    }

    pub fn bad_request(message: &str) -> HttpError {
        HttpError::new(400, "bad-request", message)
    }

    pub fn not_found(message: &str) -> HttpError {
        HttpError::new(404, "not-found", message)
    }

    /// A 401, with the Basic challenge.
    pub fn unauthorized(message: &str) -> HttpError {
        HttpError::new(401, "unauthorized", message).with_header("www-authenticate", "Basic realm=\"XNAT\"")
    }

    /// A 405 naming the methods the path takes.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &[&str]) -> HttpError {
        HttpError::new(
            405,
            "method-not-allowed",
            &format!("{method} is not allowed on {path}; use {}", allowed.join(" or ")),
        )
        .with_header("allow", &allowed.join(", "))
    }

    pub fn with_header(mut self, name: &str, value: &str) -> HttpError {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The response: JSON `{"error":{"kind","message"}}` when `json`, plain text otherwise.
    pub fn response(&self, json: bool) -> Response {
        let mut r = if json {
            let body = serde_json::json!({ "error": { "kind": self.kind, "message": self.message } });
            Response::new(self.status, JSON, body.to_string())
        } else {
            Response::new(self.status, TEXT, self.message.clone())
        };
        for (name, value) in &self.headers {
            r = r.with_header(name, value);
        }
        r
    }
}

impl From<xnat_core::error::Error> for HttpError {
    fn from(e: xnat_core::error::Error) -> HttpError {
        use xnat_core::error::Error as E;
        let (status, kind) = match &e {
            E::BadRequest(_) => (400, "bad-request"),
            E::Forbidden(_) => (403, "forbidden"),
            E::NotFound(_) => (404, "not-found"),
            E::Conflict(_) => (409, "conflict"),
            E::Locked(_) => (423, "locked"),
            E::Io(_) => (500, "io"),
            E::Corrupt(_) => (500, "corrupt"),
        };
        HttpError::new(status, kind, e.message())
    }
}

/// A plain-text error response (for the glue, before parameters are known).
pub fn failure(status: u16, kind: &'static str, message: &str) -> Response {
    HttpError::new(status, kind, message).response(false)
}

/// An XNAT table: named columns, rows of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[&str]) -> Table {
        Table { columns: columns.iter().map(|c| c.to_string()).collect(), rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// `{"ResultSet":{"Result":[{"col":"value",...}],"totalRecords":"N"}}`, columns in table order.
    /// Written into one buffer of about its size.
    pub fn to_json(&self) -> Vec<u8> {
        let keys: usize = self.columns.iter().map(|c| c.len() + 6).sum();
        let cells: usize = self.rows.iter().flatten().map(String::len).sum();
        let mut out = Vec::with_capacity(64 + keys * self.rows.len() + cells + cells / 8);
        let result = self.rows.iter().map(|cells| Row { columns: &self.columns, cells }).collect();
        let set = ResultSet { set: Results { result, total_records: self.rows.len().to_string() } };
        serde_json::to_writer(&mut out, &set).expect("a table of strings serializes");
        out
    }

    /// A header line, then one line per row, `\n`-terminated, fields quoted where RFC 4180 needs it (a comma,
    /// a quote, a line break), quotes doubled. Never empty: pyxnat needs the header.
    pub fn to_csv(&self) -> String {
        let mut out = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
        for record in std::iter::once(&self.columns).chain(&self.rows) {
            out.write_record(record).expect("writing CSV to memory cannot fail");
        }
        let bytes = out.into_inner().expect("flushing CSV to memory cannot fail");
        String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
    }

    /// XNAT's XML table: `<ResultSet><results><columns>…</columns><rows><row><cell>…`.
    pub fn to_xml(&self) -> String {
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ResultSet totalRecords=\"{}\">\n<results>\n<columns>",
            self.rows.len()
        );
        for c in &self.columns {
            out.push_str(&format!("<column>{}</column>", xnat_core::xml::escape_text(c)));
        }
        out.push_str("</columns>\n<rows>\n");
        for row in &self.rows {
            out.push_str("<row>");
            for v in row {
                out.push_str(&format!("<cell>{}</cell>", xnat_core::xml::escape_text(v)));
            }
            out.push_str("</row>\n");
        }
        out.push_str("</rows>\n</results>\n</ResultSet>\n");
        out
    }

    /// The table as an HTML page (what XNAT's `format=html` gives a browser): one `<table>`, every value
    /// escaped. Served with the sandboxing CSP of every answer: nothing in it runs.
    pub fn to_html(&self) -> String {
        let cell = |tag: &str, v: &str| format!("<{tag}>{}</{tag}>", xnat_core::xml::escape_text(v));
        let mut out = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{} results</title></head><body>\n<table>\n<tr>",
            self.rows.len()
        );
        out.extend(self.columns.iter().map(|c| cell("th", c)));
        out.push_str("</tr>\n");
        for row in &self.rows {
            out.push_str("<tr>");
            out.extend(row.iter().map(|v| cell("td", v)));
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n</body></html>\n");
        out
    }

    /// The table as a response with `status`.
    pub fn response(&self, format: Format, status: u16) -> Response {
        match format {
            Format::Json => Response::new(status, JSON, self.to_json()),
            Format::Csv => Response::new(status, CSV, self.to_csv()),
            Format::Xml => Response::new(status, XML, self.to_xml()),
            Format::Html => Response::new(status, HTML, self.to_html()),
        }
    }
}

/// XNAT's JSON table.
#[derive(serde::Serialize)]
struct ResultSet<'a> {
    #[serde(rename = "ResultSet")]
    set: Results<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Results<'a> {
    #[serde(rename = "Result")]
    result: Vec<Row<'a>>,
    total_records: String,
}

/// One row of a table as a JSON object, its keys in the table's column order.
struct Row<'a> {
    columns: &'a [String],
    cells: &'a [String],
}

impl serde::Serialize for Row<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.columns.len()))?;
        for (column, cell) in self.columns.iter().zip(self.cells) {
            map.serialize_entry(column, cell)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut t = Table::new(&["code", "type", "message"]);
        t.push(vec!["5".into(), "CONFLICT".into(), "a \"quoted\", <odd> message".into()]);
        t.push(vec!["7".into(), "FAIL".into(), String::new()]);
        t
    }

    #[test]
    fn json_keeps_column_order_and_strings() {
        let json = String::from_utf8(table().to_json()).unwrap();
        assert!(json.starts_with(r#"{"ResultSet":{"Result":[{"code":"5","type":"CONFLICT","message":"#), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["ResultSet"]["Result"][0]["message"], "a \"quoted\", <odd> message");
        assert_eq!(v["ResultSet"]["totalRecords"], "2");
        assert_eq!(Table::new(&["a"]).to_json(), br#"{"ResultSet":{"Result":[],"totalRecords":"0"}}"#);
    }

    #[test]
    fn csv_and_xml() {
        assert_eq!(table().to_csv(), "code,type,message\n5,CONFLICT,\"a \"\"quoted\"\", <odd> message\"\n7,FAIL,\n");
        assert_eq!(Table::new(&["a", "b"]).to_csv(), "a,b\n");
        let xml = table().to_xml();
        assert!(xml.contains("<column>code</column><column>type</column>"), "{xml}");
        assert!(xml.contains("<cell>a &quot;quoted&quot;, &lt;odd&gt; message</cell>"), "{xml}");
    }

    #[test]
    fn formats_and_errors() {
        let e: HttpError = xnat_core::error::Error::Locked("busy; retry".into()).into();
        let r = e.response(true);
        assert_eq!(r.status, 423);
        assert_eq!(r.body_text(), r#"{"error":{"kind":"locked","message":"busy; retry"}}"#);
        let r = e.response(false);
        assert_eq!((r.header("content-type"), r.body_text().as_str()), (Some(TEXT), "busy; retry"));
    }
}
