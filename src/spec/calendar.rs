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

/// One item of a component: `start`, `start..stop`, `start/repeat` (no upper bound), `start..stop/repeat`
/// (systemd's CalendarComponent). `*` is no item at all: every value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    start: u32,
    stop: Option<u32>,
    repeat: u32,
}

impl Item {
    fn matches(&self, v: u32) -> bool {
        if v < self.start || self.stop.is_some_and(|s| v > s) {
            return false;
        }
        if self.repeat == 0 {
            return v == self.start;
        }
        (v - self.start) % self.repeat == 0
    }
}

/// A component: None = `*` (every value), else the values any item matches.
type Component = Option<Vec<Item>>;

fn matches(c: &Component, v: u32) -> bool {
    c.as_ref().map_or(true, |items| items.iter().any(|i| i.matches(v)))
}

/// A parsed calendar event (systemd.time(7)), in UTC: the NixOS default time zone (`time.timeZone`
/// unset), or what a trailing `UTC` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Bit 0 = Monday … bit 6 = Sunday; 0 = every day.
    weekdays: u8,
    year: Component,
    month: Component,
    day: Component,
    hour: Component,
    minute: Component,
    /// Whole seconds (a fraction is dropped: the lab's timers have second resolution).
    second: Component,
}

fn weekdays(s: &str) -> Result<u8, String> {
    let mut bits = 0u8;
    for item in s.split(',') {
        let (a, b) = item.split_once("..").unwrap_or((item, item));
        match (day_index(a), day_index(b)) {
            // systemd refuses a range that runs backwards ("Fri..Mon"): the timer would not load.
            (Some(x), Some(y)) if x > y => {
                return Err(format!(
                    "weekday range {item:?} runs backwards (systemd refuses it): write e.g. \"Mon,Fri..Sun\""
                ))
            }
            (Some(x), Some(y)) => (x..=y).for_each(|d| bits |= 1 << d),
            _ => return Err(format!("{item:?} is not a weekday (Mon..Sun) or a range of weekdays")),
        }
    }
    Ok(bits)
}

/// One date or time component: `*`, `N`, `A..B`, lists of those, each with an optional `/step`.
fn component(s: &str, what: &str, lo: u32, hi: u32) -> Result<Component, String> {
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
    if s == "*" {
        return Ok(None);
    }
    let mut items = Vec::new();
    for item in s.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((b, st)) => (b, Some(st)),
            None => (item, None),
        };
        let repeat = match step {
            Some(st) => match st.parse::<u32>() {
                Ok(n) if n > 0 && st.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => return Err(format!("step {st:?} in {item:?} is not a positive number")),
            },
            None => None,
        };
        if base == "*" {
            // systemd.time(7) has no "*/N": `systemd-analyze calendar '*:*/15'` fails to parse.
            return Err(format!("{item:?}: systemd does not accept \"*/N\"; write \"{lo}/{}\"", step.unwrap_or("N")));
        }
        let mut it = match base.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range {base:?} runs backwards"));
                }
                if a == b {
                    // systemd 252 refuses it in the seconds; newer systemd takes it as the value.
                    return Err(format!("range {base:?} is one value: write {a}"));
                }
                Item { start: a, stop: Some(b), repeat: repeat.unwrap_or(1) }
            }
            None => Item { start: num(base)?, stop: None, repeat: repeat.unwrap_or(0) },
        };
        // systemd's normalize_chain: a range ends on a repetition; one that cannot repeat is its
        // first value.
        if let Some(stop) = it.stop {
            if stop > it.start && it.repeat > 0 {
                let stop = stop - (stop - it.start) % it.repeat;
                it.stop = Some(stop);
                if it.start + it.repeat > stop {
                    (it.stop, it.repeat) = (None, 0);
                }
            }
        }
        // systemd's chain_valid: a repetition must fit once into the component's range.
        let end = it.stop.unwrap_or(hi);
        if it.repeat > hi - lo || it.start + it.repeat > end {
            return Err(format!("{item:?} never repeats before {what} {end} (systemd refuses it)"));
        }
        items.push(it);
    }
    Ok(Some(items))
}

fn date(s: &str) -> Result<(Component, Component, Component), String> {
    let parts: Vec<&str> = s.split('-').collect();
    let (y, m, d) = match parts.as_slice() {
        [y, m, d] => (Some(*y), *m, *d),
        [m, d] => (None, *m, *d),
        _ => return Err(format!("{s:?} is not a date (YYYY-MM-DD or MM-DD, each part may be *)")),
    };
    let year = match y {
        Some(y) => component(y, "year", 1970, 2199)?,
        None => None,
    };
    Ok((year, component(m, "month", 1, 12)?, component(d, "day", 1, 31)?))
}

fn time(s: &str) -> Result<(Component, Component, Component), String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (*h, *m, None),
        [h, m, sec] => (*h, *m, Some(*sec)),
        _ => return Err(format!("{s:?} is not a time (HH:MM or HH:MM:SS, each part may be *)")),
    };
    let second = match sec {
        Some(sec) => component(sec, "second", 0, 59)?,
        None => zero(),
    };
    Ok((component(h, "hour", 0, 23)?, component(m, "minute", 0, 59)?, second))
}

fn zero() -> Component {
    fixed(0)
}

fn fixed(v: u32) -> Component {
    Some(vec![Item { start: v, stop: None, repeat: 0 }])
}

/// Parses `s` (the subset above) as systemd does, or says why systemd would not accept it.
pub fn parse(s: &str) -> Result<Event, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("the schedule is empty".into());
    }
    let any = Event { weekdays: 0, year: None, month: None, day: None, hour: None, minute: None, second: None };
    let midnight = Event { hour: zero(), minute: zero(), second: zero(), ..any.clone() };
    let first_of = |months: &[u32]| Event {
        month: Some(months.iter().map(|&m| Item { start: m, stop: None, repeat: 0 }).collect()),
        day: fixed(1),
        ..midnight.clone()
    };
    // systemd's own expansion of each shorthand (calendar_spec_from_string).
    let shorthand = match t.to_ascii_lowercase().as_str() {
        "minutely" => Some(Event { second: zero(), ..any }),
        "hourly" => Some(Event { minute: zero(), second: zero(), ..any }),
        "daily" => Some(midnight.clone()),
        "weekly" => Some(Event { weekdays: 1, ..midnight.clone() }),
        "monthly" => Some(Event { day: fixed(1), ..midnight.clone() }),
        "yearly" | "annually" => Some(first_of(&[1])),
        "quarterly" => Some(first_of(&[1, 4, 7, 10])),
        "semiannually" => Some(first_of(&[1, 7])),
        _ => None,
    };
    if let Some(e) = shorthand {
        return Ok(e);
    }
    let mut words: Vec<&str> = t.split_ascii_whitespace().collect();
    if words.last().is_some_and(|w| w.eq_ignore_ascii_case("utc")) {
        words.pop();
    }
    let mut e = midnight;
    let mut it = words.into_iter().peekable();
    let mut parts = 0;
    if let Some(w) = it.peek().copied() {
        if w.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            e.weekdays = weekdays(w)?;
            it.next();
            parts += 1;
        }
    }
    let mut seen_date = false;
    let mut seen_time = false;
    for w in it {
        if w.contains(':') && !seen_time {
            (e.hour, e.minute, e.second) = time(w)?;
            seen_time = true;
        } else if w.contains('-') && !seen_date && !seen_time {
            (e.year, e.month, e.day) = date(w)?;
            seen_date = true;
        } else {
            return Err(format!("unexpected {w:?}"));
        }
        parts += 1;
    }
    if parts == 0 {
        return Err("nothing to schedule".into());
    }
    Ok(e)
}

/// Why `s` is not a calendar event systemd accepts (within the subset above), if it is not.
pub fn problem(s: &str) -> Option<String> {
    parse(s).err()
}

const DAY: i64 = 86_400;

impl Event {
    /// Whether the date of `days` (since 1970-01-01) matches the date part.
    fn day_matches(&self, days: i64) -> bool {
        // Julian day 2,440,588 is 1970-01-01.
        let Some(date) = i32::try_from(days + 2_440_588).ok().and_then(|j| time::Date::from_julian_day(j).ok()) else {
            return false;
        };
        let wd = date.weekday().number_days_from_monday();
        (self.weekdays == 0 || self.weekdays & (1 << wd) != 0)
            && u32::try_from(date.year()).is_ok_and(|y| matches(&self.year, y))
            && matches(&self.month, u8::from(date.month()).into())
            && matches(&self.day, date.day().into())
    }

    /// The seconds of a day (0..86,400) the time part matches, ascending.
    fn times_of_day(&self) -> Vec<u32> {
        let mut v = Vec::new();
        for h in (0..24).filter(|h| matches(&self.hour, *h)) {
            for m in (0..60).filter(|m| matches(&self.minute, *m)) {
                for s in (0..60).filter(|s| matches(&self.second, *s)) {
                    v.push(h * 3600 + m * 60 + s);
                }
            }
        }
        v
    }

    /// The first elapse strictly after `after` (Unix seconds, UTC), as `systemd-analyze calendar`
    /// computes it; None: none before 2200 (systemd's own limit).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let times = self.times_of_day();
        if times.is_empty() {
            return None;
        }
        let end = 84_006; // 2200-01-01: systemd's MAX_YEAR is 2199.
        let mut day = after.div_euclid(DAY);
        while day < end {
            if self.day_matches(day) {
                let from = if day == after.div_euclid(DAY) { after.rem_euclid(DAY) } else { -1 };
                if let Some(t) = times.iter().find(|&&t| i64::from(t) > from) {
                    return Some(day * DAY + i64::from(*t));
                }
            }
            day += 1;
        }
        None
    }

    /// Whether the event names years: such a schedule stops (the last one in 2199 at the latest).
    fn names_years(&self) -> bool {
        self.year.is_some()
    }

    /// The longest time between two consecutive elapses, in seconds (across midnight, months, leap
    /// years and weekdays: the Gregorian calendar repeats every 400 years, weekdays included). None:
    /// it never elapses, or names years (it stops).
    pub fn longest_gap(&self) -> Option<u64> {
        if self.names_years() {
            return None;
        }
        let times = self.times_of_day();
        let (first, last) = (i64::from(*times.first()?), i64::from(*times.last()?));
        let within = times.windows(2).map(|w| i64::from(w[1] - w[0])).max().unwrap_or(0);
        let start = 10_957; // 2000-01-01, the start of a 400-year cycle.
        let cycle = 146_097;
        let days: Vec<i64> = (start..start + cycle).filter(|&d| self.day_matches(d)).collect();
        let (d0, dn) = (*days.first()?, *days.last()?);
        let mut gap = within;
        for w in days.windows(2) {
            gap = gap.max((w[1] - w[0]) * DAY - last + first);
        }
        // From the cycle's last matching day to the next cycle's first.
        gap = gap.max((d0 + cycle - dn) * DAY - last + first);
        u64::try_from(gap).ok()
    }
}

/// A systemd time span (systemd.time(7), "PARSING TIME SPANS") in whole seconds, as `RandomizedDelaySec=`
/// takes it: a bare number is seconds (`600`); else numbers with units, summed (`10m`, `30min`,
/// `1h 30m`, `2d`). Fractions and sub-second units are refused.
pub fn parse_timespan(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    let unit = |u: &str| -> Option<u64> {
        Some(match u {
            "s" | "sec" | "second" | "seconds" => 1,
            "m" | "min" | "minute" | "minutes" => 60,
            "h" | "hr" | "hour" | "hours" => 3_600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 7 * 86_400,
            _ => return None,
        })
    };
    let bad = || format!("{s:?} is not a time span in whole seconds (e.g. 0, 600, 10m, 1h 30m)");
    let mut total = 0u64;
    let mut rest = t;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = rest[digits..].trim_start();
        let letters = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let k = unit(&rest[..letters]).ok_or_else(bad)?;
        total = n.checked_mul(k).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        rest = rest[letters..].trim_start();
    }
    Ok(total)
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
    fn time_spans_parse_as_systemd_reads_randomized_delay() {
        for (s, v) in
            [("0", 0), ("600", 600), ("10m", 600), ("30min", 1800), ("1h 30m", 5400), ("2d", 172_800), ("45 s", 45)]
        {
            assert_eq!(parse_timespan(s), Ok(v), "{s}");
        }
        for s in ["", "m", "10x", "1.5h", "-1", "10m junk"] {
            assert!(parse_timespan(s).is_err(), "{s}");
        }
    }

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
            "Fri..Mon",
            "*:*/15",
            "*-*-*/2 00:00",
            "21/11:00",
            "*:59/1",
            "*-*-* *:*:30/30",
            "07:00:58..58",
        ] {
            assert!(problem(bad).is_some(), "{bad:?} accepted");
        }
        assert_eq!(suggestion("dialy"), Some("daily"));
        assert_eq!(suggestion("wekly"), Some("weekly"));
        assert_eq!(suggestion("xyzzy-plugh"), None);
        assert!(problem("Fri..Mon").unwrap().contains("runs backwards"));
        assert!(problem("*:*/15").unwrap().contains("write \"0/15\""));
    }

    fn at(s: &str) -> i64 {
        let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        time::PrimitiveDateTime::parse(s, f).unwrap().assume_utc().unix_timestamp()
    }

    #[test]
    fn next_elapses_follow_systemd() {
        let next = |e: &str, after: &str| parse(e).unwrap().next_after(at(after));
        assert_eq!(next("minutely", "2026-12-03 09:00:00"), Some(at("2026-12-03 09:01:00")));
        assert_eq!(next("daily", "2026-12-31 23:59:59"), Some(at("2027-01-01 00:00:00")));
        assert_eq!(next("weekly", "2026-12-03 09:00:00"), Some(at("2026-12-07 00:00:00")));
        assert_eq!(next("*-02-29", "2096-03-01 00:00:00"), Some(at("2104-02-29 00:00:00")));
        assert_eq!(next("Mon..Fri 02:30", "2024-02-29 02:30:00"), Some(at("2024-03-01 02:30:00")));
        assert_eq!(next("*:0/15", "2026-12-03 09:14:59"), Some(at("2026-12-03 09:15:00")));
        assert_eq!(next("2026-01-01 00:00:00 UTC", "2026-12-03 09:00:00"), None);
        assert_eq!(next("*-02-30", "2026-12-03 09:00:00"), None);
        // A day step past the month's end starts the next month at day 1, as systemd since its
        // tm_within_bounds fix does (systemd 252 went on at "day 47" = 16 January, skipping the 11th).
        assert_eq!(next("*-*-11/18", "2026-12-31 23:59:59"), Some(at("2027-01-11 00:00:00")));
    }

    #[test]
    fn the_longest_gap_between_elapses() {
        let gap = |e: &str| parse(e).unwrap().longest_gap();
        let h = 3600;
        assert_eq!(gap("minutely"), Some(60));
        assert_eq!(gap("hourly"), Some(h));
        assert_eq!(gap("daily"), Some(24 * h));
        assert_eq!(gap("*-*-* 03:00"), Some(24 * h));
        assert_eq!(gap("*-*-* 00/6:00"), Some(6 * h));
        assert_eq!(gap("*-*-* 02,23:00"), Some(21 * h));
        assert_eq!(gap("weekly"), Some(7 * 24 * h));
        assert_eq!(gap("Mon..Fri 02:30"), Some(3 * 24 * h));
        assert_eq!(gap("monthly"), Some(31 * 24 * h));
        assert_eq!(gap("quarterly"), Some(92 * 24 * h));
        assert_eq!(gap("yearly"), Some(366 * 24 * h));
        // 2096 to 2104: 2100 is no leap year.
        assert_eq!(gap("*-02-29"), Some((at("2104-02-29 00:00:00") - at("2096-02-29 00:00:00")) as u64));
        assert_eq!(gap("*-02-30"), None);
        assert_eq!(gap("2027-*-* 03:00"), None);
    }
}
