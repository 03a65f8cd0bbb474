//! Request parameters: the query string and an `application/x-www-form-urlencoded` body, as XNAT reads them
//! (body variables first, then the query; a key may repeat, and every value is kept).

use crate::formats::{Format, HttpError};
use crate::message::Request;

/// The parameters of one request, in order: form body first, then query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses the query and, when the body is a form, the body. A body of another type is ignored (no
    /// endpoint here takes one); a form body that is not UTF-8 is a 400.
    pub fn parse(req: &Request) -> Result<Params, HttpError> {
        let mut pairs = Vec::new();
        let is_form = req.header("content-type").is_some_and(|ct| {
            ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        if is_form && !req.body.is_empty() {
            if std::str::from_utf8(&req.body).is_err() {
                return Err(HttpError::bad_request("the form body is not UTF-8; encode parameters as UTF-8"));
            }
            pairs.extend(form_urlencoded::parse(&req.body).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        pairs.extend(form_urlencoded::parse(req.query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())));
        Ok(Params { pairs })
    }

    /// Parameters from pairs (tests, and callers that already hold them).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Params {
        Params { pairs: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// Every (name, value), in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first non-blank value of `name`, trimmed.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().map(str::trim).find(|v| !v.is_empty())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// Every value of `name`, each also split on commas, trimmed, blanks dropped (`options=a,b&options=c`).
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.all(name).into_iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()).collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    /// The one value several synonyms give (`session`, `label`, `EXPT_LABEL`): the first present, and a 400
    /// if two of them disagree.
    pub fn synonym(&self, names: &[&str]) -> Result<Option<String>, HttpError> {
        let mut found: Option<(&str, &str)> = None;
        for name in names {
            for v in self.all(name) {
                let v = v.trim();
                if v.is_empty() {
                    continue;
                }
                match found {
                    None => found = Some((name, v)),
                    Some((first, fv)) if fv != v => {
                        return Err(HttpError::bad_request(&format!(
                            "{first}={fv} and {name}={v} contradict each other; give one value"
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(found.map(|(_, v)| v.to_string()))
    }

    /// A switch that is on unless its value is `false` or `0` (`triggerPipelines`, `append=` of refresh);
    /// `None` when absent.
    pub fn on_unless_false(&self, name: &str) -> Option<bool> {
        self.get(name).map(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0"))
    }

    /// A switch that is on only when its value is `true` (case-insensitive), as XNAT's `quarantine`.
    pub fn only_if_true(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

/// `format=`: the table formats XNAT offers.
impl Format {
    /// `format=` of the request; `default` when absent. Unknown names are a 400.
    pub fn from_params(params: &Params, default: Format) -> Result<Format, HttpError> {
        match params.value("format").map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some("xml") => Ok(Format::Xml),
            Some("html") => Ok(Format::Html),
            Some(other) => Err(HttpError::bad_request(&format!(
                "format={other} is not offered here; use format=json, format=csv, format=xml or format=html"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_before_query_and_repeats_kept() {
        let req = Request::new("POST", "/data/services/archive?src=%2Fq&overwrite=append&src=/q2")
            .with_form("src=%2Fprearchive%2Fb&session=S+1&src=/b2");
        let p = Params::parse(&req).unwrap();
        assert_eq!(p.all("src"), ["/prearchive/b", "/b2", "/q", "/q2"]);
        assert_eq!(p.get("session"), Some("S 1"));
        assert_eq!(p.get("overwrite"), Some("append"));
        assert_eq!(p.get("nope"), None);
    }

    #[test]
    fn bodies_that_are_not_forms_are_ignored() {
        let mut req = Request::new("POST", "/x?a=1").with_header("content-type", "application/json");
        req.body = b"{\"a\":2}".to_vec();
        assert_eq!(Params::parse(&req).unwrap().all("a"), ["1"]);
        let req =
            Request::new("POST", "/x").with_header("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8");
        let req = Request { body: b"a=3".to_vec(), ..req };
        assert_eq!(Params::parse(&req).unwrap().all("a"), ["3"]);
        let bad = Request { body: vec![0xff, b'='], ..Request::new("POST", "/x").with_form("") };
        assert_eq!(Params::parse(&bad).unwrap_err().status, 400);
    }

    #[test]
    fn lists_synonyms_and_switches() {
        let p = Params::from_pairs([
            ("options", "checksum,delete"),
            ("options", " append "),
            ("options", ""),
            ("session", "E1"),
            ("label", "E1"),
            ("append", ""),
            ("delete", "0"),
            ("checksum", "FALSE"),
            ("quarantine", "True"),
        ]);
        assert_eq!(p.list("options"), ["checksum", "delete", "append"]);
        assert_eq!(p.synonym(&["session", "label", "EXPT_LABEL"]).unwrap().as_deref(), Some("E1"));
        assert_eq!(p.on_unless_false("append"), Some(true));
        assert_eq!(p.on_unless_false("delete"), Some(false));
        assert_eq!(p.on_unless_false("checksum"), Some(false));
        assert_eq!(p.on_unless_false("populateStats"), None);
        assert!(p.only_if_true("quarantine"));
        let clash = Params::from_pairs([("session", "E1"), ("EXPT_LABEL", "E2")]);
        let e = clash.synonym(&["session", "label", "EXPT_LABEL"]).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("session=E1 and EXPT_LABEL=E2"), "{}", e.message);
    }

    #[test]
    fn format_parameter() {
        let p = |v: &str| Params::from_pairs([("format", v)]);
        assert_eq!(Format::from_params(&Params::default(), Format::Json).unwrap(), Format::Json);
        assert_eq!(Format::from_params(&p("CSV"), Format::Json).unwrap(), Format::Csv);
        assert_eq!(Format::from_params(&p("xml"), Format::Json).unwrap(), Format::Xml);
        assert_eq!(Format::from_params(&p("html"), Format::Json).unwrap(), Format::Html);
        assert_eq!(Format::from_params(&p("pdf"), Format::Json).unwrap_err().status, 400);
    }
}
