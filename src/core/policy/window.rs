//! `changeWindows`: when `apply` may run, in the configured time zone.

use std::path::Path;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde_saphyr::Spanned;

use crate::diag::{Diagnostic, Diagnostics};
use crate::manifest::source::pos_of;

use super::Policy;
use crate::core::violation::{Rule, found as violation};

#[derive(Debug, Clone)]
pub(super) struct Window {
    pub(super) days: Vec<Weekday>,
    /// Minutes since midnight.
    pub(super) from: u32,
    pub(super) to: u32,
}

#[derive(Debug, Clone)]
pub(super) struct Windows {
    pub(super) tz: TimeZone,
    pub(super) tz_name: String,
    pub(super) list: Vec<Window>,
}
impl Windows {
    /// Every (zone, day, from, to) this list opens, for comparing two policies' windows.
    pub(super) fn slots(&self) -> std::collections::BTreeSet<(String, String, u32, u32)> {
        self.list
            .iter()
            .flat_map(|w| w.days.iter().map(move |d| (self.tz_name.clone(), format!("{d:?}"), w.from, w.to)))
            .collect()
    }
}

pub(super) fn minutes(s: &Spanned<String>, file: &Path, diags: &mut Diagnostics) -> Option<u32> {
    let parsed = s.value.split_once(':').and_then(|(h, m)| {
        let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
        (h < 24 && m < 60 && s.value.len() == 5 || s.value == "24:00").then_some(h * 60 + m)
    });
    if parsed.is_none() {
        diags.push(Diagnostic::error(
            file,
            pos_of(s, 0),
            format!("invalid time `{}`: expected HH:MM, 00:00 to 24:00", s.value),
        ));
    }
    parsed
}
impl Policy {
    /// `Err` when `now` is outside every change window (none configured: always inside).
    pub(crate) fn check_window(&self, now: jiff::Timestamp) -> Result<(), Box<Diagnostic>> {
        self.windows.iter().try_for_each(|(w, at)| w.check(now, at))
    }
}

impl Windows {
    /// `Err` when `now` is outside every window of this list.
    fn check(&self, now: jiff::Timestamp, at: &super::At) -> Result<(), Box<Diagnostic>> {
        let w = self;
        let local = now.to_zoned_datetime(w.tz.clone());
        let (day, minute) = (local.weekday(), local.hour() as u32 * 60 + local.minute() as u32);
        let yesterday = day.previous();
        let inside = w.list.iter().any(|win| {
            if win.from < win.to {
                win.days.contains(&day) && minute >= win.from && minute < win.to
            } else {
                (win.days.contains(&day) && minute >= win.from) || (win.days.contains(&yesterday) && minute < win.to)
            }
        });
        if inside {
            return Ok(());
        }
        // The next opening: the earliest window start after now, within a week.
        let next = (0..=7)
            .filter_map(|k| local.date().checked_add(jiff::Span::new().days(k)).ok())
            .flat_map(|date| {
                w.list.iter().filter(move |win| win.days.contains(&date.weekday())).filter_map(move |win| {
                    let (h, m) = ((win.from / 60) as i8, (win.from % 60) as i8);
                    date.at(h, m, 0, 0).to_zoned_datetime(w.tz.clone()).ok()
                })
            })
            .filter(|start| start.timestamp() > now)
            .min_by_key(jiff::ZonedDateTime::timestamp);
        let opens = next.map(|z| format!("; the next opens {}", z.strftime("%a %Y-%m-%d %H:%M"))).unwrap_or_default();
        Err(Box::new(violation(
            &at.file,
            None,
            Rule::ChangeWindows,
            format!("{} in {} is outside every change window{opens}", local.strftime("%a %Y-%m-%d %H:%M"), w.tz_name),
            &at.hint("apply inside a window, or pass --ignore-change-windows --reason \"…\" (the reason is recorded in the ledger)"),
        ).1))
    }
}
