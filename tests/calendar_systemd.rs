//! The backup schedule's calendar events against systemd itself: every expression `spec::calendar`
//! accepts, `systemd-analyze calendar` accepts, and its next elapses are the ones the hosts lab's
//! timer and the staleness check compute; the expressions the validator refuses as ones systemd
//! refuses, systemd refuses. scripts/install-tools.sh installs systemd (Debian's `systemd`, for
//! systemd-analyze); the test fails without it.

use std::process::Command;
use vaultnix::spec::calendar;

/// Each test checks once that systemd-analyze runs.
fn need_systemd_analyze() {
    let ok = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "no systemd-analyze: run scripts/install-tools.sh (Debian package systemd)");
}

/// `systemd-analyze calendar --base-time=@BASE --iterations=N EXPR` in UTC: the elapses (Unix
/// seconds), or None when systemd refuses the expression.
fn systemd(expr: &str, base: i64, n: usize) -> Option<Vec<i64>> {
    let o = Command::new("systemd-analyze")
        .env("TZ", "UTC")
        .args(["calendar", &format!("--base-time=@{base}"), &format!("--iterations={n}"), expr])
        .output()
        .expect("systemd-analyze");
    if !o.status.success() {
        return None;
    }
    let fmt =
        time::macros::format_description!("[weekday repr:short] [year]-[month]-[day] [hour]:[minute]:[second] UTC");
    let out = String::from_utf8(o.stdout).unwrap();
    let v = out
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("Next elapse: ")
                .or_else(|| l.split_once(": ").filter(|(k, _)| k.starts_with("Iter. #")).map(|(_, r)| r))?;
            if rest == "never" {
                return None;
            }
            let t = time::PrimitiveDateTime::parse(rest, fmt).unwrap_or_else(|e| panic!("{rest:?}: {e}\n{out}"));
            Some(t.assume_utc().unix_timestamp())
        })
        .collect();
    Some(v)
}

fn ours(expr: &str, base: i64, n: usize) -> Vec<i64> {
    let e = calendar::parse(expr).unwrap();
    let mut v = Vec::new();
    let mut t = base;
    while v.len() < n {
        match e.next_after(t) {
            Some(x) => {
                v.push(x);
                t = x;
            }
            None => break,
        }
    }
    v
}

/// A small deterministic generator (xorshift): the same expressions on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// `steps`: whether `/N` may appear. Not in the day of month: systemd 252 (the one Debian has)
    /// skips the first days of a month after a step ran past the end of the previous one ("3-33" was
    /// normalized to 4-2, skipping 4-1); newer systemd resets the day (tm_within_bounds: "So reset
    /// the sub time unit if upper unit was out of bounds"), as `calendar` does (its unit tests).
    fn component(&mut self, lo: u64, hi: u64, steps: bool) -> String {
        let one = |r: &mut Rng| -> String {
            let a = lo + r.below(hi - lo + 1);
            match if steps { r.below(5) } else { [0, 1, 4][r.below(3) as usize] } {
                0 => a.to_string(),
                1 => format!("{a}..{}", a + r.below(hi - a + 1)),
                2 => format!("{a}/{}", 1 + r.below(hi - lo + 1)),
                3 => format!("{a}..{}/{}", a + r.below(hi - a + 1), 1 + r.below(4)),
                _ => format!("{:02}", a),
            }
        };
        match self.below(4) {
            0 => "*".into(),
            1 => format!("{},{}", one(self), one(self)),
            _ => one(self),
        }
    }
    fn expr(&mut self) -> String {
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let mut words = Vec::new();
        if self.below(3) == 0 {
            let a = self.below(7) as usize;
            let b = a + self.below(7 - a as u64) as usize;
            words.push(if a == b { DAYS[a].to_string() } else { format!("{}..{}", DAYS[a], DAYS[b]) });
        }
        if self.below(3) != 0 {
            words.push(format!("*-{}-{}", self.component(1, 12, true), self.component(1, 31, false)));
        }
        if words.is_empty() || self.below(4) != 0 {
            let secs = if self.below(3) == 0 { format!(":{}", self.component(0, 59, true)) } else { String::new() };
            words.push(format!("{}:{}{secs}", self.component(0, 23, true), self.component(0, 59, true)));
        }
        words.join(" ")
    }
}

const BASES: &[i64] = &[
    1_700_000_000, // 2023-11-14 22:13:20
    1_709_164_799, // 2024-02-28 23:59:59, before a leap day
    1_798_761_599, // 2026-12-31 23:59:59
    4_107_542_399, // 2100-02-28 23:59:59: 2100 has no 29 February
];

#[test]
fn accepted_expressions_elapse_as_systemd_says() {
    need_systemd_analyze();
    let mut exprs: Vec<String> = calendar::SHORTHANDS.iter().map(|s| s.to_string()).collect();
    exprs.extend(
        [
            "*-*-* 03:00:00",
            "*-*-* 03:00",
            "Mon..Fri 02:30",
            "Mon,Wed,Fri *-*-* 04:00:00",
            "Sat",
            "*-*-01 04:00:00",
            "*-1..6-1/2 00/4:00",
            "12-24 18:00",
            "*:0/15",
            "*-02-29",
            "*-*-31 12:00",
            "Sun *-*-1..7 01:00:30",
            "2026-01-01 00:00:00 UTC",
            "*-*-* 02,23:00 UTC",
        ]
        .map(String::from),
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    exprs.extend((0..120).map(|_| rng.expr()));
    let mut compared = 0;
    for e in &exprs {
        if calendar::problem(e).is_some() {
            continue; // outside the subset (e.g. a generated backwards range): the next test's case
        }
        for &base in BASES {
            let theirs =
                systemd(e, base, 6).unwrap_or_else(|| panic!("systemd refuses {e:?}, which the validator accepts"));
            assert_eq!(ours(e, base, 6), theirs, "{e:?} from @{base}");
            compared += 1;
        }
    }
    eprintln!("{compared} (expression, base time) pairs: the same 6 next elapses as systemd-analyze");
    assert!(compared >= 4 * 100, "only {compared} pairs compared");
}

#[test]
fn expressions_refused_for_systemd_are_refused_by_systemd() {
    need_systemd_analyze();
    for e in ["Fri..Mon", "*:*/15", "*-*-*/2 00:00", "*-*-* 25:00", "*-13-* 00:00", "Mon..Fry 00:00"] {
        assert!(calendar::problem(e).is_some(), "{e:?} accepted");
        assert!(systemd(e, BASES[0], 1).is_none(), "systemd accepts {e:?}, which the validator refuses");
    }
}

#[test]
fn the_longest_gap_is_the_longest_systemd_elapses_show() {
    need_systemd_analyze();
    // Over many elapses from a base, the largest distance between consecutive ones never exceeds
    // the computed gap, and reaches it for these periodic schedules.
    for e in ["daily", "weekly", "Mon..Fri 02:30", "*-*-* 02,23:00", "monthly", "*:0/15", "Sat,Sun 12:00"] {
        let theirs = systemd(e, BASES[0], 200).unwrap();
        let seen = theirs.windows(2).map(|w| (w[1] - w[0]) as u64).max().unwrap();
        assert_eq!(calendar::parse(e).unwrap().longest_gap(), Some(seen), "{e}");
    }
}
