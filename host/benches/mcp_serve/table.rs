//! The figures of each series, gathered per row over the rounds, and the
//! table: each figure's median over the rounds with its range, beside the
//! issue's target for that row.

use std::collections::BTreeMap;
use std::time::Duration;

use super::load::{Series, Workload};
use super::servers::Kind;

/// Where the calls were made from, in the table's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Setup {
    Stdio1,
    Http1,
    HttpMany,
    InProcess,
}

impl Setup {
    fn columns(self, clients: usize) -> (&'static str, String) {
        match self {
            Setup::Stdio1 => ("stdio", "1".into()),
            Setup::Http1 => ("HTTP", "1".into()),
            Setup::HttpMany => ("HTTP", clients.to_string()),
            Setup::InProcess => ("in process", "1".into()),
        }
    }
}

/// Who answered: a server, or `Executor::call` in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
    Server(Kind),
    Executor,
}

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::Server(kind) => kind.name(),
            Who::Executor => "Executor::call",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub workload: Workload,
    pub setup: Setup,
    pub who: Who,
}

/// One series' figures, in milliseconds where they are times.
#[derive(Clone, Copy, Debug)]
struct Figures {
    p50: f64,
    p99: f64,
    calls_per_s: f64,
    cpu_per_call: f64,
    threads: f64,
}

impl Figures {
    fn of(series: &Series) -> Figures {
        let mut sorted = series.latencies.clone();
        sorted.sort();
        let at = |q: f64| ms(sorted[((sorted.len() - 1) as f64 * q) as usize]);
        let calls = sorted.len() as f64;
        Figures {
            p50: at(0.50),
            p99: at(0.99),
            calls_per_s: calls / series.wall.as_secs_f64(),
            cpu_per_call: ms(series.cpu) / calls,
            threads: series.threads as f64,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median and range of one figure over the rounds.
#[derive(Clone, Copy, Debug)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(values: impl Iterator<Item = f64>) -> Spread {
        let mut v: Vec<f64> = values.collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    fn show(self, fmt: fn(f64) -> String) -> String {
        if self.min == self.max {
            fmt(self.median)
        } else {
            format!("{} ({}-{})", fmt(self.median), fmt(self.min), fmt(self.max))
        }
    }
}

/// Milliseconds to three significant figures, about.
fn fmt_ms(x: f64) -> String {
    if x < 1.0 {
        format!("{x:.3}")
    } else if x < 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.1}")
    }
}

fn fmt_count(x: f64) -> String {
    format!("{x:.0}")
}

/// Every row's series so far.
#[derive(Default)]
pub struct Table {
    rows: BTreeMap<Row, Vec<Figures>>,
}

struct Summary {
    p50: Spread,
    p99: Spread,
    calls_per_s: Spread,
    cpu: Spread,
    threads: Spread,
}

impl Table {
    pub fn add(&mut self, row: Row, series: &Series) {
        self.rows.entry(row).or_default().push(Figures::of(series));
    }

    fn summary(&self, row: &Row) -> Option<Summary> {
        let f = self.rows.get(row)?;
        Some(Summary {
            p50: Spread::of(f.iter().map(|f| f.p50)),
            p99: Spread::of(f.iter().map(|f| f.p99)),
            calls_per_s: Spread::of(f.iter().map(|f| f.calls_per_s)),
            cpu: Spread::of(f.iter().map(|f| f.cpu_per_call)),
            threads: Spread::of(f.iter().map(|f| f.threads)),
        })
    }

    /// Prints the table: for each workload and setup, toolhost then the
    /// baselines; the baselines without such a call (no cache, no
    /// effects) share one row of `-`.
    pub fn print(&self, baselines: &[Kind], clients: usize) {
        println!(
            "| workload | transport | clients | server | p50 ms | p99 ms | calls/s | server CPU/call ms | threads | CPU / bare rmcp | target |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        let setups = [
            Setup::Stdio1,
            Setup::Http1,
            Setup::HttpMany,
            Setup::InProcess,
        ];
        for workload in Workload::ALL {
            for setup in setups {
                let row = |who| Row {
                    workload,
                    setup,
                    who,
                };
                if setup == Setup::InProcess {
                    self.print_row(&row(Who::Executor), clients);
                    continue;
                }
                self.print_row(&row(Who::Server(Kind::Toolhost)), clients);
                let (measured, none): (Vec<Kind>, Vec<Kind>) = baselines
                    .iter()
                    .partition(|&&k| self.rows.contains_key(&row(Who::Server(k))));
                for kind in measured {
                    self.print_row(&row(Who::Server(kind)), clients);
                }
                if !none.is_empty() {
                    let names: Vec<&str> = none.iter().map(|k| k.name()).collect();
                    let (transport, n) = setup.columns(clients);
                    println!(
                        "| {} | {transport} | {n} | {} | - | - | - | - | - | - | - |",
                        workload.name(),
                        names.join(", ")
                    );
                }
            }
        }
    }

    fn print_row(&self, row: &Row, clients: usize) {
        let (transport, n) = row.setup.columns(clients);
        let head = format!(
            "| {} | {transport} | {n} | {} |",
            row.workload.name(),
            row.who.name()
        );
        let Some(s) = self.summary(row) else {
            println!("{head} - | - | - | - | - | - | - |");
            return;
        };
        let threads = match row.who {
            Who::Executor => "-".to_string(),
            Who::Server(_) => s.threads.show(fmt_count),
        };
        let ratio = self.ratio_to_bare(row, &s);
        let target = target(row, &s, ratio);
        println!(
            "{head} {} | {} | {} | {} | {threads} | {} | {target} |",
            s.p50.show(fmt_ms),
            s.p99.show(fmt_ms),
            s.calls_per_s.show(fmt_count),
            s.cpu.show(fmt_ms),
            ratio.map_or("-".to_string(), |r| format!("{r:.2}x")),
        );
    }

    /// toolhost's CPU per call over the bare rmcp echo's, on the same
    /// transport and clients (the bare server's only call is uncached echo).
    fn ratio_to_bare(&self, row: &Row, s: &Summary) -> Option<f64> {
        if row.who != Who::Server(Kind::Toolhost) {
            return None;
        }
        let bare = self.summary(&Row {
            workload: Workload::Uncached,
            setup: row.setup,
            who: Who::Server(Kind::Bare),
        })?;
        Some(s.cpu.median / bare.cpu.median)
    }
}

/// The targets for `row`, each with `ok` or `MISS` by the medians.
fn target(row: &Row, s: &Summary, ratio: Option<f64>) -> String {
    let mut checks: Vec<(String, bool)> = Vec::new();
    let cpu = s.cpu.median;
    match (row.who, row.workload, row.setup) {
        (Who::Server(Kind::Toolhost), workload, setup) => {
            if workload == Workload::Uncached {
                let limit = if setup == Setup::Stdio1 { 0.15 } else { 0.25 };
                checks.push((format!("CPU <= {limit} ms"), cpu <= limit));
                if let Some(r) = ratio {
                    checks.push(("<= 1.3x bare".into(), r <= 1.3));
                }
                if setup == Setup::HttpMany {
                    checks.push((">= 1,500 calls/s".into(), s.calls_per_s.median >= 1500.0));
                }
            }
            if workload == Workload::CacheHit && setup == Setup::Stdio1 {
                checks.push(("CPU <= 0.05 ms".into(), cpu <= 0.05));
            }
            if setup == Setup::Http1 {
                checks.push(("p99 < 2x p50".into(), s.p99.median < 2.0 * s.p50.median));
            }
        }
        (Who::Executor, Workload::SideEffect, _) => {
            checks.push(("p99 <= 1 ms".into(), s.p99.median <= 1.0));
        }
        _ => {}
    }
    if checks.is_empty() {
        return "-".into();
    }
    checks
        .iter()
        .map(|(what, ok)| format!("{what}: {}", if *ok { "ok" } else { "MISS" }))
        .collect::<Vec<_>>()
        .join("; ")
}
