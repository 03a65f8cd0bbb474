//! The event stamp of one refresh: XNAT's workflow event id and date, as they appear in entries'
//! `created*`/`modified*` attributes and in the catalog's `AUDIT` metaField (`catalog-refresh.md` §4.3).

use chrono::{DateTime, Utc};

/// Who and when, for every entry a refresh touches.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub event_id: i64,
    pub time: DateTime<Utc>,
    pub user: Option<String>,
    /// What every touched entry gets, printed once (a refresh stamps up to millions of entries).
    entry_time: String,
    event: String,
}

impl Stamp {
    /// Now, with `event_id` defaulting to the Unix time in seconds (we keep no workflow table).
    pub fn now(event_id: Option<i64>, user: Option<String>) -> Stamp {
        let time = Utc::now();
        Stamp::at(event_id.unwrap_or(time.timestamp()), time, user)
    }

    pub fn at(event_id: i64, time: DateTime<Utc>, user: Option<String>) -> Stamp {
        let entry_time = time.format("%Y-%m-%dT%H:%M:%S%.3f").to_string();
        Stamp { event_id, time, user, entry_time, event: event_id.to_string() }
    }

    /// `createdTime`/`modifiedTime`: `yyyy-MM-dd'T'HH:mm:ss.SSS` (UTC; the component has no time zone).
    pub fn entry_time(&self) -> &str {
        &self.entry_time
    }

    /// `createdEventId`/`modifiedEventId`.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// Java's `Date.toString()`: `Mon Apr 08 19:50:34 UTC 2019`.
    pub fn audit_date(&self) -> String {
        self.time.format("%a %b %d %H:%M:%S UTC %Y").to_string()
    }

    /// One AUDIT change-set, `<id>:<date>=Added:n;Modified:m;Removed:k` with only non-zero actions;
    /// `None` when nothing changed.
    pub fn change_set(&self, added: usize, modified: usize, removed: usize) -> Option<String> {
        let parts: Vec<String> = [("Added", added), ("Modified", modified), ("Removed", removed)]
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(a, n)| format!("{a}:{n}"))
            .collect();
        (!parts.is_empty()).then(|| format!("{}:{}={}", self.event_id, self.audit_date(), parts.join(";")))
    }
}

/// The AUDIT value with one more change-set appended (`|`-joined).
pub fn append_change_set(existing: Option<&str>, change_set: &str) -> String {
    match existing {
        Some(e) if !e.trim().is_empty() => format!("{e}|{change_set}"),
        _ => change_set.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_like_xnat() {
        let s = Stamp::at(8623, Utc.with_ymd_and_hms(2019, 4, 8, 19, 50, 34).unwrap(), None);
        assert_eq!((s.entry_time(), s.event()), ("2019-04-08T19:50:34.000", "8623"));
        assert_eq!(s.change_set(2, 0, 1).unwrap(), "8623:Mon Apr 08 19:50:34 UTC 2019=Added:2;Removed:1");
        assert_eq!(s.change_set(0, 0, 0), None);
        assert_eq!(append_change_set(Some("1:x=Added:1"), "2:y=Removed:1"), "1:x=Added:1|2:y=Removed:1");
        assert_eq!(append_change_set(None, "2:y=Removed:1"), "2:y=Removed:1");
    }
}
