//! The subset of systemd's calendar-event grammar (systemd.time(7), "CALENDAR EVENTS") a backup
//! schedule may use, checked before systemd sees it: a misspelled `OnCalendar=` makes the timer unit
//! fail to load on the host, and the backups silently never run.
//!
//! Accepted: the shorthands (`minutely`, `hourly`, `daily`, `monthly`, `weekly`, `yearly`, `annually`,
//! `quarterly`, `semiannually`), and `[WEEKDAYS] [[YYYY-]MM-DD] [HH:MM[:SS]] [UTC]` where weekdays are
//! names (`Mon`, `Monday`) in comma lists and `..` ranges, and every date/time component is `*`, a
//! number, a `..` range, a comma list of those, any of them with a `/step`.

pub const SHORTHANDS: &[&str] =
    &["minutely", "hourly", "daily", "monthly", "weekly", "yearly", "annually", "quarterly", "semiannually"];

const DAYS: &[(&str, &str)] = &[
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

fn day_index(s: &str) -> Option<usize> {
    let s = s.to_ascii_lowercase();
    DAYS.iter().position(|(short, long)| s == *short || s == *long)
}

fn check_weekdays(s: &str) -> Result<(), String> {
    for item in s.split(',') {
        let (a, b) = item.split_once("..").unwrap_or((item, item));
        match (day_index(a), day_index(b)) {
            (Some(_), Some(_)) => {}
            _ => return Err(format!("{item:?} is not a weekday (Mon..Sun) or a range of weekdays")),
        }
    }
    Ok(())
}

/// One date or time component: `*`, `N`, `A..B`, lists of those, each with an optional `/step`.
fn check_component(s: &str, what: &str, lo: u32, hi: u32) -> Result<(), String> {
    let num = |t: &str| -> Result<u32, String> {
        // Seconds may have a fraction ("05.5"); the integer part is checked.
        let int = if what == "second" { t.split_once('.').map(|(i, _)| i).unwrap_or(t) } else { t };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || int.len() > 4 {
            return Err(format!("{t:?} is not a number ({what})"));
        }
        let n: u32 = int.parse().map_err(|_| format!("{t:?} is not a number ({what})"))?;
        if n < lo || n > hi {
            return Err(format!("{what} {n} is out of range {lo}..{hi}"));
        }
        Ok(n)
    };
    for item in s.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((b, st)) => (b, Some(st)),
            None => (item, None),
        };
        if let Some(st) = step {
            let ok = !st.is_empty() && st.bytes().all(|b| b.is_ascii_digit()) && st.parse::<u32>().is_ok_and(|n| n > 0);
            if !ok {
                return Err(format!("step {st:?} in {item:?} is not a positive number"));
            }
        }
        if base == "*" {
            continue;
        }
        match base.split_once("..") {
            Some((a, b)) => {
                if num(a)? > num(b)? {
                    return Err(format!("range {base:?} runs backwards"));
                }
            }
            None => {
                num(base)?;
            }
        }
    }
    Ok(())
}

fn check_date(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('-').collect();
    let (y, m, d) = match parts.as_slice() {
        [y, m, d] => (Some(*y), *m, *d),
        [m, d] => (None, *m, *d),
        _ => return Err(format!("{s:?} is not a date (YYYY-MM-DD or MM-DD, each part may be *)")),
    };
    if let Some(y) = y {
        check_component(y, "year", 1970, 2199)?;
    }
    check_component(m, "month", 1, 12)?;
    check_component(d, "day", 1, 31)
}

fn check_time(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (*h, *m, None),
        [h, m, sec] => (*h, *m, Some(*sec)),
        _ => return Err(format!("{s:?} is not a time (HH:MM or HH:MM:SS, each part may be *)")),
    };
    check_component(h, "hour", 0, 23)?;
    check_component(m, "minute", 0, 59)?;
    if let Some(sec) = sec {
        check_component(sec, "second", 0, 59)?;
    }
    Ok(())
}

/// Why `s` is not a calendar event systemd accepts (within the subset above), if it is not.
pub fn problem(s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() {
        return Some("the schedule is empty".into());
    }
    if SHORTHANDS.contains(&t.to_ascii_lowercase().as_str()) {
        return None;
    }
    let mut words: Vec<&str> = t.split_ascii_whitespace().collect();
    if words.last().is_some_and(|w| w.eq_ignore_ascii_case("utc")) {
        words.pop();
    }
    let mut it = words.into_iter().peekable();
    let mut parts = 0;
    if let Some(w) = it.peek().copied() {
        if w.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            if let Err(e) = check_weekdays(w) {
                return Some(e);
            }
            it.next();
            parts += 1;
        }
    }
    let mut seen_date = false;
    let mut seen_time = false;
    for w in it {
        if w.contains(':') && !seen_time {
            if let Err(e) = check_time(w) {
                return Some(e);
            }
            seen_time = true;
        } else if w.contains('-') && !seen_date && !seen_time {
            if let Err(e) = check_date(w) {
                return Some(e);
            }
            seen_date = true;
        } else {
            return Some(format!("unexpected {w:?}"));
        }
        parts += 1;
    }
    if parts == 0 {
        return Some("nothing to schedule".into());
    }
    None
}

/// The shorthand a misspelled schedule probably meant ("dialy" → "daily").
pub fn suggestion(s: &str) -> Option<&'static str> {
    let t = s.trim().to_ascii_lowercase();
    if t.contains([' ', ':', '-', '*']) {
        return None;
    }
    SHORTHANDS
        .iter()
        .map(|k| (super::edit_distance(&t, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_calendar_events_are_checked() {
        for ok in [
            "daily",
            "Weekly",
            "semiannually",
            "*-*-* 03:00:00",
            "*-*-* 03:00",
            "Mon..Fri 02:30",
            "Mon,Wed,Fri *-*-* 04:00:00",
            "Sat",
            "2026-01-01 00:00:00 UTC",
            "*-*-01 04:00:00",
            "*-1..6-1/2 00/4:00",
            "12-24 18:00",
            "*:0/15",
            "Sunday *-*-* 01:00:30.5",
        ] {
            assert_eq!(problem(ok), None, "{ok}");
        }
        for bad in [
            "dialy",
            "",
            "*-*-* 25:00",
            "*-13-* 00:00",
            "Mon..Fry 00:00",
            "*-*-* 03:00 extra",
            "*-*-* 3:6o",
            "*-*-*/0 00:00",
            "00:00 *-*-*",
            "5..1:00",
        ] {
            assert!(problem(bad).is_some(), "{bad:?} accepted");
        }
        assert_eq!(suggestion("dialy"), Some("daily"));
        assert_eq!(suggestion("wekly"), Some("weekly"));
        assert_eq!(suggestion("xyzzy-plugh"), None);
    }
}
