//! The table `ferry bench` prints on stdout: every figure with its ratio to
//! the exit floor, bandwidths against host `memcpy`, the call-back cost and
//! the headline ratios next to their targets. Fits in 120 columns.

use super::report::{BenchReport, Figure, Group, Headline, Mode};
use super::stats::Stats;
use std::fmt::{self, Display, Formatter, Write as _};

/// Width of the name column; longer names are shortened with "…".
const NAME_W: usize = 24;
/// Width of the mode column.
const MODE_W: usize = 13;
/// Width of the sample-count column.
const COUNT_W: usize = 7;
/// Width of each time column.
const TIME_W: usize = 9;
/// Width of the p50-in-cycles column.
const CYC_W: usize = 13;
/// Width of the ratio column.
const RATIO_W: usize = 7;

/// Which way a headline figure is good, and its limit: the table and
/// BENCHMARKS.md judge each measured ratio against it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Met when the value is at most this.
    AtMost(f64),
    /// Met when the value is at least this.
    AtLeast(f64),
}

impl Target {
    /// "met", "not met", or "n/a" when nothing (or nothing finite) was measured.
    pub fn verdict(self, value: Option<f64>) -> &'static str {
        match value.filter(|v| v.is_finite()) {
            None => "n/a",
            Some(v) => {
                let met = match self {
                    Target::AtMost(t) => v <= t,
                    Target::AtLeast(t) => v >= t,
                };
                if met {
                    "met"
                } else {
                    "not met"
                }
            }
        }
    }
}

impl Display for Target {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Target::AtMost(t) => write!(f, "≤ {t}"),
            Target::AtLeast(t) => write!(f, "≥ {t}"),
        }
    }
}

/// One headline ratio with its label, unit and target, so the table and
/// the documentation state the same targets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadlineRow {
    /// What it is.
    pub label: &'static str,
    /// As measured (`None` if not measured).
    pub value: Option<f64>,
    /// Unit suffix ("" for ratios).
    pub unit: &'static str,
    /// What we aim at.
    pub target: Target,
}

/// The six headline figures of issue 4, each with its target.
pub fn headline_rows(h: &Headline) -> [HeadlineRow; 6] {
    [
        HeadlineRow {
            label: "null call+return / (2 × floor), p50",
            value: h.migrate_vs_floor,
            unit: "",
            target: Target::AtMost(1.05),
        },
        HeadlineRow {
            label: "message mode / migrate, null p50",
            value: h.message_vs_migrate,
            unit: "",
            target: Target::AtLeast(1.5),
        },
        HeadlineRow {
            label: "VMM work per call+return, p50",
            value: h.vmm_work_ns,
            unit: " ns",
            target: Target::AtMost(1000.0),
        },
        HeadlineRow {
            label: "IN copy / host memcpy (64 KiB, 1 MiB)",
            value: h.copy_vs_memcpy,
            unit: "",
            target: Target::AtLeast(0.5),
        },
        HeadlineRow {
            label: "null p50 max/min over 2..64 domains",
            value: h.domains_spread,
            unit: "",
            target: Target::AtMost(1.10),
        },
        HeadlineRow {
            label: "per-hop p50 max/min over depth 1..16",
            value: h.depth_spread,
            unit: "",
            target: Target::AtMost(1.10),
        },
    ]
}

/// Short name of a mode for tables and plot legends.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Migrate => "migrate",
        Mode::Message => "message",
        Mode::Floor => "floor",
        Mode::PipePinned => "pipe pinned",
        Mode::PipeUnpinned => "pipe unpinned",
        Mode::Function => "function",
        Mode::Vmm => "vmm work",
        Mode::Raw => "raw API",
        Mode::Typed => "typed stub",
    }
}

/// Section title of a figure group.
fn group_title(group: Group) -> &'static str {
    match group {
        Group::Null => "Null call+return",
        Group::Size => "One object of N bytes (IN / OUT / INOUT)",
        Group::Depth => "Nesting depth (time per hop)",
        Group::Threads => "Concurrent threads into one domain",
        Group::Domains => "Callee domains, round robin",
        Group::Baseline => "Baselines",
        Group::Stub => "Caller's own cycles per call outside the exit: raw API vs typed stub",
    }
}

/// The groups in the order the table shows them.
const GROUPS: [Group; 7] = [
    Group::Null,
    Group::Size,
    Group::Depth,
    Group::Threads,
    Group::Domains,
    Group::Stub,
    Group::Baseline,
];

/// Microseconds with a precision that suits their size.
fn fmt_us(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.3}")
    } else if us < 100.0 {
        format!("{us:.2}")
    } else if us < 100_000.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

/// An integer with thousands separators, e.g. `260,000`.
fn fmt_int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `text` cut to `width` characters (ending in "…" when cut).
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// A ratio such as `1.03×`, or "—".
fn fmt_ratio(r: Option<f64>) -> String {
    match r.filter(|r| r.is_finite()) {
        Some(r) => format!("{r:.2}×"),
        None => "—".to_string(),
    }
}

impl BenchReport {
    /// `cycles` in µs if the TSC rate is known, else in cycles.
    fn time(&self, cycles: u64) -> String {
        match self.ns(cycles) {
            Some(ns) => fmt_us(ns / 1000.0),
            None => fmt_int(cycles),
        }
    }

    /// Unit of the time columns.
    fn time_unit(&self) -> &'static str {
        if self.ns(1).is_some() {
            "µs"
        } else {
            "cyc"
        }
    }

    /// One statistics row.
    fn write_row(
        &self,
        f: &mut Formatter<'_>,
        name: &str,
        mode: &str,
        s: &Stats,
        ratio: Option<f64>,
    ) -> fmt::Result {
        writeln!(
            f,
            "{:<NAME_W$} {:<MODE_W$} {:>COUNT_W$} {:>TIME_W$} {:>TIME_W$} {:>TIME_W$} {:>TIME_W$} {:>TIME_W$} {:>CYC_W$} {:>RATIO_W$}",
            fit(name, NAME_W),
            fit(mode, MODE_W),
            s.count,
            self.time(s.min),
            self.time(s.p50),
            self.time(s.p90),
            self.time(s.p99),
            self.time(s.max),
            fmt_int(s.p50),
            fmt_ratio(ratio),
        )
    }

    /// The header of a statistics section.
    fn write_header(&self, f: &mut Formatter<'_>, title: &str) -> fmt::Result {
        let u = self.time_unit();
        writeln!(f)?;
        writeln!(f, "── {title} ──")?;
        writeln!(
            f,
            "{:<NAME_W$} {:<MODE_W$} {:>COUNT_W$} {:>TIME_W$} {:>TIME_W$} {:>TIME_W$} {:>TIME_W$} {:>TIME_W$} {:>CYC_W$} {:>RATIO_W$}",
            "figure",
            "mode",
            "count",
            format!("min {u}"),
            format!("p50 {u}"),
            format!("p90 {u}"),
            format!("p99 {u}"),
            format!("max {u}"),
            "p50 cycles",
            "÷floor",
        )
    }

    /// The bandwidth section: each copy in GB/s and against the host
    /// `memcpy` of the same size (rows named "host memcpy …").
    fn write_bandwidth(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.bandwidth.is_empty() {
            return Ok(());
        }
        let is_memcpy = |name: &str| name.to_ascii_lowercase().contains("memcpy");
        writeln!(f)?;
        writeln!(f, "── Copy bandwidth ──")?;
        writeln!(
            f,
            "{:<40} {:>13} {:>10} {:>10}",
            "copy", "bytes", "GB/s", "÷memcpy"
        )?;
        for b in &self.bandwidth {
            let ratio = if is_memcpy(&b.name) {
                None
            } else {
                self.bandwidth
                    .iter()
                    .find(|m| is_memcpy(&m.name) && m.bytes == b.bytes && m.bytes_per_sec > 0.0)
                    .map(|m| b.bytes_per_sec / m.bytes_per_sec)
            };
            writeln!(
                f,
                "{:<40} {:>13} {:>10.3} {:>10}",
                fit(&b.name, 40),
                fmt_int(b.bytes),
                b.bytes_per_sec / 1e9,
                fmt_ratio(ratio),
            )?;
        }
        Ok(())
    }

    /// The two ways to keep a suspended frame's context across a call back.
    fn write_callback(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let Some(cb) = &self.callback else {
            return Ok(());
        };
        let u = self.time_unit();
        writeln!(f)?;
        writeln!(
            f,
            "── Call back into a suspended domain (A→B→A): keeping A's context ──"
        )?;
        writeln!(
            f,
            "{:<44} {:>12} {:>14}  paid",
            "option",
            format!("p50 {u}"),
            "p50 cycles",
        )?;
        writeln!(
            f,
            "{:<44} {:>12} {:>14}  on every call back",
            "save+restore (GET/SET REGS, SREGS, FPU)",
            self.time(cb.save_restore_p50),
            fmt_int(cb.save_restore_p50),
        )?;
        let per = if cb.save_restore_p50 > 0 {
            format!(
                "once (= {:.1} call backs' save+restore)",
                cb.vcpu_create_p50 as f64 / cb.save_restore_p50 as f64
            )
        } else {
            "once".to_string()
        };
        writeln!(
            f,
            "{:<44} {:>12} {:>14}  {}",
            "a vCPU per (thread, domain, depth): create",
            self.time(cb.vcpu_create_p50),
            fmt_int(cb.vcpu_create_p50),
            per
        )
    }

    /// Typed ÷ raw per call kind of the [`Group::Stub`] rows (p50 and p99).
    fn write_stub_ratios(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let find = |mode, param| {
            self.figures
                .iter()
                .find(|x| x.group == Group::Stub && x.mode == mode && x.param == param)
        };
        for fig in self
            .figures
            .iter()
            .filter(|x| x.group == Group::Stub && x.mode == Mode::Raw)
        {
            let Some(typed) = find(Mode::Typed, fig.param) else {
                continue;
            };
            let ratio = |t: u64, r: u64| (r > 0).then(|| t as f64 / r as f64);
            writeln!(
                f,
                "typed ÷ raw, {}: p50 {} ({} vs {} cycles), p99 {}",
                fig.name,
                fmt_ratio(ratio(typed.stats.p50, fig.stats.p50)),
                fmt_int(typed.stats.p50),
                fmt_int(fig.stats.p50),
                fmt_ratio(ratio(typed.stats.p99, fig.stats.p99)),
            )?;
        }
        writeln!(
            f,
            "(guest TSC around each call minus the `Call` exit itself; ÷floor is n/a here)"
        )
    }

    /// The headline ratios with their targets.
    fn write_headline(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        writeln!(f, "── Headline (targets are aims, not pass/fail) ──")?;
        writeln!(
            f,
            "{:<40} {:>12} {:>12}  verdict",
            "figure", "measured", "target"
        )?;
        for row in headline_rows(&self.headline) {
            let measured = match row.value.filter(|v| v.is_finite()) {
                Some(v) if row.unit.is_empty() => format!("{v:.3}"),
                Some(v) => format!("{v:.0}{}", row.unit),
                None => "—".to_string(),
            };
            let mut target = row.target.to_string();
            let _ = write!(target, "{}", row.unit);
            writeln!(
                f,
                "{:<40} {:>12} {:>12}  {}",
                row.label,
                measured,
                target,
                row.target.verdict(row.value)
            )?;
        }
        Ok(())
    }
}

impl Display for BenchReport {
    /// The whole table, as `ferry bench` prints it.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let m = &self.machine;
        let tsc = if m.tsc_khz > 0 {
            format!("TSC {:.3} GHz", f64::from(m.tsc_khz) / 1e6)
        } else {
            "TSC rate unknown (times in cycles)".to_string()
        };
        writeln!(
            f,
            "ferry bench{} — {}, {} CPUs, kernel {}, {}, {}",
            if self.quick { " --quick" } else { "" },
            m.cpu,
            m.cpus,
            m.kernel,
            m.kvm,
            tsc
        )?;
        let fl = &self.floor;
        if fl.count == 0 {
            writeln!(
                f,
                "floor (null `out` exit → VMM → re-enter): not measured; ratios are n/a"
            )?;
        } else {
            self.write_header(
                f,
                "Floor: null `out` exit → VMM → re-enter, in batches between the runs",
            )?;
            self.write_row(f, "floor (1 exit)", mode_name(Mode::Floor), fl, Some(1.0))?;
            writeln!(
                f,
                "÷floor = p50 / (2 × floor p50) for call+return (two exits), p50 / floor p50 for the rest"
            )?;
        }
        for group in GROUPS {
            let mut rows = self
                .figures
                .iter()
                .filter(|fig| fig.group == group)
                .peekable();
            if rows.peek().is_none() {
                continue;
            }
            self.write_header(f, group_title(group))?;
            for fig in rows {
                let Figure {
                    name,
                    mode,
                    stats,
                    ratio_to_floor,
                    ..
                } = fig;
                self.write_row(f, name, mode_name(*mode), stats, *ratio_to_floor)?;
            }
            if group == Group::Stub {
                self.write_stub_ratios(f)?;
            }
        }
        self.write_bandwidth(f)?;
        self.write_callback(f)?;
        self.write_headline(f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bench::report::{Bandwidth, CallbackCost, Machine};
    use crate::bench::stats::cdf;

    /// Stats around a median, with a plausible spread.
    fn stats(p50: u64) -> Stats {
        Stats {
            count: 1000,
            min: p50 * 9 / 10,
            p50,
            p90: p50 * 11 / 10,
            p99: p50 * 13 / 10,
            max: p50 * 2,
        }
    }

    /// A CDF with a spread around `p50`.
    fn cdf_around(p50: u64) -> Vec<(f64, u64)> {
        let samples: Vec<u64> = (0..1000u64)
            .map(|i| p50 * 9 / 10 + (p50 / 5) * i / 1000 + if i > 990 { p50 } else { 0 })
            .collect();
        cdf(&samples, 100)
    }

    fn fig(group: Group, name: &str, mode: Mode, param: Option<u64>, p50: u64) -> Figure {
        Figure {
            group,
            name: name.to_string(),
            mode,
            param,
            dir: None,
            stats: stats(p50),
            ratio_to_floor: Some(p50 as f64 / 520_000.0),
            ns: None,
            cdf: Vec::new(),
        }
    }

    /// A report with every group, as `ferry bench` would fill it (2.6 GHz,
    /// floor ~100 µs).
    pub(crate) fn synthetic_report() -> BenchReport {
        let floor = 260_000;
        let mut figures = Vec::new();
        for (mode, p50) in [(Mode::Migrate, 540_000), (Mode::Message, 900_000)] {
            let mut f = fig(Group::Null, "null call+return", mode, None, p50);
            f.cdf = cdf_around(p50);
            figures.push(f);
        }
        for mode in [Mode::Migrate, Mode::Message] {
            for dir in ["in", "out", "inout"] {
                for shift in [3u32, 6, 9, 12, 16, 20] {
                    let bytes = 1u64 << shift;
                    let base = if mode == Mode::Migrate {
                        540_000
                    } else {
                        900_000
                    };
                    let mut f = fig(
                        Group::Size,
                        &format!("{} {bytes} B", dir.to_uppercase()),
                        mode,
                        Some(bytes),
                        base + bytes / 2,
                    );
                    f.dir = Some(dir);
                    figures.push(f);
                }
            }
        }
        for mode in [Mode::Migrate, Mode::Message] {
            for depth in [1u64, 2, 4, 8, 16] {
                let p = if mode == Mode::Migrate {
                    270_000
                } else {
                    450_000
                } + depth * 1000;
                figures.push(fig(
                    Group::Depth,
                    &format!("depth {depth}"),
                    mode,
                    Some(depth),
                    p,
                ));
            }
        }
        for t in [1u64, 2, 8] {
            figures.push(fig(
                Group::Threads,
                &format!("{t} threads"),
                Mode::Migrate,
                Some(t),
                540_000 * t.min(2),
            ));
        }
        for d in [2u64, 8, 64] {
            figures.push(fig(
                Group::Domains,
                &format!("{d} domains"),
                Mode::Migrate,
                Some(d),
                540_000 + d * 100,
            ));
        }
        let mut fl = fig(Group::Baseline, "floor (1 exit)", Mode::Floor, None, floor);
        fl.cdf = cdf_around(floor);
        figures.push(fl);
        let mut pp = fig(
            Group::Baseline,
            "pipe round trip, one CPU",
            Mode::PipePinned,
            None,
            10_400,
        );
        pp.cdf = cdf_around(10_400);
        figures.push(pp);
        figures.push(fig(
            Group::Baseline,
            "pipe round trip, unpinned",
            Mode::PipeUnpinned,
            None,
            250_000,
        ));
        figures.push(fig(
            Group::Baseline,
            "in-guest function call",
            Mode::Function,
            None,
            20,
        ));
        figures.push(fig(
            Group::Baseline,
            "VMM work per call+return",
            Mode::Vmm,
            None,
            2_000,
        ));
        BenchReport {
            machine: Machine {
                cpu: "Test CPU @ 2.60GHz".to_string(),
                cpus: 2,
                kernel: "6.18.0-test".to_string(),
                kvm: "kvm_pvm".to_string(),
                tsc_khz: 2_600_000,
            },
            quick: true,
            floor: stats(floor),
            figures,
            bandwidth: vec![
                Bandwidth {
                    name: "IN 64 KiB (migrate)".to_string(),
                    bytes: 65_536,
                    bytes_per_sec: 3.0e9,
                },
                Bandwidth {
                    name: "host memcpy 64 KiB".to_string(),
                    bytes: 65_536,
                    bytes_per_sec: 10.0e9,
                },
            ],
            callback: Some(CallbackCost {
                save_restore_p50: 120_000,
                vcpu_create_p50: 600_000,
            }),
            headline: Headline {
                migrate_vs_floor: Some(1.038),
                message_vs_migrate: Some(1.67),
                vmm_work_ns: Some(769.0),
                copy_vs_memcpy: Some(0.3),
                domains_spread: None,
                depth_spread: Some(1.05),
            },
        }
    }

    #[test]
    fn table_has_every_section_and_fits_120_columns() {
        let text = synthetic_report().to_string();
        println!("{text}");
        for needle in [
            "kvm_pvm",
            "── Floor: null `out` exit",
            "── Null call+return ──",
            "── One object of N bytes",
            "── Nesting depth",
            "── Concurrent threads",
            "── Callee domains",
            "── Baselines ──",
            "── Copy bandwidth ──",
            "── Call back into a suspended domain",
            "── Headline",
            "pipe pinned",
        ] {
            assert!(text.contains(needle), "missing {needle:?}");
        }
        for line in text.lines() {
            assert!(
                line.chars().count() <= 120,
                "too wide ({}): {line}",
                line.chars().count()
            );
        }
        // Null migrate: 540,000 cycles = 207.7 µs at 2.6 GHz, ratio 1.04.
        let null = text
            .lines()
            .find(|l| l.starts_with("null call+return") && l.contains("migrate"))
            .unwrap();
        assert!(
            null.contains("207.7") && null.contains("540,000") && null.contains("1.04×"),
            "{null}"
        );
        // Bandwidth ratio to memcpy of the same size.
        let bw = text
            .lines()
            .find(|l| l.starts_with("IN 64 KiB (migrate)"))
            .unwrap();
        assert!(bw.contains("0.30×"), "{bw}");
    }

    #[test]
    fn headline_verdicts() {
        let text = synthetic_report().to_string();
        let line = |label: &str| {
            text.lines()
                .find(|l| l.starts_with(label))
                .unwrap()
                .to_string()
        };
        assert!(line("null call+return / (2 × floor)").ends_with(" met"));
        assert!(line("message mode / migrate").ends_with(" met"));
        assert!(line("VMM work per call+return, p50").contains("769 ns"));
        assert!(line("IN copy / host memcpy").ends_with("not met"));
        assert!(line("null p50 max/min over 2..64").ends_with("n/a"));
        assert_eq!(Target::AtMost(1.05).verdict(Some(f64::NAN)), "n/a");
        assert_eq!(Target::AtLeast(1.5).verdict(Some(1.5)), "met");
    }

    #[test]
    fn unknown_tsc_falls_back_to_cycles() {
        let mut r = synthetic_report();
        r.machine.tsc_khz = 0;
        r.floor = Stats::default();
        let text = r.to_string();
        assert!(text.contains("p50 cyc") && text.contains("not measured"));
        assert!(!text.contains("µs"));
    }

    #[test]
    fn helpers() {
        assert_eq!(fmt_int(0), "0");
        assert_eq!(fmt_int(1234567), "1,234,567");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fmt_us(0.1234), "0.123");
    }
}
